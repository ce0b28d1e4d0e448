use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    value: String,
}

fn doc(value: &str) -> Doc {
    Doc {
        value: value.to_owned(),
    }
}

fn lamp() -> DeviceKey {
    DeviceKey::new("default", "lamp")
}

fn memory(capacity: u64) -> Store {
    Store::open_in_memory(StoreOptions {
        synchronous: Synchronous::Normal,
        outbox_capacity: capacity,
    })
    .unwrap()
}

fn twin_entry<'a>(device: &'a DeviceKey, property: &'a str, payload: &'a str) -> NewEntry<'a> {
    NewEntry {
        kind: OutboxKind::Twin,
        device,
        property: Some(property),
        payload,
        now_ms: 1,
    }
}

fn seqs_and_payloads(store: &Store) -> Vec<(u64, String)> {
    store
        .outbox_peek(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.payload))
        .collect()
}

#[test]
fn documents_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    {
        let mut store = Store::open(&path, StoreOptions::default()).unwrap();
        store
            .write(|w| {
                w.put_model(&ObjectKey::new("default", "light"), &doc("model"))?;
                w.put_device(&lamp(), &doc("device"))?;
                w.set_device_state(&lamp(), "online", Some("2026-11-28T10:00:00Z"))?;
                w.put_twin(&lamp(), "power", &doc("ON"))?;
                w.set_meta("node", "edge-1")
            })
            .unwrap();
    }
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.models::<Doc>().unwrap(), vec![doc("model")]);
    assert_eq!(
        store.devices::<Doc>().unwrap(),
        vec![StoredDevice {
            device: doc("device"),
            state: Some("online".into()),
            last_online: Some("2026-11-28T10:00:00Z".into()),
        }]
    );
    assert_eq!(
        store.twin::<Doc>(&lamp(), "power").unwrap(),
        Some(doc("ON"))
    );
    assert_eq!(store.meta("node").unwrap().as_deref(), Some("edge-1"));
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_file_store_uses_wal_and_the_configured_synchronous_level() {
    let dir = tempfile::tempdir().unwrap();
    for (level, expected) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
        let path = dir.path().join(format!("{level:?}.db"));
        let store = Store::open(
            &path,
            StoreOptions {
                synchronous: level,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", expected));
    }
}

#[test]
fn a_dropped_scope_undoes_only_its_own_writes() {
    let mut store = memory(10);
    let mut batch = store.batch().unwrap();
    {
        let mut first = batch.scope().unwrap();
        first.put_device(&lamp(), &doc("device")).unwrap();
        first.put_twin(&lamp(), "power", &doc("ON")).unwrap();
        first.queue(twin_entry(&lamp(), "power", "on")).unwrap();
        first.commit().unwrap();
    }
    {
        let mut second = batch.scope().unwrap();
        second.put_twin(&lamp(), "power", &doc("OFF")).unwrap();
        second.queue(twin_entry(&lamp(), "level", "7")).unwrap();
        assert_eq!(second.outbox_len(), 2);
        // dropped: rolled back
    }
    {
        let third = batch.scope().unwrap();
        assert_eq!(
            third.outbox_len(),
            1,
            "the rolled-back entry is not counted"
        );
        third.commit().unwrap();
    }
    batch.commit().unwrap();
    assert_eq!(
        store.twin::<Doc>(&lamp(), "power").unwrap(),
        Some(doc("ON"))
    );
    assert_eq!(seqs_and_payloads(&store).len(), 1);
}

#[test]
fn a_batch_whose_scope_could_not_be_undone_commits_nothing() {
    let mut store = memory(10);
    store
        .write(|w| w.put_device(&lamp(), &doc("device")))
        .unwrap();
    let mut batch = store.batch().unwrap();
    {
        let mut kept = batch.scope().unwrap();
        kept.put_twin(&lamp(), "power", &doc("ON")).unwrap();
        kept.commit().unwrap();
    }
    {
        let mut broken = batch.scope().unwrap();
        broken.put_twin(&lamp(), "level", &doc("7")).unwrap();
        // Close the savepoint behind the scope's back: its rollback on drop now fails.
        broken.sp.execute_batch(RELEASE).unwrap();
    }
    let err = batch.commit().expect_err("the undo failed");
    assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
    assert_eq!(store.twin::<Doc>(&lamp(), "level").unwrap(), None);
    assert_eq!(
        store.twin::<Doc>(&lamp(), "power").unwrap(),
        None,
        "nothing of the batch is committed"
    );
}

#[test]
fn a_dropped_batch_persists_nothing() {
    let mut store = memory(10);
    {
        let mut batch = store.batch().unwrap();
        let mut scope = batch.scope().unwrap();
        scope.put_device(&lamp(), &doc("device")).unwrap();
        scope.commit().unwrap();
    }
    assert!(store.devices::<Doc>().unwrap().is_empty());
}

#[test]
fn deleting_a_device_removes_its_twins_and_outbox_entries() {
    let mut store = memory(10);
    let other = DeviceKey::new("default", "fan");
    store
        .write(|w| {
            for key in [lamp(), other.clone()] {
                w.put_device(&key, &doc("device"))?;
                w.put_twin(&key, "power", &doc("ON"))?;
                w.queue(twin_entry(&key, "power", "on"))?;
            }
            Ok(())
        })
        .unwrap();
    let existed = store.write(|w| w.delete_device(&lamp())).unwrap();
    assert!(existed);
    let twins = store.twins::<Doc>().unwrap();
    assert_eq!(twins.len(), 1);
    assert_eq!(twins[0].device, other);
    let entries = store.outbox_peek(0, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].device, other);
    assert!(!store.write(|w| w.delete_device(&lamp())).unwrap());
}

#[test]
fn a_twin_needs_its_device() {
    let mut store = memory(10);
    let err = store
        .write(|w| w.put_twin(&lamp(), "power", &doc("ON")))
        .unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
}

#[test]
fn outbox_keeps_order_and_coalesces_a_key_to_the_tail() {
    let mut store = memory(10);
    let fan = DeviceKey::new("default", "fan");
    let queued = store
        .write(|w| {
            Ok([
                w.queue(twin_entry(&lamp(), "power", "lamp-1"))?,
                w.queue(twin_entry(&fan, "speed", "fan-1"))?,
                w.queue(twin_entry(&lamp(), "power", "lamp-2"))?,
            ])
        })
        .unwrap();
    assert_eq!(
        queued,
        [Queued::Appended, Queued::Appended, Queued::Coalesced]
    );
    assert_eq!(
        seqs_and_payloads(&store),
        vec![(2, "fan-1".to_owned()), (3, "lamp-2".to_owned())]
    );
    // A state entry for the same device is a different key.
    store
        .write(|w| {
            w.queue(NewEntry {
                kind: OutboxKind::State,
                device: &lamp(),
                property: None,
                payload: "online",
                now_ms: 2,
            })
        })
        .unwrap();
    let entries = store.outbox_peek(0, 10).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].kind, OutboxKind::State);
    assert_eq!(entries[2].property, None);
    assert_eq!(entries[2].created_ms, 2);
}

#[test]
fn an_ack_never_removes_content_coalesced_after_it_was_read() {
    let mut store = memory(10);
    store
        .write(|w| w.queue(twin_entry(&lamp(), "power", "v1")))
        .unwrap();
    let sent = store.outbox_peek(0, 10).unwrap();
    // While the cloud holds v1, a newer value replaces it.
    store
        .write(|w| w.queue(twin_entry(&lamp(), "power", "v2")))
        .unwrap();
    let removed = store.outbox_ack(sent[0].seq).unwrap();
    assert_eq!(removed, 0, "v1's row was already replaced");
    assert_eq!(seqs_and_payloads(&store), vec![(2, "v2".to_owned())]);
    assert_eq!(store.outbox_ack(2).unwrap(), 1);
    assert_eq!(store.outbox_len().unwrap(), 0);
}

#[test]
fn peek_pages_through_the_outbox_after_a_sequence_number() {
    let mut store = memory(100);
    store
        .write(|w| {
            for i in 0..5 {
                w.queue(twin_entry(&lamp(), &format!("p{i}"), "x"))?;
            }
            Ok(())
        })
        .unwrap();
    let first = store.outbox_peek(0, 2).unwrap();
    let next = store.outbox_peek(first[1].seq, 2).unwrap();
    let rest = store.outbox_peek(next[1].seq, 10).unwrap();
    let seqs: Vec<u64> = first
        .iter()
        .chain(&next)
        .chain(&rest)
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_full_outbox_refuses_new_keys_but_still_coalesces() {
    let mut store = memory(2);
    let fan = DeviceKey::new("default", "fan");
    store
        .write(|w| {
            w.queue(twin_entry(&lamp(), "power", "a"))?;
            w.queue(twin_entry(&fan, "speed", "b"))
        })
        .unwrap();
    let err = store
        .write(|w| w.queue(twin_entry(&lamp(), "level", "c")))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::OutboxFull { capacity: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("full (2 entries)"));
    let queued = store
        .write(|w| w.queue(twin_entry(&lamp(), "power", "a2")))
        .unwrap();
    assert_eq!(queued, Queued::Coalesced);
    store.outbox_ack(store.outbox_last_seq().unwrap()).unwrap();
    store
        .write(|w| w.queue(twin_entry(&lamp(), "level", "c")))
        .unwrap();
}

#[test]
fn sequence_numbers_are_never_reused_after_a_full_drain_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let last = {
        let mut store = Store::open(&path, StoreOptions::default()).unwrap();
        store
            .write(|w| w.queue(twin_entry(&lamp(), "power", "a")))
            .unwrap();
        let last = store.outbox_last_seq().unwrap();
        store.outbox_ack(last).unwrap();
        last
    };
    let mut store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.outbox_last_seq().unwrap(), last);
    store
        .write(|w| w.queue(twin_entry(&lamp(), "power", "b")))
        .unwrap();
    assert_eq!(store.outbox_peek(0, 1).unwrap()[0].seq, last + 1);
}

#[test]
fn a_corrupt_document_is_an_error_naming_the_column() {
    let mut store = memory(10);
    store.write(|w| w.put_device(&lamp(), &doc("d"))).unwrap();
    store
        .conn
        .execute("UPDATE devices SET body = '{not json'", [])
        .unwrap();
    let err = store.devices::<Doc>().unwrap_err();
    assert!(err.to_string().contains("devices.body"), "{err}");
}

#[test]
fn opening_a_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_read_only_store_sees_committed_data_of_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.db");
    let mut writer = Store::open(&path, StoreOptions::default()).unwrap();
    writer.write(|w| w.put_device(&lamp(), &doc("d"))).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.devices::<Doc>().unwrap().len(), 1);
}

#[test]
fn reading_the_outbox_again_reuses_its_prepared_statement() {
    // A bound LIMIT makes sqlite's planner look at the bound value; without the query planner
    // stability guarantee the statement then expires each time the statement cache clears its
    // bindings, and every read parses and plans it again.
    let store = memory(100);
    for _ in 0..3 {
        store.outbox_peek(0, 256).unwrap();
    }
    let statement = store.conn.prepare_cached(outbox::PEEK).unwrap();
    assert_eq!(
        statement.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "the outbox read was prepared again"
    );
}
