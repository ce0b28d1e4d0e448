//! The cloud-bound outbox: what the edge must tell the cloud, persisted in the same transaction as
//! the twin change that caused it.
//!
//! **Order.** Entries are read in `seq` order; `seq` only grows and is never reused.
//!
//! **Coalescing.** There is at most one entry per key `(kind, device, property)`. Queuing a newer
//! entry for a key that already has one *replaces* it: the old row is deleted and the new content
//! is appended with a fresh `seq` (it moves to the tail). So an acknowledgement "up to seq N" never
//! deletes content newer than what the cloud was sent, even if a coalesce happened in between.
//!
//! **Bound.** The number of entries is bounded by a configurable capacity. Because of coalescing
//! the outbox only grows with the number of distinct keys, i.e. with devices × properties, so the
//! bound is hit only when the edge serves more properties than the capacity allows. Then a *new*
//! key is refused ([`super::StoreError::OutboxFull`]); the caller rolls the whole change back and
//! answers the mapper with an error, so nothing is silently lost and the edge never holds a twin
//! value the cloud will not hear about. Replacing an existing key is always allowed.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DeviceKey, StoreError};

/// What kind of cloud-bound message an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// A twin sync for one property (KubeEdge's `twin/edge_updated`).
    Twin,
    /// The device state (online, offline, …; KubeEdge's device state update).
    State,
    /// The node's version summary for the cloud's reconcile: one entry at most, about no
    /// device (its device key has an empty namespace and name), a newer one replacing an unsent
    /// one.
    Summary,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Twin => "twin",
            OutboxKind::State => "state",
            OutboxKind::Summary => "summary",
        }
    }

    fn parse(text: &str) -> Result<OutboxKind, StoreError> {
        match text {
            "twin" => Ok(OutboxKind::Twin),
            "state" => Ok(OutboxKind::State),
            "summary" => Ok(OutboxKind::Summary),
            other => Err(StoreError::Corrupt {
                what: "outbox.kind",
                detail: format!("unknown kind {other:?}"),
            }),
        }
    }
}

/// One queued cloud-bound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox; acknowledge with [`super::Store::outbox_ack`].
    pub seq: u64,
    /// What the payload is.
    pub kind: OutboxKind,
    /// The device it is about.
    pub device: DeviceKey,
    /// The property, for [`OutboxKind::Twin`] entries.
    pub property: Option<String>,
    /// The message for the cloud, JSON.
    pub payload: String,
    /// When the content was queued (ms since the Unix epoch).
    pub created_ms: i64,
}

/// What happened when an entry was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// A new key: the outbox grew by one.
    Appended,
    /// The key had an unsent entry; it was replaced and moved to the tail.
    Coalesced,
}

/// A new entry to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// What the payload is.
    pub kind: OutboxKind,
    /// The device it is about.
    pub device: &'a DeviceKey,
    /// The property, for twin entries.
    pub property: Option<&'a str>,
    /// The message for the cloud, JSON.
    pub payload: &'a str,
    /// Now, in ms since the Unix epoch.
    pub now_ms: i64,
}

/// Queues `entry`, coalescing with an unsent entry of the same key. `len` is the current number of
/// entries; a new key is refused when it is at `capacity`.
pub(super) fn push(
    conn: &Connection,
    entry: NewEntry<'_>,
    len: u64,
    capacity: u64,
) -> Result<Queued, StoreError> {
    let property = entry.property.unwrap_or("");
    let replaced = conn
        .prepare_cached(
            "DELETE FROM outbox WHERE kind = ?1 AND namespace = ?2 AND name = ?3 AND property = ?4",
        )?
        .execute(params![
            entry.kind.as_str(),
            entry.device.namespace,
            entry.device.name,
            property
        ])?;
    if replaced == 0 && len >= capacity {
        return Err(StoreError::OutboxFull { capacity });
    }
    conn.prepare_cached(
        "INSERT INTO outbox (kind, namespace, name, property, payload, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        entry.kind.as_str(),
        entry.device.namespace,
        entry.device.name,
        property,
        entry.payload,
        entry.now_ms
    ])?;
    Ok(if replaced == 0 {
        Queued::Appended
    } else {
        Queued::Coalesced
    })
}

/// Deletes every entry of a device (it left this node: the cloud no longer wants its updates).
pub(super) fn remove_device(conn: &Connection, device: &DeviceKey) -> Result<u64, StoreError> {
    let removed = conn
        .prepare_cached("DELETE FROM outbox WHERE namespace = ?1 AND name = ?2")?
        .execute(params![device.namespace, device.name])?;
    Ok(removed as u64)
}

/// The number of entries.
pub(super) fn len(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM outbox")?
        .query_row([], |row| row.get(0))?;
    Ok(n as u64)
}

/// The read of [`peek`].
pub(super) const PEEK: &str = "SELECT seq, kind, namespace, name, property, payload, created_ms
     FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2";

/// Up to `limit` entries in order, starting after `after` (0 = from the start).
pub(super) fn peek(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(PEEK)?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, i64>(6)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (seq, kind, namespace, name, property, payload, created_ms) = row?;
        entries.push(OutboxEntry {
            seq: seq as u64,
            kind: OutboxKind::parse(&kind)?,
            device: DeviceKey { namespace, name },
            property: (!property.is_empty()).then_some(property),
            payload,
            created_ms,
        });
    }
    Ok(entries)
}

/// Deletes every entry with `seq <= up_to`; returns how many.
pub(super) fn ack(conn: &Connection, up_to: u64) -> Result<u64, StoreError> {
    let removed = conn
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute(params![up_to as i64])?;
    Ok(removed as u64)
}

/// The highest `seq` ever handed out (0 when none).
pub(super) fn last_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}
