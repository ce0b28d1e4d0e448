//! `pushMethod.dbMethod.influxdb2` (feature `sink-influxdb2`): points in line protocol through
//! the InfluxDB v2 write API, one request per batch, with the SDK's own HTTP client.
//!
//! `POST {url}/api/v2/write?org={org}&bucket={bucket}&precision=ms` with
//! `Authorization: Token {token}`; the token comes from `EDGETWIN_INFLUXDB2_TOKEN` (or
//! `…_FILE`, or KubeEdge's `TOKEN`). One point per sample:
//! `{measurement}[,{tag}={value}…] {fieldKey}={value} {timestamp in ms}`, the measurement and
//! field key defaulting to the device's and the property's names. The field is typed by the
//! DeviceModel type (`42i`, `21.5`, `true`, `"text"`), so a dashboard can aggregate it.
//!
//! Answers: 204 is success; 400, 413 and 422 refuse the data (the batch is then sent again one
//! point at a time so that only the refused points are dropped; InfluxDB replaces a point written
//! twice with the same series and time, so nothing is doubled); anything else is retried.

use super::credentials::{self, Secret, Secrets};
use super::queue::{Deliver, DeliveryError};
use super::{DB_TIMEOUT, Influxdb2Spec, Sample};
use crate::http::post;
use edgetwin_model::value::Value;

/// Where the token comes from, edgetwin's name first and KubeEdge's last.
pub const TOKEN_VARS: &[&str] = &["EDGETWIN_INFLUXDB2_TOKEN", "TOKEN"];

/// Content type of a line protocol body.
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Writes batches of points.
pub(super) struct Influxdb2Destination {
    spec: Influxdb2Spec,
    secrets: Secrets,
    /// `Token …`, read at the first delivery and again after a failure.
    authorization: Option<String>,
}

impl Influxdb2Destination {
    pub(super) fn new(spec: Influxdb2Spec, secrets: Secrets) -> Self {
        Self {
            spec,
            secrets,
            authorization: None,
        }
    }

    fn authorization(&mut self) -> Result<String, DeliveryError> {
        if let Some(header) = &self.authorization {
            return Ok(header.clone());
        }
        let token: Secret = self
            .secrets
            .lookup(TOKEN_VARS)
            .map_err(DeliveryError::transient)?
            .ok_or_else(|| {
                DeliveryError::transient(format!(
                    "no InfluxDB token: set {}",
                    credentials::how_to_set(TOKEN_VARS)
                ))
            })?;
        let header = format!("Token {}", token.expose());
        self.authorization = Some(header.clone());
        Ok(header)
    }
}

impl Deliver for Influxdb2Destination {
    const MAX_BATCH: usize = 500;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        let mut body = String::new();
        let mut refused = None;
        for (index, sample) in batch.iter().enumerate() {
            match line(&self.spec, sample) {
                Ok(line) => {
                    body.push_str(&line);
                    body.push('\n');
                }
                Err(reason) => {
                    refused = Some((index, reason));
                    break;
                }
            }
        }
        if let Some((0, reason)) = refused {
            return Err(DeliveryError::permanent(reason));
        }
        let authorization = self.authorization()?;
        let result = post(
            &self.spec.target,
            CONTENT_TYPE,
            &[
                ("Authorization", &authorization),
                ("Accept", "application/json"),
            ],
            body.as_bytes(),
            DB_TIMEOUT,
        )
        .await;
        let response = match result {
            Ok(response) => response,
            Err(err) => return Err(DeliveryError::transient(err.to_string())),
        };
        match response.status {
            200..=299 => match refused {
                None => Ok(()),
                Some((index, reason)) => Err(DeliveryError::permanent(reason).after(index)),
            },
            400 | 413 | 422 => Err(DeliveryError::permanent(format!(
                "InfluxDB refused the points: status {}: {}",
                response.status,
                response.body_excerpt()
            ))),
            status => {
                // A rotated or corrected token is read again before the retry.
                self.authorization = None;
                Err(DeliveryError::transient(format!(
                    "InfluxDB answered status {status}: {}",
                    response.body_excerpt()
                )))
            }
        }
    }
}

/// One sample as a line of line protocol (without the newline), or why it cannot be one.
pub fn line(spec: &Influxdb2Spec, sample: &Sample) -> Result<String, String> {
    let measurement = spec.measurement.as_deref().unwrap_or(&sample.device.name);
    let field_key = spec.field_key.as_deref().unwrap_or(&sample.property);
    let mut line = escape(measurement, &[',', ' ']);
    for (key, value) in &spec.tags {
        line.push(',');
        line.push_str(&escape(key, &[',', '=', ' ']));
        line.push('=');
        line.push_str(&escape(value, &[',', '=', ' ']));
    }
    line.push(' ');
    line.push_str(&escape(field_key, &[',', '=', ' ']));
    line.push('=');
    line.push_str(&field_value(sample)?);
    line.push(' ');
    line.push_str(&sample.timestamp_ms.to_string());
    Ok(line)
}

/// The value typed by the property's DeviceModel type.
fn field_value(sample: &Sample) -> Result<String, String> {
    let wire = sample.value.to_wire();
    let typed = sample
        .ty
        .parse(&wire)
        .map_err(|e| format!("{}/{}: {e}", sample.device, sample.property))?;
    Ok(match typed {
        Value::Int(n) => format!("{n}i"),
        Value::Float(f) if f.is_finite() => {
            let text = f.to_string();
            // `25` would be read as a float too; keep the decimal point for readers of the body.
            if text.contains(['.', 'e', 'E']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        Value::Float(f) => return Err(format!("{f} is not a number InfluxDB stores")),
        Value::Boolean(b) => b.to_string(),
        Value::String(_) | Value::Bytes(_) => {
            if wire.contains(['\n', '\r']) {
                return Err(format!(
                    "{}/{}: line protocol cannot carry a newline in a string value",
                    sample.device, sample.property
                ));
            }
            format!("\"{}\"", escape(&wire, &['"', '\\']))
        }
    })
}

/// Puts a backslash before each of `special` (line protocol's escaping).
fn escape(text: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use edgetwin_model::value::PropertyType;

    use super::*;
    use crate::driver::DeviceId;
    use crate::http::HttpTarget;

    fn spec(
        measurement: Option<&str>,
        tags: &[(&str, &str)],
        field: Option<&str>,
    ) -> Influxdb2Spec {
        Influxdb2Spec {
            target: HttpTarget {
                host: "db".into(),
                port: 8086,
                path: "/api/v2/write?org=o&bucket=b&precision=ms".into(),
            },
            org: "o".into(),
            bucket: "b".into(),
            measurement: measurement.map(str::to_owned),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            field_key: field.map(str::to_owned),
        }
    }

    fn sample(ty: PropertyType, value: Value) -> Sample {
        Sample {
            device: DeviceId::new("plant", "boiler-1"),
            property: "temperature".into(),
            ty,
            value,
            timestamp_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn points_are_typed_by_the_device_model() {
        let kubeedge = spec(
            Some("temperture_stats"),
            &[("unit", "temperature")],
            Some("temperture_value"),
        );
        assert_eq!(
            line(&kubeedge, &sample(PropertyType::Float, Value::Float(21.5))),
            Ok("temperture_stats,unit=temperature temperture_value=21.5 1700000000123".into())
        );
        let defaults = spec(None, &[], None);
        for (ty, value, field) in [
            (PropertyType::Int, Value::Int(-3), "-3i"),
            // A float the pipeline produced for an INT property whose value is whole.
            (PropertyType::Int, Value::Float(25.0), "25i"),
            (PropertyType::Double, Value::Int(25), "25.0"),
            (PropertyType::Boolean, Value::Boolean(true), "true"),
            (
                PropertyType::String,
                Value::String(r#"say "hi" \o/"#.into()),
                r#""say \"hi\" \\o/""#,
            ),
        ] {
            assert_eq!(
                line(&defaults, &sample(ty, value)),
                Ok(format!("boiler-1 temperature={field} 1700000000123"))
            );
        }
    }

    #[test]
    fn names_are_escaped_and_unstorable_values_refused() {
        let odd = spec(Some("a b,c"), &[("k=1", "v 1,2")], Some("f,x"));
        assert_eq!(
            line(&odd, &sample(PropertyType::Int, Value::Int(1))),
            Ok(r"a\ b\,c,k\=1=v\ 1\,2 f\,x=1i 1700000000123".into())
        );
        let plain = spec(None, &[], None);
        assert!(
            line(
                &plain,
                &sample(PropertyType::String, Value::String("a\nb".into()))
            )
            .is_err()
        );
        assert!(line(&plain, &sample(PropertyType::Int, Value::Float(2.5))).is_err());
    }
}
