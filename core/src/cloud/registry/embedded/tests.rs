//! The embedded registry in process, on real sqlite files: server fields, validation, patches,
//! the change log and the `Registry` watch.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::testkit::{device, model};
use super::*;
use crate::cloud::registry::{EventKind, Registry};
use edgetwin_model::devices::{ConditionType, PropertyCondition, Twin, TwinProperty};

fn open(dir: &tempfile::TempDir) -> EmbeddedRegistry {
    EmbeddedRegistry::open(&dir.path().join("registry.db")).expect("opens")
}

fn rv(device: &Device) -> u64 {
    device
        .metadata
        .resource_version
        .as_deref()
        .expect("resourceVersion")
        .parse()
        .expect("a number")
}

/// Waits for the next item of a stream, failing the test after a generous timeout.
async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream goes on")
}

/// Applies the traffic-light model and device; returns the stored device.
async fn seed(registry: &EmbeddedRegistry) -> Device {
    registry
        .apply(model(), ApplyMode::CreateOrReplace)
        .await
        .expect("model");
    registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("device")
        .outcome
        .into_object()
}

fn set_desired(device: &mut Device, property: &str, value: &str) {
    let property = device
        .spec
        .properties
        .iter_mut()
        .find(|p| p.name == property)
        .expect("property");
    property.desired = Some(TwinProperty::new(value));
}

#[tokio::test]
async fn generation_follows_the_spec_and_resource_version_every_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);
    let applied = registry
        .apply(model(), ApplyMode::CreateOrReplace)
        .await
        .expect("model");
    assert_eq!(applied.outcome.verb(), "created");

    let created = registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("device");
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let Outcome::Created(first) = created.outcome else {
        panic!("expected created");
    };
    assert_eq!(first.metadata.generation, Some(1));
    assert_eq!(rv(&first), 2);
    assert_eq!(first.namespace(), "default");
    let uid = first.metadata.uid.clone().expect("uid");
    let created_at = first
        .metadata
        .creation_timestamp
        .clone()
        .expect("creation time");

    // The same object again: nothing is written.
    let again = registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("again");
    assert_eq!(again.outcome.verb(), "unchanged");
    assert_eq!(rv(again.outcome.object()), 2);
    assert_eq!(registry.revision().await.expect("revision"), 2);

    // A label change: a new resourceVersion, the same generation.
    let mut labelled = device();
    labelled.metadata.labels = Some([("site".to_owned(), "yard".to_owned())].into());
    let labelled = registry
        .apply(labelled, ApplyMode::CreateOrReplace)
        .await
        .expect("labels")
        .outcome
        .into_object();
    assert_eq!((labelled.metadata.generation, rv(&labelled)), (Some(1), 3));

    // A spec change: both move.
    let mut red = device();
    set_desired(&mut red, "red", "ON");
    let red = registry
        .apply(red, ApplyMode::CreateOrReplace)
        .await
        .expect("spec");
    assert_eq!(red.outcome.verb(), "configured");
    let red = red.outcome.into_object();
    assert_eq!((red.metadata.generation, rv(&red)), (Some(2), 4));
    assert_eq!(red.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(red.metadata.creation_timestamp.as_ref(), Some(&created_at));
    assert_eq!(
        red.metadata.labels,
        device().metadata.labels,
        "apply replaces labels"
    );

    // A status write: resourceVersion only.
    let patch = DeviceStatus {
        twins: vec![Twin {
            reported: Some(TwinProperty::new("ON")),
            ..Twin::new("red")
        }],
        observed_generation: Some(2),
        ..DeviceStatus::default()
    };
    let reported = registry
        .patch_device_status("default", "traffic-light", patch)
        .await
        .expect("status");
    assert_eq!((reported.metadata.generation, rv(&reported)), (Some(2), 5));

    // Apply never takes the status from the object: the stored one stays.
    let mut with_status = device();
    set_desired(&mut with_status, "red", "ON");
    with_status.status = Some(DeviceStatus {
        state: Some("forged".into()),
        ..DeviceStatus::default()
    });
    let kept = registry
        .apply(with_status, ApplyMode::CreateOrReplace)
        .await
        .expect("apply");
    assert_eq!(kept.outcome.verb(), "unchanged");
    assert_eq!(kept.outcome.object().status, reported.status);

    // Everything is on disk: a reopened registry has the same objects and revision.
    drop(registry);
    let reopened = open(&dir);
    assert_eq!(reopened.revision().await.expect("revision"), 5);
    let stored: Device = reopened
        .get("default", "traffic-light")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored, reported);
}

#[tokio::test]
async fn create_refuses_existing_objects_and_preconditions_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);
    registry
        .apply(model(), ApplyMode::Create)
        .await
        .expect("created");
    let err = registry
        .apply(model(), ApplyMode::Create)
        .await
        .expect_err("exists");
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "devicemodels.devices.kubeedge.io \"traffic-light-model\" already exists"
    );

    let mut stale = model();
    stale.metadata.resource_version = Some("7".into());
    let err = registry
        .apply(stale, ApplyMode::CreateOrReplace)
        .await
        .expect_err("stale");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");

    let mut missing = device();
    missing.metadata.resource_version = Some("1".into());
    let err = registry
        .apply(missing, ApplyMode::CreateOrReplace)
        .await
        .expect_err("missing");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_field_paths_and_dangling_models_warn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);

    // No model yet: accepted, with a warning, values unchecked.
    let mut unchecked = device();
    set_desired(&mut unchecked, "brightness", "very");
    let applied = registry
        .apply(unchecked, ApplyMode::CreateOrReplace)
        .await
        .expect("accepted");
    assert_eq!(applied.warnings.len(), 1);
    assert!(applied.warnings[0].contains("traffic-light-model"));

    registry
        .apply(model(), ApplyMode::CreateOrReplace)
        .await
        .expect("model");
    let mut bad = device();
    set_desired(&mut bad, "brightness", "300");
    set_desired(&mut bad, "cycles", "1");
    let err = registry
        .apply(bad, ApplyMode::CreateOrReplace)
        .await
        .expect_err("invalid");
    let Error::Invalid { causes, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let fields: Vec<_> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.properties[3].desired.value",
            "spec.properties[4].desired.value"
        ]
    );
    assert!(err.to_string().starts_with(
        "Device.devices.kubeedge.io \"traffic-light\" is invalid: spec.properties[3].desired.value: Invalid value: \"300\""
    ));
}

#[tokio::test]
async fn merge_patches_replace_arrays_check_preconditions_and_keep_identity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);
    let stored = seed(&registry).await;

    let patched = registry
        .patch_object::<Device>(
            "default",
            "traffic-light",
            json!({"spec": {"nodeName": "pi-2"}, "status": {"state": "ignored"}}),
        )
        .await
        .expect("patch")
        .outcome
        .into_object();
    assert_eq!(patched.node_name(), Some("pi-2"));
    assert_eq!(
        patched.spec.properties, stored.spec.properties,
        "siblings stay"
    );
    assert_eq!(
        patched.status, None,
        "status changes go through /status only"
    );
    assert_eq!(patched.metadata.generation, Some(2));

    let err = registry
        .patch_object::<Device>(
            "default",
            "traffic-light",
            json!({"metadata": {"resourceVersion": stored.metadata.resource_version}, "spec": {"nodeName": "x"}}),
        )
        .await
        .expect_err("stale resourceVersion");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");

    let err = registry
        .patch_object::<Device>(
            "default",
            "traffic-light",
            json!({"metadata": {"name": "other"}}),
        )
        .await
        .expect_err("rename");
    assert!(
        err.to_string()
            .contains("metadata.name: Invalid value: \"other\": field is immutable"),
        "{err}"
    );

    let err = registry
        .patch_object::<Device>(
            "default",
            "traffic-light",
            json!({"spec": {"properties": [{"name": "red", "desired": {"value": 1}}]}}),
        )
        .await
        .expect_err("wrong JSON type");
    let Error::Invalid { causes, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(causes[0].field, "spec.properties[0].desired.value");

    // Arrays are replaced: the patch leaves one property.
    let replaced = registry
        .patch_object::<Device>(
            "default",
            "traffic-light",
            json!({"spec": {"properties": [{"name": "red", "desired": {"value": "ON"}}]}}),
        )
        .await
        .expect("patch")
        .outcome
        .into_object();
    assert_eq!(replaced.spec.properties.len(), 1);

    let err = registry
        .patch_object::<Device>("default", "nope", json!({}))
        .await
        .expect_err("missing");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn status_writes_merge_by_property_and_leave_the_spec() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);
    registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("device");
    let registry: Arc<dyn Registry> = Arc::new(registry);

    let red = DeviceStatus {
        twins: vec![Twin {
            reported: Some(TwinProperty::new("ON")),
            ..Twin::new("red")
        }],
        state: Some("online".into()),
        ..DeviceStatus::default()
    };
    let failed = PropertyCondition {
        reason: Some("WriteTimeout".into()),
        ..PropertyCondition::new(ConditionType::Failed, jiff::Timestamp::UNIX_EPOCH)
    };
    let green = DeviceStatus {
        twins: vec![Twin {
            condition: Some(failed.clone()),
            ..Twin::new("green")
        }],
        ..DeviceStatus::default()
    };
    registry
        .patch_status("default", "traffic-light", &red)
        .await
        .expect("red");
    let both = registry
        .patch_status("default", "traffic-light", &green)
        .await
        .expect("green");
    let status = both.status.expect("status");
    assert_eq!(
        status.twins.len(),
        2,
        "the second writer did not clobber the first"
    );
    assert_eq!(
        status.twin("red").and_then(|t| t.reported.clone()),
        Some(TwinProperty::new("ON"))
    );
    assert_eq!(
        status.twin("green").and_then(|t| t.condition.clone()),
        Some(failed)
    );
    assert_eq!(status.state.as_deref(), Some("online"));
    assert_eq!(both.metadata.generation, Some(1));

    let err = registry
        .patch_status("default", "missing", &red)
        .await
        .expect_err("missing");
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(
        *registry.leader().borrow(),
        "the embedded registry always leads"
    );
}

#[tokio::test]
async fn merge_patch_status_changes_only_the_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);
    let stored = registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("device")
        .outcome
        .into_object();
    let patched = registry
        .patch_object_status::<Device>(
            "default",
            "traffic-light",
            json!({"spec": {"nodeName": "ignored"}, "status": {"state": "offline"}}),
        )
        .await
        .expect("patch")
        .outcome
        .into_object();
    assert_eq!(patched.spec, stored.spec);
    assert_eq!(patched.metadata.generation, Some(1));
    assert_eq!(
        patched.status.and_then(|s| s.state).as_deref(),
        Some("offline")
    );
}

#[tokio::test]
async fn events_are_counted_listed_and_deleted_with_the_device() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = open(&dir);
    let stored = registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("device")
        .outcome
        .into_object();
    let failed = DeviceEvent::warning("ActuationFailed", "red: write timed out");
    for _ in 0..3 {
        Registry::record_event(&registry, &stored, &failed)
            .await
            .expect("event");
    }
    let other = DeviceEvent {
        kind: EventKind::Normal,
        reason: "Verified".into(),
        message: "red is ON".into(),
        action: "Actuate",
    };
    Registry::record_event(&registry, &stored, &other)
        .await
        .expect("event");
    let events = registry
        .device_events("default", "traffic-light")
        .await
        .expect("events");
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.reason.as_str(), e.count))
        .collect();
    assert_eq!(
        summary,
        [("Warning", "ActuationFailed", 3), ("Normal", "Verified", 1)]
    );
    assert!(events[0].first_timestamp <= events[0].last_timestamp);

    registry
        .delete::<Device>("default", "traffic-light")
        .await
        .expect("delete");
    assert!(
        registry
            .device_events("default", "traffic-light")
            .await
            .expect("events")
            .is_empty()
    );
}

#[tokio::test]
async fn the_change_log_replays_from_a_revision_and_says_gone_when_compacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        retained_changes: 3,
        watch_buffer: 16,
    };
    let registry = EmbeddedRegistry::open_with(&dir.path().join("r.db"), options).expect("opens");
    seed(&registry).await;
    let mut on = device();
    set_desired(&mut on, "red", "ON");
    registry
        .apply(on, ApplyMode::CreateOrReplace)
        .await
        .expect("red");
    registry
        .delete::<Device>("default", "traffic-light")
        .await
        .expect("delete");

    // Revisions 2..=4 are retained; from 1 the log is complete.
    let mut from_one = registry.watch_changes(Some(1));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let change = next(&mut from_one).await.expect("change");
        seen.push((change.revision, change.change));
    }
    assert_eq!(
        seen,
        [
            (2, ChangeType::Added),
            (3, ChangeType::Modified),
            (4, ChangeType::Deleted)
        ]
    );

    // Live changes follow the replay.
    registry
        .apply(device(), ApplyMode::CreateOrReplace)
        .await
        .expect("again");
    let live = next(&mut from_one).await.expect("live change");
    assert_eq!((live.revision, live.change), (5, ChangeType::Added));

    let mut too_old = registry.watch_changes(Some(0));
    let err = next(&mut too_old).await.expect_err("gone");
    assert!(
        matches!(
            err,
            Error::Gone {
                requested: 0,
                oldest: 2
            }
        ),
        "{err}"
    );
    assert!(too_old.next().await.is_none(), "an error ends the stream");

    // Without a revision: every object as ADDED, then changes.
    let mut listing = registry.watch_changes(None);
    let first = next(&mut listing).await.expect("model");
    let second = next(&mut listing).await.expect("device");
    assert_eq!(
        (first.change, second.change),
        (ChangeType::Added, ChangeType::Added)
    );
    assert_eq!(first.object.key().kind.as_str(), "DeviceModel");
}

#[tokio::test]
async fn registry_watch_lists_then_follows_and_recovers_from_falling_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        retained_changes: 2,
        watch_buffer: 1,
    };
    let registry = EmbeddedRegistry::open_with(&dir.path().join("r.db"), options).expect("opens");
    seed(&registry).await;

    let mut watch = Registry::watch(&registry);
    assert!(
        matches!(next(&mut watch).await, RegistryEvent::ModelApplied(m) if m.name() == "traffic-light-model")
    );
    assert!(
        matches!(next(&mut watch).await, RegistryEvent::Applied(d) if d.name() == "traffic-light")
    );
    assert_eq!(next(&mut watch).await, RegistryEvent::Synced);

    let mut on = device();
    set_desired(&mut on, "red", "ON");
    registry
        .apply(on, ApplyMode::CreateOrReplace)
        .await
        .expect("red");
    let RegistryEvent::Applied(changed) = next(&mut watch).await else {
        panic!("expected the change");
    };
    assert_eq!(changed.metadata.generation, Some(2));

    // Fall behind: more writes than the broadcast buffers and the log keeps, while the consumer
    // does not read. The stream must re-list and send exactly the difference.
    let mut second = device();
    second.metadata.name = Some("second-light".into());
    registry
        .apply(second, ApplyMode::CreateOrReplace)
        .await
        .expect("second");
    registry
        .delete::<Device>("default", "traffic-light")
        .await
        .expect("delete");
    registry
        .delete::<DeviceModel>("default", "traffic-light-model")
        .await
        .expect("delete model");
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(match next(&mut watch).await {
            RegistryEvent::Applied(d) => format!("applied {}", d.name()),
            RegistryEvent::Deleted(d) => format!("deleted {}", d.name()),
            RegistryEvent::ModelDeleted(m) => format!("model deleted {}", m.name()),
            other => format!("{other:?}"),
        });
    }
    events.sort();
    assert_eq!(
        events,
        [
            "applied second-light",
            "deleted traffic-light",
            "model deleted traffic-light-model"
        ]
    );

    // When the registry goes away, the stream ends.
    drop(registry);
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("ends in time");
    assert_eq!(end, None);
}
