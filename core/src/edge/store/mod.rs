//! Edge persistence: one sqlite file (WAL) holding device models, devices (with their state), the
//! twin of every device property and the cloud-bound outbox.
//!
//! The store keeps serde documents keyed by object and property; it does not interpret them, so
//! the model and the twin engine can evolve without touching SQL. Documents are JSON text.
//!
//! **Writes** go through a [`Batch`] (one sqlite transaction) split into [`Scope`]s (savepoints):
//! the agent applies a batch of inbound events, one scope per event, and commits once. An event
//! whose writes fail (e.g. [`StoreError::OutboxFull`]) is rolled back alone; the rest of the batch
//! commits. Nothing is visible to readers, nor durable, before [`Batch::commit`].
//!
//! **Durability** is sqlite's: in WAL mode a committed transaction survives the death of the
//! process with either `synchronous` level; `FULL` also survives power loss at the cost of an
//! fsync per commit (see [`Synchronous`]; the measured difference is in BENCHMARKS.md, "Edge
//! agent › Design choices"). WAL checkpoints (copying the log into the database file, with its
//! syncs) run on a thread of their own (`crate::wal_checkpoint`), not inside the commit of a
//! batch.

pub mod outbox;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wal_checkpoint::BackgroundCheckpoint;

/// sqlite's page cache per connection, KiB (`PRAGMA cache_size = -N`).
const CACHE_KIB: i64 = 256;

pub use outbox::{NewEntry, OutboxEntry, OutboxKind, Queued};
pub use schema::LATEST as SCHEMA_VERSION;

/// Errors of the edge store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by a newer edgetwin.
    #[error(
        "the store has schema version {found}, newer than this build understands ({latest}); \
         use a newer edgetwin or another data dir"
    )]
    SchemaTooNew {
        /// The version in the file.
        found: u32,
        /// The newest version this build knows.
        latest: u32,
    },
    /// A migration step failed; the database stays at the previous version.
    #[error("store migration to schema version {to} failed: {source}")]
    Migration {
        /// The version the failed step migrates to.
        to: u32,
        /// Why.
        source: rusqlite::Error,
    },
    /// The outbox is at its capacity and the entry has a new key.
    #[error("the cloud outbox is full ({capacity} entries); the change was not applied")]
    OutboxFull {
        /// The configured capacity.
        capacity: u64,
    },
    /// A stored document does not decode (the file was edited by hand or is damaged).
    #[error("corrupt store content in {what}: {detail}")]
    Corrupt {
        /// Which table/column.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A document could not be encoded.
    #[error("cannot encode {what} for the store: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// Any other sqlite error.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// sqlite's `synchronous` level for the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// A commit survives process death (SIGKILL, panic, OOM kill); the last commits before a
    /// power loss or kernel crash may be lost (never corrupted). No fsync per commit.
    #[default]
    Normal,
    /// A commit also survives power loss: an fsync of the WAL per commit.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The WAL `synchronous` level.
    pub synchronous: Synchronous,
    /// The maximum number of outbox entries (distinct keys, see [`outbox`]).
    pub outbox_capacity: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Normal,
            outbox_capacity: 100_000,
        }
    }
}

/// The `namespace/name` key of a stored object (a device or a device model).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The object name.
    pub name: String,
}

/// The key of a device.
pub type DeviceKey = ObjectKey;

impl ObjectKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A stored device: its document and the last state a mapper reported.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDevice<D> {
    /// The device document.
    pub device: D,
    /// The last reported device state (`online`, `offline`, …), if any.
    pub state: Option<String>,
    /// When the device was last seen online (RFC 3339), if ever.
    pub last_online: Option<String>,
}

/// One stored property twin.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTwin<T> {
    /// The device.
    pub device: DeviceKey,
    /// The property name.
    pub property: String,
    /// The twin state document.
    pub twin: T,
}

/// The edge store: one sqlite connection, owned by one task.
pub struct Store {
    /// Declared before `conn`: stopped first (see [`BackgroundCheckpoint`]).
    _checkpoint: Option<BackgroundCheckpoint>,
    conn: Connection,
    options: StoreOptions,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it to the latest schema.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Store::setup(conn, options, Some(path.to_owned()))
    }

    /// Opens an existing store read-only (for inspection and tests; no migration is run).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Open {
                path: path.to_owned(),
                source,
            },
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Store {
            _checkpoint: None,
            conn,
            options: StoreOptions::default(),
            path: Some(path.to_owned()),
        })
    }

    /// An in-memory store (tests and benchmarks).
    pub fn open_in_memory(options: StoreOptions) -> Result<Store, StoreError> {
        Store::setup(Connection::open_in_memory()?, options, None)
    }

    fn setup(
        mut conn: Connection,
        options: StoreOptions,
        path: Option<PathBuf>,
    ) -> Result<Store, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // `journal_mode` answers with the mode in force (in-memory databases stay "memory").
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // sqlite's default page cache (2000 KiB) would hold the whole database of a small node in
        // the agent's heap; the pages a commit touches (the twins' and outbox's B-tree paths) fit
        // in far less, and the rest is read from the OS page cache (docs/architecture.md, "Memory").
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(32);
        crate::stable_plans::keep_plans(&conn)?;
        schema::migrate(&mut conn)?;
        let checkpoint = match &path {
            Some(path) if mode.eq_ignore_ascii_case("wal") => {
                BackgroundCheckpoint::install(&mut conn, path)
            }
            _ => None,
        };
        Ok(Store {
            _checkpoint: checkpoint,
            conn,
            options,
            path,
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
    }

    /// Starts a write batch (one transaction).
    pub fn batch(&mut self) -> Result<Batch<'_>, StoreError> {
        Ok(Batch {
            tx: self.conn.transaction()?,
            capacity: self.options.outbox_capacity,
            outbox_len: None,
            failed_rollback: None,
        })
    }

    /// Runs `f` in a batch with a single scope and commits: for one-off writes.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Scope<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut batch = self.batch()?;
        let mut scope = batch.scope()?;
        let value = f(&mut scope)?;
        scope.commit()?;
        batch.commit()?;
        Ok(value)
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?)
    }

    /// Every stored device model.
    pub fn models<M: DeserializeOwned>(&self) -> Result<Vec<M>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM models ORDER BY namespace, name")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let mut models = Vec::new();
        for body in rows {
            models.push(decode("models.body", &body?)?);
        }
        Ok(models)
    }

    /// Every stored device with its last reported state.
    pub fn devices<D: DeserializeOwned>(&self) -> Result<Vec<StoredDevice<D>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT body, state, last_online FROM devices ORDER BY namespace, name")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut devices = Vec::new();
        for row in rows {
            let (body, state, last_online) = row?;
            devices.push(StoredDevice {
                device: decode("devices.body", &body)?,
                state,
                last_online,
            });
        }
        Ok(devices)
    }

    /// Every stored property twin, ordered by device and property.
    pub fn twins<T: DeserializeOwned>(&self) -> Result<Vec<StoredTwin<T>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT namespace, name, property, state FROM twins ORDER BY namespace, name, property",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut twins = Vec::new();
        for row in rows {
            let (namespace, name, property, state) = row?;
            twins.push(StoredTwin {
                device: DeviceKey { namespace, name },
                property,
                twin: decode("twins.state", &state)?,
            });
        }
        Ok(twins)
    }

    /// The twin of one property, if stored.
    pub fn twin<T: DeserializeOwned>(
        &self,
        device: &DeviceKey,
        property: &str,
    ) -> Result<Option<T>, StoreError> {
        let state: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT state FROM twins WHERE namespace = ?1 AND name = ?2 AND property = ?3",
            )?
            .query_row(params![device.namespace, device.name, property], |row| {
                row.get(0)
            })
            .optional()?;
        state.map(|s| decode("twins.state", &s)).transpose()
    }

    /// The number of outbox entries.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        outbox::len(&self.conn)
    }

    /// Up to `limit` outbox entries in order, after sequence number `after` (0: from the start).
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        outbox::peek(&self.conn, after, limit)
    }

    /// Removes every outbox entry up to and including `up_to` (the cloud acknowledged them);
    /// returns how many were removed. Entries coalesced after being read have a higher `seq` and
    /// stay.
    pub fn outbox_ack(&mut self, up_to: u64) -> Result<u64, StoreError> {
        outbox::ack(&self.conn, up_to)
    }

    /// The highest outbox sequence number ever handed out (0 when none).
    pub fn outbox_last_seq(&self) -> Result<u64, StoreError> {
        outbox::last_seq(&self.conn)
    }
}

/// A write batch: one sqlite transaction. Dropping it without [`Batch::commit`] rolls back.
pub struct Batch<'s> {
    tx: Transaction<'s>,
    capacity: u64,
    /// The outbox length, counted once per batch when first needed and kept up to date.
    outbox_len: Option<u64>,
    /// Why a dropped scope's writes could not be undone: the batch then must not commit.
    failed_rollback: Option<rusqlite::Error>,
}

impl Batch<'_> {
    /// Opens a scope (a savepoint) for one event's writes.
    pub fn scope(&mut self) -> Result<Scope<'_>, StoreError> {
        let outbox_len = match self.outbox_len {
            Some(len) => len,
            None => outbox::len(&self.tx)?,
        };
        self.outbox_len = Some(outbox_len);
        let conn: &Connection = &self.tx;
        conn.prepare_cached(SAVEPOINT)?.execute([])?;
        Ok(Scope {
            sp: conn,
            released: false,
            capacity: self.capacity,
            outbox_len,
            batch_outbox_len: &mut self.outbox_len,
            failed_rollback: &mut self.failed_rollback,
        })
    }

    /// Commits the batch: from here on every scope committed in it is durable. Fails, and
    /// commits nothing, when a dropped scope's writes could not be undone (they would otherwise
    /// be committed with the rest).
    pub fn commit(self) -> Result<(), StoreError> {
        if let Some(error) = self.failed_rollback {
            return Err(error.into());
        }
        Ok(self.tx.commit()?)
    }
}

/// The savepoint of a [`Scope`], opened and closed through cached statements: rusqlite's
/// `Savepoint` parses its SQL on every use, a measurable share of one event's writes. Scopes are
/// never nested (a scope borrows its batch mutably), so one name serves.
const SAVEPOINT: &str = "SAVEPOINT edgetwin_scope";
const RELEASE: &str = "RELEASE edgetwin_scope";
const ROLLBACK_TO: &str = "ROLLBACK TO edgetwin_scope";

/// One event's writes inside a batch (a savepoint). Dropping it without [`Scope::commit`] undoes
/// its writes and only its writes.
pub struct Scope<'b> {
    /// The batch's connection, inside the scope's savepoint.
    sp: &'b Connection,
    /// Whether the savepoint was released (committed into the batch).
    released: bool,
    capacity: u64,
    outbox_len: u64,
    batch_outbox_len: &'b mut Option<u64>,
    failed_rollback: &'b mut Option<rusqlite::Error>,
}

impl Scope<'_> {
    /// Keeps this scope's writes in the batch.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.sp.prepare_cached(RELEASE)?.execute([])?;
        self.released = true;
        *self.batch_outbox_len = Some(self.outbox_len);
        Ok(())
    }

    /// Sets a value in the `meta` table.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.sp
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Inserts or replaces a device model.
    pub fn put_model(&mut self, key: &ObjectKey, model: &impl Serialize) -> Result<(), StoreError> {
        let body = encode("device model", model)?;
        self.sp
            .prepare_cached(
                "INSERT INTO models (namespace, name, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, name) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![key.namespace, key.name, body])?;
        Ok(())
    }

    /// Deletes a device model; returns whether it existed.
    pub fn delete_model(&mut self, key: &ObjectKey) -> Result<bool, StoreError> {
        let n = self
            .sp
            .prepare_cached("DELETE FROM models WHERE namespace = ?1 AND name = ?2")?
            .execute(params![key.namespace, key.name])?;
        Ok(n > 0)
    }

    /// Inserts or replaces a device document (its reported state and twins are kept).
    pub fn put_device(
        &mut self,
        key: &DeviceKey,
        device: &impl Serialize,
    ) -> Result<(), StoreError> {
        let body = encode("device", device)?;
        self.sp
            .prepare_cached(
                "INSERT INTO devices (namespace, name, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, name) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![key.namespace, key.name, body])?;
        Ok(())
    }

    /// Deletes a device with its twins and its outbox entries; returns whether it existed.
    pub fn delete_device(&mut self, key: &DeviceKey) -> Result<bool, StoreError> {
        let n = self
            .sp
            .prepare_cached("DELETE FROM devices WHERE namespace = ?1 AND name = ?2")?
            .execute(params![key.namespace, key.name])?;
        let removed = outbox::remove_device(self.sp, key)?;
        self.outbox_len -= removed.min(self.outbox_len);
        Ok(n > 0)
    }

    /// Records the state a mapper reported for a device and, when given, when it was last online.
    pub fn set_device_state(
        &mut self,
        key: &DeviceKey,
        state: &str,
        last_online: Option<&str>,
    ) -> Result<(), StoreError> {
        self.sp
            .prepare_cached(
                "UPDATE devices SET state = ?3, last_online = coalesce(?4, last_online)
                 WHERE namespace = ?1 AND name = ?2",
            )?
            .execute(params![key.namespace, key.name, state, last_online])?;
        Ok(())
    }

    /// Inserts or replaces the twin of one property. The device must be stored.
    pub fn put_twin(
        &mut self,
        device: &DeviceKey,
        property: &str,
        twin: &impl Serialize,
    ) -> Result<(), StoreError> {
        let state = encode("twin", twin)?;
        self.sp
            .prepare_cached(
                "INSERT INTO twins (namespace, name, property, state) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, name, property) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![device.namespace, device.name, property, state])?;
        Ok(())
    }

    /// Deletes the twin of one property; returns whether it existed.
    pub fn delete_twin(&mut self, device: &DeviceKey, property: &str) -> Result<bool, StoreError> {
        let n = self
            .sp
            .prepare_cached(
                "DELETE FROM twins WHERE namespace = ?1 AND name = ?2 AND property = ?3",
            )?
            .execute(params![device.namespace, device.name, property])?;
        Ok(n > 0)
    }

    /// Queues a cloud-bound entry (see the [`outbox`] rules: coalesced per key, bounded).
    pub fn queue(&mut self, entry: NewEntry<'_>) -> Result<Queued, StoreError> {
        let queued = outbox::push(self.sp, entry, self.outbox_len, self.capacity)?;
        if queued == Queued::Appended {
            self.outbox_len += 1;
        }
        Ok(queued)
    }

    /// The outbox length including this scope's writes.
    pub fn outbox_len(&self) -> u64 {
        self.outbox_len
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Undo the scope's writes and close it (as rusqlite's `Savepoint` does on drop). Should
        // that fail, the writes are still in the transaction: the batch refuses to commit.
        let undone = self
            .sp
            .prepare_cached(ROLLBACK_TO)
            .and_then(|mut rollback| rollback.execute([]))
            .and_then(|_| self.sp.prepare_cached(RELEASE)?.execute([]));
        if let Err(error) = undone {
            tracing::error!(%error, "cannot roll a store scope back; its batch will not commit");
            self.failed_rollback.get_or_insert(error);
        }
    }
}

fn encode(what: &'static str, value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

/// Decodes through a `serde_json::Value`: the model's types are then deserialized by the same
/// code as the cloud link's (`serde_json::from_value`), not by a second copy for the text reader
/// (the edge binary's code pages are most of its resident memory, see docs/architecture.md).
fn decode<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    };
    serde_json::from_str(text)
        .and_then(serde_json::from_value)
        .map_err(corrupt)
}

#[cfg(test)]
mod tests;
