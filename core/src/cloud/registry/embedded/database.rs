//! The embedded registry's sqlite file: objects, a change log for watches, and device events.
//!
//! - `objects`: one row per Device / DeviceModel, the object as JSON (with its server fields:
//!   `uid`, `creationTimestamp`, `generation`, `resourceVersion`).
//! - `changes`: one row per write (`ADDED` / `MODIFIED` / `DELETED` with the object after the
//!   write), keyed by the registry-wide revision that the write got. `resourceVersion` is that
//!   revision, so "watch from resourceVersion N" is "changes after N". Only the last
//!   `retained_changes` revisions are kept; a watch from an older revision gets *Gone* and
//!   re-lists, as with the Kubernetes API server.
//! - `events`: recent events per Device, repeated ones counted (`count`, `lastTimestamp`).
//!
//! WAL mode with `synchronous = NORMAL`: a crash of the process loses nothing; a power cut may
//! lose the last commits but never corrupts the file. Checkpoints run on a thread of their own
//! ([`BackgroundCheckpoint`]), not inside the commit of an API request.

use std::path::Path;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::api::EventRecord;
use super::validate::{self, Findings};
use crate::cloud::registry::DeviceEvent;
use crate::cloud::registry::object_set::{Kind, Object};
use crate::wal_checkpoint::BackgroundCheckpoint;
use edgetwin_model::devices::meta::DEFAULT_NAMESPACE;
use edgetwin_model::devices::{Device, DeviceModel, ObjectMeta, Time};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Events kept per Device; older ones are dropped.
const EVENTS_PER_DEVICE: i64 = 50;

/// A type the registry stores: Device or DeviceModel.
pub(crate) trait Stored:
    Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static
{
    /// The kind.
    const KIND: Kind;
    /// `metadata`.
    fn meta(&self) -> &ObjectMeta;
    /// `metadata`, mutable.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Whether the specs are equal (a spec change bumps `generation`).
    fn same_spec(&self, other: &Self) -> bool;
    /// Copies the status of `other` over ours (writes to the main resource keep the status).
    fn keep_status_of(&mut self, other: Option<&Self>);
    /// Wraps the object for watch streams.
    fn into_object(self) -> Object;
    /// Validates the object, reading what it refers to through `txn`.
    fn validate(&self, txn: &Txn<'_>) -> Result<Findings, Error>;
}

/// The parts of [`Stored`] that are the same for both kinds.
macro_rules! stored_common {
    ($kind:expr, $wrap:path) => {
        const KIND: Kind = $kind;
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
        fn meta_mut(&mut self) -> &mut ObjectMeta {
            &mut self.metadata
        }
        fn same_spec(&self, other: &Self) -> bool {
            self.spec == other.spec
        }
        fn keep_status_of(&mut self, other: Option<&Self>) {
            self.status = other.and_then(|o| o.status.clone());
        }
        fn into_object(self) -> Object {
            $wrap(self.into())
        }
    };
}

impl Stored for Device {
    stored_common!(Kind::Device, Object::Device);

    fn validate(&self, txn: &Txn<'_>) -> Result<Findings, Error> {
        let model = match self.model_name() {
            Some(name) if !name.is_empty() => txn.get::<DeviceModel>(self.namespace(), name)?,
            _ => None,
        };
        Ok(validate::device(self, model.as_ref()))
    }
}

impl Stored for DeviceModel {
    stored_common!(Kind::DeviceModel, Object::Model);

    fn validate(&self, _txn: &Txn<'_>) -> Result<Findings, Error> {
        Ok(validate::device_model(self))
    }
}

/// The namespace of an object (`default` when unset).
pub(crate) fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// What kind of change a write was, as watch events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl ChangeType {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [ChangeType::Added, ChangeType::Modified, ChangeType::Deleted]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// One committed write.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The registry revision of the write (the object's `resourceVersion`).
    pub revision: u64,
    /// What happened.
    pub change: ChangeType,
    /// The object after the write (for a deletion: its last state, with the deletion's
    /// `resourceVersion`).
    pub(crate) object: Object,
}

/// How a write turned out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// The object did not exist and was created.
    Created(T),
    /// The object changed.
    Configured(T),
    /// The write changed nothing; nothing was stored.
    Unchanged(T),
}

impl<T> Outcome<T> {
    /// The stored object.
    pub fn object(&self) -> &T {
        match self {
            Outcome::Created(o) | Outcome::Configured(o) | Outcome::Unchanged(o) => o,
        }
    }

    /// The stored object, owned.
    pub fn into_object(self) -> T {
        match self {
            Outcome::Created(o) | Outcome::Configured(o) | Outcome::Unchanged(o) => o,
        }
    }

    /// `created`, `configured` or `unchanged`, as kubectl prints it.
    pub fn verb(&self) -> &'static str {
        match self {
            Outcome::Created(_) => "created",
            Outcome::Configured(_) => "configured",
            Outcome::Unchanged(_) => "unchanged",
        }
    }
}

/// The sqlite file.
pub(crate) struct Database {
    /// Declared before `conn`: stopped first, so the writer's close is the last one and
    /// checkpoints what is left.
    _checkpoint: Option<BackgroundCheckpoint>,
    conn: Connection,
    retained_changes: u64,
}

impl Database {
    /// Opens (creating when missing) the registry file at `path`.
    pub fn open(path: &Path, retained_changes: u64) -> Result<Self, Error> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        crate::stable_plans::keep_plans(&conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Schema {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                 kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (kind, namespace, name)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS changes (
                 revision INTEGER PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL,
                 body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (
                 name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             INSERT OR IGNORE INTO counters VALUES ('revision', 0), ('compacted', 0);
             CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 type TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL,
                 count INTEGER NOT NULL, first_time TEXT NOT NULL, last_time TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS events_by_device ON events (namespace, name);",
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self {
            _checkpoint: BackgroundCheckpoint::install(&mut conn, path),
            conn,
            retained_changes: retained_changes.max(1),
        })
    }

    /// The revision of the last write (0 for an empty registry).
    pub fn revision(&self) -> Result<u64, Error> {
        counter(&self.conn, "revision")
    }

    /// An object by namespace and name.
    pub fn get<T: Stored>(&self, namespace: &str, name: &str) -> Result<Option<T>, Error> {
        get(&self.conn, namespace, name)
    }

    /// The objects of a kind in one namespace or all, ordered by namespace and name.
    pub fn list<T: Stored>(&self, namespace: Option<&str>) -> Result<Vec<T>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2)
             ORDER BY namespace, name",
        )?;
        let rows = stmt.query_map(params![T::KIND.as_str(), namespace], |row| {
            row.get::<_, String>(0)
        })?;
        rows.map(|body| decode(T::KIND, &body?)).collect()
    }

    /// Every object of both kinds (models first), with the revision they are current at.
    pub fn snapshot(&self) -> Result<(Vec<Object>, u64), Error> {
        let mut objects: Vec<Object> = self
            .list::<DeviceModel>(None)?
            .into_iter()
            .map(Stored::into_object)
            .collect();
        objects.extend(
            self.list::<Device>(None)?
                .into_iter()
                .map(Stored::into_object),
        );
        Ok((objects, self.revision()?))
    }

    /// Every change after `revision`, oldest first; [`Error::Gone`] when some of them were
    /// already dropped from the log.
    pub fn changes_since(&self, revision: u64) -> Result<Vec<Change>, Error> {
        let compacted = counter(&self.conn, "compacted")?;
        if revision < compacted {
            return Err(Error::Gone {
                requested: revision,
                oldest: compacted,
            });
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT revision, type, kind, body FROM changes WHERE revision > ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map(params![to_sql(revision)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut changes = Vec::new();
        for row in rows {
            let (revision, change, kind, body) = row?;
            let corrupt = || Error::CorruptRow {
                what: format!("change {revision}"),
            };
            let change = ChangeType::parse(&change).ok_or_else(corrupt)?;
            let object = if kind == Kind::Device.as_str() {
                decode::<Device>(Kind::Device, &body)?.into_object()
            } else if kind == Kind::DeviceModel.as_str() {
                decode::<DeviceModel>(Kind::DeviceModel, &body)?.into_object()
            } else {
                return Err(corrupt());
            };
            changes.push(Change {
                revision: u64::try_from(revision).map_err(|_| corrupt())?,
                change,
                object,
            });
        }
        Ok(changes)
    }

    /// Runs `f` in one transaction and commits when it returns `Ok`. Returns its result and the
    /// changes it made, in revision order.
    pub fn write<R>(
        &mut self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, Error>,
    ) -> Result<(R, Vec<Change>), Error> {
        let tx = self.conn.transaction()?;
        let revision = counter(&tx, "revision")?;
        let mut txn = Txn {
            tx,
            revision,
            changes: Vec::new(),
        };
        let result = f(&mut txn)?;
        let Txn {
            tx,
            revision,
            changes,
        } = txn;
        if !changes.is_empty() {
            let floor = revision.saturating_sub(self.retained_changes);
            tx.prepare_cached("DELETE FROM changes WHERE revision <= ?1")?
                .execute(params![to_sql(floor)])?;
            set_counter(&tx, "revision", revision)?;
            let compacted = counter(&tx, "compacted")?;
            set_counter(&tx, "compacted", compacted.max(floor))?;
        }
        tx.commit()?;
        Ok((result, changes))
    }

    /// Records an event against a Device: a repeat of the last event with the same type,
    /// reason and message counts up; only the newest [`EVENTS_PER_DEVICE`] are kept.
    pub fn record_event(
        &mut self,
        namespace: &str,
        name: &str,
        event: &DeviceEvent,
        now: Timestamp,
    ) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        let now = now.to_string();
        let updated = tx.execute(
            "UPDATE events SET count = count + 1, last_time = ?6
             WHERE namespace = ?1 AND name = ?2 AND type = ?3 AND reason = ?4 AND message = ?5",
            params![
                namespace,
                name,
                event.kind.as_str(),
                event.reason,
                event.message,
                now
            ],
        )?;
        if updated == 0 {
            tx.execute(
                "INSERT INTO events (namespace, name, type, reason, message, count, first_time, last_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
                params![namespace, name, event.kind.as_str(), event.reason, event.message, now],
            )?;
        }
        tx.execute(
            "DELETE FROM events WHERE namespace = ?1 AND name = ?2 AND id NOT IN (
                 SELECT id FROM events WHERE namespace = ?1 AND name = ?2
                 ORDER BY last_time DESC, id DESC LIMIT ?3)",
            params![namespace, name, EVENTS_PER_DEVICE],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The events of a Device, oldest first.
    pub fn events(&self, namespace: &str, name: &str) -> Result<Vec<EventRecord>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT type, reason, message, count, first_time, last_time FROM events
             WHERE namespace = ?1 AND name = ?2 ORDER BY last_time, id",
        )?;
        let rows = stmt.query_map(params![namespace, name], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (kind, reason, message, count, first, last) = row?;
            let time = |text: &str| {
                text.parse::<Timestamp>().map_err(|_| Error::CorruptRow {
                    what: format!("event of device {namespace}/{name}"),
                })
            };
            events.push(EventRecord {
                kind,
                reason,
                message,
                count: u32::try_from(count).unwrap_or(u32::MAX),
                first_timestamp: time(&first)?,
                last_timestamp: time(&last)?,
            });
        }
        Ok(events)
    }
}

/// A write transaction. Every `put`/`delete` that changes something takes the next revision.
pub(crate) struct Txn<'c> {
    tx: Transaction<'c>,
    revision: u64,
    changes: Vec<Change>,
}

impl Txn<'_> {
    /// An object by namespace and name, as of this transaction.
    pub fn get<T: Stored>(&self, namespace: &str, name: &str) -> Result<Option<T>, Error> {
        get(&self.tx, namespace, name)
    }

    /// Stores `object` (creating or replacing it) and fills in its server fields: `uid` and
    /// `creationTimestamp` (kept from the stored object, new on create), `generation` (1 on
    /// create, +1 when the spec changed) and `resourceVersion` (the write's revision). A write
    /// that changes nothing stores nothing and is [`Outcome::Unchanged`].
    ///
    /// `current` is the stored object as the caller read it in this transaction (`None` when
    /// there is none): every write reads it first anyway, so it is not read and decoded twice.
    ///
    /// The caller decides everything else (validation, status, labels, preconditions).
    pub fn put<T: Stored>(
        &mut self,
        mut object: T,
        current: Option<&T>,
    ) -> Result<Outcome<T>, Error> {
        let namespace = namespace_of(object.meta()).to_owned();
        let name = object_name(&object).to_owned();
        let meta = object.meta_mut();
        meta.namespace = Some(namespace.clone());
        let change = match current {
            None => {
                meta.uid = Some(uuid::Uuid::new_v4().to_string());
                meta.creation_timestamp = Some(Time::from(whole_seconds(Timestamp::now())));
                meta.generation = Some(1);
                ChangeType::Added
            }
            Some(current) => {
                let stored = current.meta();
                meta.uid.clone_from(&stored.uid);
                meta.creation_timestamp
                    .clone_from(&stored.creation_timestamp);
                meta.resource_version.clone_from(&stored.resource_version);
                let generation = stored.generation.unwrap_or(1);
                let spec_changed = !object.same_spec(current);
                object.meta_mut().generation = Some(generation + i64::from(spec_changed));
                if object == *current {
                    return Ok(Outcome::Unchanged(object));
                }
                ChangeType::Modified
            }
        };
        let revision = self.next_revision();
        object.meta_mut().resource_version = Some(revision.to_string());
        let body = serde_json::to_string(&object).map_err(Error::Encode)?;
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![T::KIND.as_str(), namespace, name, body])?;
        self.log(
            revision,
            change,
            T::KIND,
            &body,
            object.clone().into_object(),
        )?;
        Ok(match change {
            ChangeType::Added => Outcome::Created(object),
            _ => Outcome::Configured(object),
        })
    }

    /// Deletes an object (and, for a Device, its events). Returns its last state, with the
    /// deletion's `resourceVersion`; `None` when it did not exist.
    pub fn delete<T: Stored>(&mut self, namespace: &str, name: &str) -> Result<Option<T>, Error> {
        let Some(mut object) = self.get::<T>(namespace, name)? else {
            return Ok(None);
        };
        self.tx.execute(
            "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![T::KIND.as_str(), namespace, name],
        )?;
        if T::KIND == Kind::Device {
            self.tx.execute(
                "DELETE FROM events WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?;
        }
        let revision = self.next_revision();
        object.meta_mut().resource_version = Some(revision.to_string());
        let body = serde_json::to_string(&object).map_err(Error::Encode)?;
        self.log(
            revision,
            ChangeType::Deleted,
            T::KIND,
            &body,
            object.clone().into_object(),
        )?;
        Ok(Some(object))
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn log(
        &mut self,
        revision: u64,
        change: ChangeType,
        kind: Kind,
        body: &str,
        object: Object,
    ) -> Result<(), Error> {
        self.tx
            .prepare_cached(
                "INSERT INTO changes (revision, type, kind, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                to_sql(revision),
                change.as_str(),
                kind.as_str(),
                body
            ])?;
        self.changes.push(Change {
            revision,
            change,
            object,
        });
        Ok(())
    }
}

/// `metadata.name`, empty when missing (validation refuses such objects before they are stored).
fn object_name<T: Stored>(object: &T) -> &str {
    object.meta().name.as_deref().unwrap_or_default()
}

fn get<T: Stored>(conn: &Connection, namespace: &str, name: &str) -> Result<Option<T>, Error> {
    let body: Option<String> = conn
        .prepare_cached(
            "SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        )?
        .query_row(params![T::KIND.as_str(), namespace, name], |row| row.get(0))
        .optional()?;
    body.map(|body| decode(T::KIND, &body)).transpose()
}

fn decode<T: Stored>(kind: Kind, body: &str) -> Result<T, Error> {
    serde_json::from_str(body).map_err(|source| Error::Decode { kind, source })
}

fn counter(conn: &Connection, name: &str) -> Result<u64, Error> {
    let value: i64 = conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row(params![name], |row| row.get(0))?;
    u64::try_from(value).map_err(|_| Error::CorruptRow {
        what: format!("counter {name}"),
    })
}

fn set_counter(conn: &Connection, name: &str, value: u64) -> Result<(), Error> {
    conn.prepare_cached("UPDATE counters SET value = ?2 WHERE name = ?1")?
        .execute(params![name, to_sql(value)])?;
    Ok(())
}

/// Revisions are stored as sqlite integers; no registry writes 2^63 times.
fn to_sql(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// Kubernetes timestamps have whole seconds; keeping the in-memory object equal to the stored
/// one avoids spurious differences.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}
