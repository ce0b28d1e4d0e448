//! Prepared statements that stay prepared.
//!
//! sqlite's planner may look at a bound parameter's value: a bound `LIMIT ?` is one case (the
//! outbox reads). sqlite then marks the statement to be planned again when that binding changes.
//! When rusqlite returns a statement to its cache, it clears its bindings. sqlite counts that as
//! a change, so every later use parsed and planned the statement again, a visible share of the
//! CPU of the traffic light's flips for the edge outbox's read alone (BENCHMARKS.md, "Traffic
//! light › Design choices"). The query planner stability guarantee (QPSG) turns this off: a
//! statement keeps the plan it was prepared with. The plans do not depend on values here (no
//! STAT4 statistics).

use rusqlite::Connection;
use rusqlite::config::DbConfig;

/// Turns on the query planner stability guarantee for `conn`, so that its cached statements are
/// not prepared again on each use.
pub(crate) fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    const READ: &str = "SELECT x FROM t WHERE x > ?1 ORDER BY x LIMIT ?2";

    /// How often the cached read was prepared again over three uses.
    fn reprepares(keep: bool) -> i32 {
        let conn = Connection::open_in_memory().unwrap();
        if keep {
            keep_plans(&conn).unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        for _ in 0..3 {
            let mut read = conn.prepare_cached(READ).unwrap();
            let rows: Vec<i64> = read
                .query_map((0, 10), |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(rows, vec![1, 2]);
        }
        let read = conn.prepare_cached(READ).unwrap();
        read.get_status(StatementStatus::RePrepare)
    }

    #[test]
    fn a_cached_statement_with_a_bound_limit_keeps_its_plan() {
        assert!(
            reprepares(false) > 0,
            "sqlite no longer re-prepares: drop this module"
        );
        assert_eq!(reprepares(true), 0);
    }
}
