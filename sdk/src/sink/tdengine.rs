//! `pushMethod.dbMethod.TDEngine` (feature `sink-tdengine`): SQL over TDengine's REST interface
//! (taosAdapter), one `INSERT` per batch, with the SDK's own HTTP client.
//!
//! `POST http://{addr}/rest/sql/{dbName}` with `Authorization: Basic …`; user and password come
//! from `EDGETWIN_TDENGINE_USERNAME` / `EDGETWIN_TDENGINE_PASSWORD` (or `…_FILE`, or KubeEdge's
//! `USERNAME` / `PASSWORD`). The database must exist.
//!
//! Layout (KubeEdge's columns, with names TDengine accepts): one super table per device,
//! `{namespace}_{device}` made a plain identifier, created when first written
//! (`CREATE STABLE IF NOT EXISTS`), with the columns `ts TIMESTAMP, deviceid, propertyname, data,
//! type` and the tag `property`; one table per property, `{super table}__{property}`, created by
//! the insert itself (`INSERT INTO … USING … TAGS (…)`). Timestamps are written as RFC 3339 UTC
//! strings, so the database's precision does not matter.
//!
//! Answers: taosAdapter answers 200 with `{"code": 0, …}` on success and `{"code": N, "desc":
//! "…"}` on failure (or a non-200 status when configured so). SQL parsing and value errors refuse
//! the data (the batch is then sent again one row at a time so that only the refused rows are
//! dropped; a row written twice keeps one copy, its timestamp being the table's key); everything
//! else is retried.

use std::collections::BTreeSet;

use edgetwin_model::value::Value;
use serde::Deserialize;

use super::credentials::{self, Secret, Secrets};
use super::queue::{Deliver, DeliveryError};
use super::{DB_TIMEOUT, Sample, TdEngineSpec, tdengine_stable, tdengine_subtable};
use crate::http::post;

/// Where the user name comes from, edgetwin's name first and KubeEdge's last.
pub const USER_VARS: &[&str] = &["EDGETWIN_TDENGINE_USERNAME", "USERNAME"];
/// Where the password comes from, edgetwin's name first and KubeEdge's last.
pub const PASSWORD_VARS: &[&str] = &["EDGETWIN_TDENGINE_PASSWORD", "PASSWORD"];

/// The longest value the `data` column holds (bytes of its wire form).
pub const MAX_DATA: usize = 8192;

/// Content type of a SQL body.
pub const CONTENT_TYPE: &str = "text/plain";

/// Writes batches of rows.
pub(super) struct TdEngineDestination {
    spec: TdEngineSpec,
    secrets: Secrets,
    /// `Basic …`, read at the first delivery and again after a failure.
    authorization: Option<String>,
    /// Super tables created (or found) since the last failure.
    stables: BTreeSet<String>,
}

/// taosAdapter's answer.
#[derive(Debug, Deserialize)]
struct Answer {
    code: i64,
    #[serde(default)]
    desc: String,
}

impl TdEngineDestination {
    pub(super) fn new(spec: TdEngineSpec, secrets: Secrets) -> Self {
        Self {
            spec,
            secrets,
            authorization: None,
            stables: BTreeSet::new(),
        }
    }

    fn authorization(&mut self) -> Result<String, DeliveryError> {
        if let Some(header) = &self.authorization {
            return Ok(header.clone());
        }
        let read = |names: &[&str], what: &str| -> Result<Secret, DeliveryError> {
            self.secrets
                .lookup(names)
                .map_err(DeliveryError::transient)?
                .ok_or_else(|| {
                    DeliveryError::transient(format!(
                        "no TDengine {what}: set {}",
                        credentials::how_to_set(names)
                    ))
                })
        };
        let user = read(USER_VARS, "user name")?;
        let password = read(PASSWORD_VARS, "password")?;
        let header = format!(
            "Basic {}",
            base64(format!("{}:{}", user.expose(), password.expose()).as_bytes())
        );
        self.authorization = Some(header.clone());
        Ok(header)
    }

    /// Runs one statement; a failure forgets the credentials and the known super tables.
    async fn execute(&mut self, sql: &str) -> Result<(), DeliveryError> {
        let authorization = self.authorization()?;
        let result = post(
            &self.spec.target,
            CONTENT_TYPE,
            &[("Authorization", &authorization)],
            sql.as_bytes(),
            DB_TIMEOUT,
        )
        .await;
        let outcome = match result {
            Err(err) => Err(DeliveryError::transient(err.to_string())),
            Ok(response) => {
                let answer: Option<Answer> = serde_json::from_slice(&response.body).ok();
                match (response.status, answer) {
                    (200, Some(Answer { code: 0, .. })) => Ok(()),
                    (status, Some(answer)) => Err(classify(status, answer.code, &answer.desc)),
                    (status, None) => Err(DeliveryError::transient(format!(
                        "TDengine answered status {status}: {}",
                        response.body_excerpt()
                    ))),
                }
            }
        };
        if outcome.as_ref().is_err_and(|e| !e.permanent) {
            self.authorization = None;
            self.stables.clear();
        }
        outcome
    }
}

/// Parsing and value errors refuse the data; anything else may pass later.
fn classify(status: u16, code: i64, desc: &str) -> DeliveryError {
    // TSDB_CODE_TSC_SQL_SYNTAX_ERROR, TSDB_CODE_TSC_LINE_SYNTAX_ERROR, TSDB_CODE_TSC_VALUE_OUT_OF_RANGE,
    // TSDB_CODE_TDB_TIMESTAMP_OUT_OF_RANGE and the parser's 0x26xx: taosAdapter's own list of
    // "parameter parsing" errors (its REST API reference, "HTTP Response Codes").
    let refused =
        matches!(code, 0x0216 | 0x021B | 0x0224 | 0x060B | 0x2600..=0x26FF) || status == 400;
    let reason = format!("TDengine error {code:#06x} (status {status}): {desc}");
    if refused {
        DeliveryError::permanent(reason)
    } else {
        DeliveryError::transient(reason)
    }
}

impl Deliver for TdEngineDestination {
    const MAX_BATCH: usize = 500;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        let (rows, refused) = match batch.iter().position(|s| data(s).is_err()) {
            Some(0) => {
                let reason = data(&batch[0]).err().unwrap_or_default();
                return Err(DeliveryError::permanent(reason));
            }
            Some(index) => (&batch[..index], Some(index)),
            None => (batch, None),
        };
        for sample in rows {
            let stable = tdengine_stable(&sample.device);
            if !self.stables.contains(&stable) {
                self.execute(&create_stable(&stable)).await?;
                self.stables.insert(stable);
            }
        }
        self.execute(&insert(rows)).await?;
        match refused {
            None => Ok(()),
            Some(index) => Err(DeliveryError::permanent(
                data(&batch[index]).err().unwrap_or_default(),
            )
            .after(index)),
        }
    }
}

/// `CREATE STABLE IF NOT EXISTS` for one device.
pub fn create_stable(stable: &str) -> String {
    format!(
        "CREATE STABLE IF NOT EXISTS {stable} (ts TIMESTAMP, deviceid VARCHAR(255), \
         propertyname VARCHAR(255), data VARCHAR({MAX_DATA}), type VARCHAR(16)) \
         TAGS (property VARCHAR(255))"
    )
}

/// One `INSERT` for every row of `samples`, each into its property's table (created on the fly
/// from the device's super table).
pub fn insert(samples: &[Sample]) -> String {
    let mut sql = String::from("INSERT INTO");
    let mut previous: Option<String> = None;
    for sample in samples {
        let table = tdengine_subtable(&sample.device, &sample.property);
        if previous.as_deref() != Some(table.as_str()) {
            sql.push_str(&format!(
                " {table} USING {} TAGS ('{}') VALUES",
                tdengine_stable(&sample.device),
                quote(&sample.property)
            ));
        }
        sql.push_str(&format!(
            " ('{}', '{}', '{}', '{}', '{}')",
            rfc3339(sample.timestamp_ms),
            quote(&sample.device.to_string()),
            quote(&sample.property),
            quote(&data(sample).unwrap_or_default()),
            sample.ty.twin_type_name()
        ));
        previous = Some(table);
    }
    sql
}

/// The `data` column of a sample, or why it does not fit.
fn data(sample: &Sample) -> Result<String, String> {
    let wire = match &sample.value {
        Value::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_wire(),
    };
    if wire.len() > MAX_DATA {
        return Err(format!(
            "{}/{}: the value is {} bytes, more than the {MAX_DATA} of the data column",
            sample.device,
            sample.property,
            wire.len()
        ));
    }
    Ok(wire)
}

/// A string literal's content: backslashes and single quotes escaped.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Unix milliseconds as `2023-11-14T22:13:20.123Z`.
fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Standard base64 with padding (for the Basic authorization header).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use edgetwin_model::value::PropertyType;

    use super::*;
    use crate::driver::DeviceId;

    fn sample(device: &str, property: &str, value: Value, ms: i64) -> Sample {
        Sample {
            device: DeviceId::new("plant", device),
            property: property.into(),
            ty: PropertyType::Float,
            value,
            timestamp_ms: ms,
        }
    }

    #[test]
    fn basic_credentials_are_base64_as_in_the_rest_reference() {
        // The REST API reference's example: root:taosdata.
        assert_eq!(base64(b"root:taosdata"), "cm9vdDp0YW9zZGF0YQ==");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn one_insert_writes_every_row_into_its_property_table() {
        let rows = [
            sample("boiler-1", "temp", Value::Float(21.5), 1_700_000_000_123),
            sample("boiler-1", "temp", Value::Float(21.75), 1_700_000_000_223),
            sample(
                "boiler-1",
                "state",
                Value::String("it's on".into()),
                1_700_000_000_223,
            ),
        ];
        assert_eq!(
            insert(&rows),
            "INSERT INTO plant_boiler_1__temp USING plant_boiler_1 TAGS ('temp') VALUES \
             ('2023-11-14T22:13:20.123Z', 'plant/boiler-1', 'temp', '21.5', 'float') \
             ('2023-11-14T22:13:20.223Z', 'plant/boiler-1', 'temp', '21.75', 'float') \
             plant_boiler_1__state USING plant_boiler_1 TAGS ('state') VALUES \
             ('2023-11-14T22:13:20.223Z', 'plant/boiler-1', 'state', 'it\\'s on', 'float')"
        );
        assert!(
            create_stable("plant_boiler_1")
                .starts_with("CREATE STABLE IF NOT EXISTS plant_boiler_1 (ts TIMESTAMP")
        );
    }

    #[test]
    fn parse_errors_refuse_the_data_and_the_rest_is_retried() {
        assert!(classify(200, 0x2600, "syntax error").permanent);
        assert!(classify(400, 0x0216, "syntax").permanent);
        assert!(!classify(200, 0x0388, "Database not exist").permanent);
        assert!(!classify(401, 0x0357, "Authentication failure").permanent);
        assert!(!classify(503, 0x000B, "Unable to establish connection").permanent);
    }
}
