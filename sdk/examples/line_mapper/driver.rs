//! A driver for devices that speak a line-based protocol over TCP: one request per line, one
//! reply per line.
//!
//! ```text
//! > GET temp        < OK 21.5
//! > SET led 1       < OK
//! > GET hum         < ERR unknown property
//! ```
//!
//! Booleans are `1` and `0` on this wire; other values are their text.

use edgetwin_sdk::{DeviceConfig, Driver, DriverError, Point, PropertyType, Session, Value};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest reply accepted; a longer one means the device is not speaking this protocol.
const MAX_REPLY: u64 = 4096;

/// `protocol.configData`: where the device listens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineDevice {
    /// `host:port`, e.g. `192.168.1.20:5000`.
    pub address: String,
}

/// `visitors.configData`: the device's name for the property.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinePoint {
    /// e.g. `temp`: read with `GET temp`, written with `SET temp VALUE`.
    pub name: String,
}

/// The `line` protocol.
#[derive(Debug, Default)]
pub struct LineDriver;

impl Driver for LineDriver {
    const PROTOCOL: &'static str = "line";
    type ProtocolConfig = LineDevice;
    type VisitorConfig = LinePoint;
    type Session = LineSession;

    fn validate(&self, device: &DeviceConfig<LineDevice, LinePoint>) -> Result<(), DriverError> {
        let bad = |name: &str| name.is_empty() || name.contains(char::is_whitespace);
        match device.points.iter().find(|p| bad(&p.visitor.name)) {
            Some(p) => Err(DriverError::config(format!(
                "property {}: name must be one word",
                p.property
            ))),
            None => Ok(()),
        }
    }

    async fn connect(
        &self,
        device: &DeviceConfig<LineDevice, LinePoint>,
    ) -> Result<LineSession, DriverError> {
        // Refused or unreachable: an I/O error, retried with backoff by the runtime.
        let stream = TcpStream::connect(&device.protocol.address).await?;
        Ok(LineSession {
            stream: BufReader::new(stream),
            in_flight: false,
        })
    }
}

/// An open connection to one device.
#[derive(Debug)]
pub struct LineSession {
    stream: BufReader<TcpStream>,
    /// A request was sent and its reply not read: the runtime gave up waiting (a timeout drops
    /// the call), so a late reply may still come and would be taken for the next one's.
    in_flight: bool,
}

impl LineSession {
    /// Sends one request line and returns the reply after `OK` (`ERR …` is a refusal).
    pub async fn request(&mut self, request: &str) -> Result<String, DriverError> {
        if self.in_flight {
            return Err(DriverError::Disconnected(
                "an earlier request got no reply; replies may be out of step".into(),
            ));
        }
        self.in_flight = true;
        self.stream
            .get_mut()
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        let mut line = String::new();
        let read = (&mut self.stream)
            .take(MAX_REPLY)
            .read_line(&mut line)
            .await?;
        if read == 0 {
            return Err(DriverError::Disconnected(
                "the device closed the connection".into(),
            ));
        }
        if !line.ends_with('\n') {
            return Err(DriverError::io(format!(
                "a reply longer than {MAX_REPLY} bytes"
            )));
        }
        self.in_flight = false;
        let line = line.trim_end();
        if let Some(reason) = line.strip_prefix("ERR") {
            // The device answered and said no: only this request fails.
            return Err(DriverError::Rejected(reason.trim().to_owned()));
        }
        match line.strip_prefix("OK") {
            Some(value) => Ok(value.trim().to_owned()),
            None => Err(DriverError::Disconnected(format!(
                "unexpected reply {line:?}"
            ))),
        }
    }
}

/// A reply as a value of the property's type: booleans are `1`/`0` here, which
/// `PropertyType::parse` (`true`/`false`) does not read.
fn decode(ty: PropertyType, text: &str) -> Result<Value, DriverError> {
    let value = match (ty, text) {
        (PropertyType::Boolean, "1") => Ok(Value::Boolean(true)),
        (PropertyType::Boolean, "0") => Ok(Value::Boolean(false)),
        _ => ty.parse(text),
    };
    value.map_err(|e| DriverError::Rejected(format!("reply {text:?}: {e}")))
}

/// A value as this wire writes it.
fn encode(value: &Value) -> Result<String, DriverError> {
    match value {
        Value::Boolean(on) => Ok(if *on { "1" } else { "0" }.to_owned()),
        Value::String(text) if text.contains(['\n', '\r']) => {
            Err(DriverError::Unsupported("a value with a line break".into()))
        }
        other => Ok(other.to_string()),
    }
}

impl Session for LineSession {
    type Visitor = LinePoint;

    async fn read(&mut self, points: &[&Point<LinePoint>]) -> Vec<Result<Value, DriverError>> {
        let mut values = Vec::with_capacity(points.len());
        for point in points {
            let reply = self.request(&format!("GET {}", point.visitor.name)).await;
            values.push(reply.and_then(|text| decode(point.ty, &text)));
        }
        values
    }

    async fn write(&mut self, point: &Point<LinePoint>, value: &Value) -> Result<(), DriverError> {
        let text = encode(value)?;
        self.request(&format!("SET {} {text}", point.visitor.name))
            .await
            .map(drop)
    }
}
