//! Versioned schema migrations.
//!
//! The schema version is sqlite's `PRAGMA user_version`. [`MIGRATIONS`]`[i]` takes a database from
//! version `i` to `i + 1`; each runs in its own transaction together with the version bump, so a
//! crash in the middle of a migration leaves the previous version intact. A database written by a
//! newer edgetwin (version above [`LATEST`]) is refused rather than guessed at.
//!
//! Rules for adding a migration: append, never edit a released one; keep each step small and
//! forward-only; add a test that opens a database at the previous version with data in it.

use rusqlite::Connection;

use super::StoreError;

/// The migrations, in order. Index `i` migrates from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: devices, models and per-property twin state.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE models (
        namespace TEXT NOT NULL,
        name      TEXT NOT NULL,
        body      TEXT NOT NULL,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        body        TEXT NOT NULL,
        state       TEXT,
        last_online TEXT,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID;
    CREATE TABLE twins (
        namespace TEXT NOT NULL,
        name      TEXT NOT NULL,
        property  TEXT NOT NULL,
        state     TEXT NOT NULL,
        PRIMARY KEY (namespace, name, property),
        FOREIGN KEY (namespace, name) REFERENCES devices (namespace, name) ON DELETE CASCADE
    ) WITHOUT ROWID;",
    // 2: the cloud-bound outbox. `seq` only grows (AUTOINCREMENT never reuses a value, even after
    // the newest row is deleted), so "ack up to seq" stays correct across restarts. One row per
    // coalescing key (kind, device, property).
    "CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT NOT NULL,
        namespace  TEXT NOT NULL,
        name       TEXT NOT NULL,
        property   TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        UNIQUE (kind, namespace, name, property)
    );",
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The schema version of an open database.
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the database up to [`LATEST`], one migration per transaction.
pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_to(conn, LATEST)
}

/// Brings the database up to `target` (tests use this to build old databases).
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, StoreError> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(StoreError::SchemaTooNew {
            found,
            latest: LATEST,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target as usize) {
        let to = index as u32 + 1;
        if to <= found {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { to, source })?;
        tx.pragma_update(None, "user_version", to)?;
        tx.commit()?;
        tracing::info!(from = to - 1, to, "store schema migrated");
    }
    version(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_reaches_the_latest_version_and_reapplying_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version(&conn).unwrap(), 0);
        assert_eq!(migrate(&mut conn).unwrap(), LATEST);
        assert_eq!(migrate(&mut conn).unwrap(), LATEST);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for table in ["devices", "meta", "models", "outbox", "twins"] {
            assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
        }
    }

    #[test]
    fn an_old_database_keeps_its_rows_when_migrated_forward() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 1).unwrap();
        conn.execute(
            "INSERT INTO devices (namespace, name, body) VALUES ('default', 'lamp', '{}')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), LATEST);
        let count: i64 = conn
            .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
        let outbox: i64 = conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(outbox, 0);
    }

    #[test]
    fn a_database_from_a_newer_release_is_refused_with_both_versions_named() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{text}");
        assert!(text.contains(&(LATEST + 1).to_string()) && text.contains(&LATEST.to_string()));
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 1).unwrap();
        // Make migration 2 fail: its table already exists.
        conn.execute_batch("CREATE TABLE outbox (x INTEGER);")
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::Migration { to: 2, .. }), "{err}");
        assert_eq!(version(&conn).unwrap(), 1);
    }
}
