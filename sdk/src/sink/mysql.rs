//! `pushMethod.dbMethod.mysql` (feature `sink-mysql`): MySQL or MariaDB, KubeEdge
//! mapper-framework's layout, one table per property.
//!
//! The table `{namespace}/{device}/{property}` is created when absent (`CREATE TABLE IF NOT
//! EXISTS`, KubeEdge's columns: `id` auto-increment key, `ts` the time the value was read in UTC
//! with milliseconds, `field` the value's wire form). A batch is one transaction with one
//! multi-row `INSERT` per table, so a failed batch leaves nothing behind and is retried whole
//! (delivery is at least once: a connection lost during the commit may repeat a batch). The
//! database must exist; the user is `userName`, the password comes from
//! `EDGETWIN_MYSQL_PASSWORD` (or `…_FILE`, or KubeEdge's `PASSWORD`). One connection per
//! destination, opened again after a failure; no TLS and no compression.

use std::collections::BTreeSet;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Params, TxOpts, Value as SqlValue};

use super::credentials::Secrets;
use super::queue::{Deliver, DeliveryError};
use super::{DB_TIMEOUT, MysqlSpec, Sample, mysql_table};

/// Where the password comes from, edgetwin's name first and KubeEdge's last.
const PASSWORD_VARS: &[&str] = &["EDGETWIN_MYSQL_PASSWORD", "PASSWORD"];

/// Server errors that refuse the data itself (bad value, value too long, …): retrying cannot
/// help. Every other error is retried.
const REFUSED: &[u16] = &[
    1054, // ER_BAD_FIELD_ERROR
    1064, // ER_PARSE_ERROR
    1264, // ER_WARN_DATA_OUT_OF_RANGE
    1292, // ER_TRUNCATED_WRONG_VALUE
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1406, // ER_DATA_TOO_LONG
];

/// Inserts batches of rows.
pub(super) struct MysqlDestination {
    spec: MysqlSpec,
    secrets: Secrets,
    connection: Option<Conn>,
    /// Tables created (or found) on the current connection.
    tables: BTreeSet<String>,
}

impl MysqlDestination {
    pub(super) fn new(spec: MysqlSpec, secrets: Secrets) -> Self {
        Self {
            spec,
            secrets,
            connection: None,
            tables: BTreeSet::new(),
        }
    }

    async fn connect(&self) -> Result<Conn, DeliveryError> {
        let password = self
            .secrets
            .lookup(PASSWORD_VARS)
            .map_err(DeliveryError::transient)?;
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.spec.host.clone())
            .tcp_port(self.spec.port)
            .user(Some(self.spec.user.clone()))
            .pass(password.map(|p| p.expose().to_owned()))
            .db_name(Some(self.spec.database.clone()))
            .prefer_socket(false);
        match tokio::time::timeout(DB_TIMEOUT, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(DeliveryError::transient(format!("cannot connect: {err}"))),
            Err(_) => Err(DeliveryError::transient(format!(
                "cannot connect within {DB_TIMEOUT:?}"
            ))),
        }
    }

    /// Creates the missing tables, then inserts every row in one transaction.
    async fn write(&mut self, conn: &mut Conn, batch: &[Sample]) -> Result<(), mysql_async::Error> {
        // Tables in the order they first appear, each with its rows in order.
        let mut tables: Vec<(String, Vec<SqlValue>)> = Vec::new();
        for sample in batch {
            let table = mysql_table(&sample.device, &sample.property);
            let values = match tables.iter_mut().find(|(t, _)| *t == table) {
                Some((_, values)) => values,
                None => {
                    tables.push((table, Vec::new()));
                    let last = tables.len() - 1;
                    &mut tables[last].1
                }
            };
            values.push(datetime(sample.timestamp_ms));
            values.push(SqlValue::Bytes(sample.value.to_wire().into_bytes()));
        }
        for (table, _) in &tables {
            if !self.tables.contains(table) {
                conn.query_drop(create_table(table)).await?;
                self.tables.insert(table.clone());
            }
        }
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        for (table, values) in tables {
            let rows = values.len() / 2;
            tx.exec_drop(insert(&table, rows), Params::Positional(values))
                .await?;
        }
        tx.commit().await
    }
}

impl Deliver for MysqlDestination {
    const MAX_BATCH: usize = 500;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        let mut conn = match self.connection.take() {
            Some(conn) => conn,
            None => {
                self.tables.clear();
                self.connect().await?
            }
        };
        let written = tokio::time::timeout(DB_TIMEOUT, self.write(&mut conn, batch)).await;
        match written {
            Ok(Ok(())) => {
                self.connection = Some(conn);
                Ok(())
            }
            Ok(Err(mysql_async::Error::Server(err))) if REFUSED.contains(&err.code) => {
                self.connection = Some(conn);
                Err(DeliveryError::permanent(format!(
                    "MySQL error {}: {}",
                    err.code, err.message
                )))
            }
            Ok(Err(err)) => Err(DeliveryError::transient(err.to_string())),
            Err(_) => Err(DeliveryError::transient(format!(
                "no answer within {DB_TIMEOUT:?}"
            ))),
        }
    }
}

/// A backquoted identifier (backquotes inside doubled).
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// KubeEdge's table, with millisecond timestamps and room for values up to 16 MiB.
pub fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         ts DATETIME(3) NOT NULL, field MEDIUMTEXT)",
        ident(table)
    )
}

/// A multi-row insert of `rows` rows of `(ts, field)`.
pub fn insert(table: &str, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {} (ts, field) VALUES ", ident(table));
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?)");
    }
    sql
}

/// Unix milliseconds as a UTC `DATETIME(3)`.
fn datetime(ms: i64) -> SqlValue {
    let at = jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime();
    SqlValue::Date(
        u16::try_from(at.year()).unwrap_or(1970),
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second() as u8,
        u32::try_from(at.subsec_nanosecond() / 1000).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_kubeedge_table_names() {
        assert_eq!(
            create_table("plant/boiler-1/temp"),
            "CREATE TABLE IF NOT EXISTS `plant/boiler-1/temp` (id BIGINT AUTO_INCREMENT \
             PRIMARY KEY, ts DATETIME(3) NOT NULL, field MEDIUMTEXT)"
        );
        assert_eq!(
            insert("a`b", 3),
            "INSERT INTO `a``b` (ts, field) VALUES (?,?),(?,?),(?,?)"
        );
        assert_eq!(
            datetime(1_700_000_000_123),
            SqlValue::Date(2023, 11, 14, 22, 13, 20, 123_000)
        );
    }
}
