//! Opening the cloud's sqlite file, shared by the token table and the outboxes (and by the CLI
//! process that creates tokens while the hub runs).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Opens `path` in WAL mode with a busy timeout (another process may be writing) and applies
/// `schema` (idempotent `CREATE … IF NOT EXISTS` statements).
pub(crate) fn open(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    crate::stable_plans::keep_plans(&conn)?;
    conn.execute_batch(schema)?;
    Ok(conn)
}
