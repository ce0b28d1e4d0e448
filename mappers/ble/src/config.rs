//! The BLE parts of a Device: `protocol.configData` ([`ProtocolConfig`]) and each property's
//! `visitors.configData` ([`VisitorConfig`]), validated into [`DeviceSettings`] and
//! [`PointSettings`] with errors that name the field.
//!
//! KubeEdge's keys are read as its Bluetooth mappers read them, so converted v1alpha2 Devices
//! run unchanged: `macAddress`; per property `characteristicUUID`, `dataWrite` (value → bytes,
//! as a list of numbers or base64 as Go writes `[]byte`) and `dataConverter` (`startIndex`,
//! `endIndex`, `shiftLeft`, `shiftRight`, `orderOfOperations`). The crate README documents
//! every key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bluer::Uuid;
use edgetwin_sdk::PropertyType;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::codec::converter::{Converter, Operation, Shift};
use crate::codec::number::ByteOrder;
use crate::codec::{Codec, DataType, DataWrite, Typed};

/// Default time to find, connect and discover a device.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time one GATT read or write may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest characteristic value BlueZ hands over (the ATT maximum).
pub const MAX_VALUE_LEN: usize = 512;

/// A configuration problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The key (`macAddress`, `characteristicUUID`, …).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// `protocol.configData` of a BLE device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolConfig {
    /// The device's address, `AA:BB:CC:DD:EE:FF` (KubeEdge's key).
    #[serde(default, alias = "address", alias = "mac")]
    pub mac_address: Option<String>,
    /// The advertised name (Complete or Shortened Local Name), when no address is given.
    #[serde(default, alias = "localName", alias = "deviceName")]
    pub name: Option<String>,
    /// The adapter, e.g. `hci1` (default: the mapper's `--adapter`, else BlueZ's first).
    #[serde(default, alias = "hci")]
    pub adapter: Option<String>,
    /// Milliseconds to find, connect and discover the device (default 10000).
    #[serde(default)]
    pub connect_timeout: Option<Json>,
    /// Milliseconds one GATT read or write may take (default 3000).
    #[serde(default, alias = "timeoutMs")]
    pub timeout: Option<Json>,
    /// Every other key: ignored, unknown ones with a warning.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// KubeEdge's `dataConverter` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConverter {
    /// First byte.
    #[serde(default)]
    pub start_index: Option<Json>,
    /// Last byte.
    #[serde(default)]
    pub end_index: Option<Json>,
    /// Bits to shift left.
    #[serde(default)]
    pub shift_left: Option<Json>,
    /// Bits to shift right.
    #[serde(default)]
    pub shift_right: Option<Json>,
    /// Arithmetic, in order.
    #[serde(default)]
    pub order_of_operations: Option<Vec<RawOperation>>,
}

impl RawConverter {
    fn is_empty(&self) -> bool {
        *self == RawConverter::default()
    }
}

/// One entry of `orderOfOperations`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOperation {
    /// `Add`, `Subtract`, `Multiply` or `Divide`.
    #[serde(default)]
    pub operation_type: Option<String>,
    /// The operand.
    #[serde(default)]
    pub operation_value: Option<Json>,
}

/// `properties[].visitors.configData` of a BLE property.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorConfig {
    /// The characteristic: 128-bit (dashed or not, KubeEdge writes 32 hex digits), or the SIG's
    /// 16- and 32-bit short forms (`2a6e`).
    #[serde(
        default,
        rename = "characteristicUUID",
        alias = "characteristicUuid",
        alias = "characteristic",
        alias = "uuid"
    )]
    pub characteristic_uuid: Option<String>,
    /// The service, when the characteristic's UUID appears in several services.
    #[serde(
        default,
        rename = "serviceUUID",
        alias = "serviceUuid",
        alias = "service"
    )]
    pub service_uuid: Option<String>,
    /// Property value → bytes to write (KubeEdge: `"ON": [1]`).
    #[serde(default)]
    pub data_write: Option<BTreeMap<String, Json>>,
    /// KubeEdge's read conversion.
    #[serde(default)]
    pub data_converter: Option<RawConverter>,
    /// The converter's keys one level too high, as in KubeEdge's CC2650 sample.
    #[serde(flatten)]
    pub flattened_converter: RawConverter,
    /// How the value is encoded: `uint8`…`uint64`, `int8`…`int64`, `float32`, `float64`,
    /// `sfloat`, `medfloat32`, `utf8`, `bytes`, `bool`.
    #[serde(default)]
    pub data_type: Option<String>,
    /// `little` (default) or `big`.
    #[serde(default)]
    pub byte_order: Option<String>,
    /// Byte offset of the value in the characteristic (default 0).
    #[serde(default)]
    pub offset: Option<Json>,
    /// Bytes of a `utf8` or `bytes` value (default: the rest).
    #[serde(default)]
    pub length: Option<Json>,
    /// `request` (write with response, default) or `command` (without response).
    #[serde(default)]
    pub write_type: Option<String>,
    /// `auto` (default: subscribe when the characteristic notifies or indicates), `true`,
    /// `false`.
    #[serde(default)]
    pub notify: Option<Json>,
    /// Every other key: ignored, unknown ones with a warning.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// A Bluetooth device address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Parses `AA:BB:CC:DD:EE:FF` (also with `-`, or 12 hex digits), any case.
    pub fn parse(text: &str) -> Option<Mac> {
        let digits: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ':' | '-'))
            .collect();
        let separators = text
            .trim()
            .chars()
            .filter(|c| matches!(c, ':' | '-'))
            .count();
        if digits.len() != 12 || !(separators == 0 || separators == 5) {
            return None;
        }
        let mut bytes = [0u8; 6];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Mac(bytes))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

/// Which device to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// By address.
    Address(Mac),
    /// By advertised name.
    Name(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Address(mac) => write!(f, "{mac}"),
            Target::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// A device's validated connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// The device.
    pub target: Target,
    /// The adapter, when the device names one.
    pub adapter: Option<String>,
    /// Time to find, connect and discover.
    pub connect_timeout: Duration,
    /// Time of one GATT operation.
    pub timeout: Duration,
}

/// With or without response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteType {
    /// Write Request: the device confirms.
    #[default]
    Request,
    /// Write Command: no confirmation.
    Command,
}

/// Whether a property follows notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// When the characteristic notifies or indicates.
    #[default]
    Auto,
    /// Always (connecting fails when the characteristic cannot).
    Always,
    /// Never: the property is polled.
    Never,
}

/// A property's validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSettings {
    /// The characteristic.
    pub characteristic: Uuid,
    /// Its service, when given.
    pub service: Option<Uuid>,
    /// How values are read and written.
    pub codec: Codec,
    /// How values are written.
    pub write_type: WriteType,
    /// Whether it follows notifications.
    pub notify: NotifyMode,
}

/// Keys KubeEdge configurations carry that the mapper knowingly ignores.
const IGNORED_KEYS: &[&str] = &["protocolName", "customizedValues"];

impl ProtocolConfig {
    /// Validates the configuration into settings.
    pub fn settings(&self) -> Result<DeviceSettings, ConfigError> {
        let address = non_empty(self.mac_address.as_deref());
        let name = non_empty(self.name.as_deref());
        let target = match (address, name) {
            (Some(address), _) => Target::Address(Mac::parse(address).ok_or_else(|| {
                ConfigError::new(
                    "macAddress",
                    format!("{address:?} is not a Bluetooth address like AA:BB:CC:DD:EE:FF"),
                )
            })?),
            (None, Some(name)) => Target::Name(name.to_owned()),
            (None, None) => {
                return Err(ConfigError::new(
                    "macAddress",
                    "missing: set macAddress (or name, the advertised name)",
                ));
            }
        };
        let adapter = non_empty(self.adapter.as_deref()).map(str::to_owned);
        if let Some(adapter) = &adapter
            && !adapter
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new(
                "adapter",
                format!("{adapter:?} is not an adapter name like hci0"),
            ));
        }
        Ok(DeviceSettings {
            target,
            adapter,
            connect_timeout: millis("connectTimeout", self.connect_timeout.as_ref())?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            timeout: millis("timeout", self.timeout.as_ref())?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// Keys that are neither read nor knowingly ignored (probably typos).
    pub fn unknown_keys(&self) -> Vec<&str> {
        unknown(&self.other)
    }
}

impl VisitorConfig {
    /// Validates the configuration of a property of type `ty`.
    pub fn settings(&self, ty: PropertyType) -> Result<PointSettings, ConfigError> {
        let characteristic = match non_empty(self.characteristic_uuid.as_deref()) {
            Some(text) => parse_uuid(text)
                .ok_or_else(|| ConfigError::new("characteristicUUID", not_a_uuid(text)))?,
            None => return Err(ConfigError::new("characteristicUUID", "missing")),
        };
        let service = match non_empty(self.service_uuid.as_deref()) {
            Some(text) => Some(
                parse_uuid(text)
                    .ok_or_else(|| ConfigError::new("serviceUUID", not_a_uuid(text)))?,
            ),
            None => None,
        };
        let data_write = self.data_write()?;
        let converter = self.converter()?;
        let typed = self.typed()?;
        if let (Some(_), Some(typed)) = (&converter, &typed) {
            return Err(ConfigError::new(
                "dataType",
                format!(
                    "{} and dataConverter both say how to read: keep one",
                    typed.data_type
                ),
            ));
        }
        if ty == PropertyType::Bytes {
            if converter.is_some() {
                return Err(ConfigError::new(
                    "dataConverter",
                    "makes a number, not BYTES",
                ));
            }
            if let Some(typed) = &typed
                && typed.data_type != DataType::Bytes
            {
                return Err(ConfigError::new(
                    "dataType",
                    format!(
                        "{} cannot feed a BYTES property (use bytes)",
                        typed.data_type
                    ),
                ));
            }
        }
        Ok(PointSettings {
            characteristic,
            service,
            codec: Codec {
                ty,
                data_write,
                converter,
                typed,
            },
            write_type: match self
                .write_type
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("request" | "withresponse" | "with-response") => WriteType::Request,
                Some("command" | "withoutresponse" | "without-response") => WriteType::Command,
                Some(other) => {
                    return Err(ConfigError::new(
                        "writeType",
                        format!("{other:?} is not request (with response) or command (without)"),
                    ));
                }
            },
            notify: self.notify()?,
        })
    }

    /// Keys that are neither read nor knowingly ignored (probably typos), and not the entries
    /// of a `dataWrite` written one level too high.
    pub fn unknown_keys(&self) -> Vec<&str> {
        let flattened = self.flattened_data_write().unwrap_or_default();
        unknown(&self.other)
            .into_iter()
            .filter(|k| !flattened.iter().any(|(key, _)| key == k))
            .collect()
    }

    /// Whether the configuration relies on keys written one level too high (KubeEdge's CC2650
    /// sample): the converter's keys next to `characteristicUUID`, or `dataWrite`'s entries.
    pub fn flattened_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if self
            .data_converter
            .as_ref()
            .is_none_or(RawConverter::is_empty)
            && !self.flattened_converter.is_empty()
        {
            keys.push("dataConverter".to_owned());
        }
        if self.data_write.is_none() && self.flattened_data_write().is_some() {
            keys.push("dataWrite".to_owned());
        }
        keys
    }

    /// Entries of `other` that are byte lists, when `dataWrite` itself is absent or null.
    fn flattened_data_write(&self) -> Option<Vec<(String, Vec<u8>)>> {
        if self.data_write.is_some() {
            return None;
        }
        let entries: Vec<(String, Vec<u8>)> = self
            .other
            .iter()
            .filter(|(key, _)| !IGNORED_KEYS.contains(&key.as_str()) && key.as_str() != "dataWrite")
            .filter_map(|(key, value)| match value {
                Json::Array(_) => bytes_of(value).ok().map(|b| (key.clone(), b)),
                _ => None,
            })
            .collect();
        (!entries.is_empty()).then_some(entries)
    }

    fn data_write(&self) -> Result<Option<DataWrite>, ConfigError> {
        let Some(map) = &self.data_write else {
            return Ok(self.flattened_data_write().map(DataWrite));
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            let bytes = bytes_of(value)
                .map_err(|message| ConfigError::new(&format!("dataWrite.{key}"), message))?;
            entries.push((key.clone(), bytes));
        }
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(DataWrite(entries)))
    }

    fn converter(&self) -> Result<Option<Converter>, ConfigError> {
        let (raw, prefix) = match &self.data_converter {
            Some(raw) if !raw.is_empty() => (raw, "dataConverter."),
            _ if !self.flattened_converter.is_empty() => (&self.flattened_converter, ""),
            // `dataConverter: {}` reads byte 0, as KubeEdge's zero-valued converter does.
            Some(_) => (&self.flattened_converter, "dataConverter."),
            None => return Ok(None),
        };
        if self.data_converter.as_ref().is_some_and(|r| !r.is_empty())
            && !self.flattened_converter.is_empty()
        {
            return Err(ConfigError::new(
                "startIndex",
                "set inside dataConverter and next to it: keep one",
            ));
        }
        let field = |name: &str| format!("{prefix}{name}");
        let index = |name: &str, json: Option<&Json>| -> Result<usize, ConfigError> {
            Ok(uint(&field(name), json)?.unwrap_or(0) as usize)
        };
        let start = index("startIndex", raw.start_index.as_ref())?;
        let end = index("endIndex", raw.end_index.as_ref())?;
        let left = uint(&field("shiftLeft"), raw.shift_left.as_ref())?.unwrap_or(0);
        let right = uint(&field("shiftRight"), raw.shift_right.as_ref())?.unwrap_or(0);
        let shift = match (left, right) {
            (0, 0) => Shift::None,
            (n, 0) => Shift::Left(n as u32),
            (0, n) => Shift::Right(n as u32),
            _ => {
                return Err(ConfigError::new(
                    &field("shiftLeft"),
                    "shiftLeft and shiftRight are both set: keep one",
                ));
            }
        };
        let mut operations = Vec::new();
        for (i, op) in raw.order_of_operations.iter().flatten().enumerate() {
            let name = field(&format!("orderOfOperations[{i}]"));
            let kind = op
                .operation_type
                .as_deref()
                .ok_or_else(|| ConfigError::new(&name, "operationType missing"))?;
            let value = number(&name, op.operation_value.as_ref())?
                .ok_or_else(|| ConfigError::new(&name, "operationValue missing"))?;
            operations.push(Operation::new(kind, value).map_err(|m| ConfigError::new(&name, m))?);
        }
        Converter::new(start, end, shift, operations)
            .map(Some)
            .map_err(|m| ConfigError::new(&field("startIndex"), m))
    }

    fn typed(&self) -> Result<Option<Typed>, ConfigError> {
        let data_type = match non_empty(self.data_type.as_deref()) {
            Some(name) => Some(DataType::parse(name).ok_or_else(|| {
                ConfigError::new(
                    "dataType",
                    format!(
                        "{name:?} is not uint8…uint64, int8…int64, float32, float64, sfloat, \
                         medfloat32, utf8, bytes or bool"
                    ),
                )
            })?),
            None => None,
        };
        let order = match non_empty(self.byte_order.as_deref()) {
            Some(name) => Some(ByteOrder::parse(name).ok_or_else(|| {
                ConfigError::new("byteOrder", format!("{name:?} is not little or big"))
            })?),
            None => None,
        };
        let offset = uint("offset", self.offset.as_ref())?;
        let length = uint("length", self.length.as_ref())?;
        let Some(data_type) = data_type else {
            if let Some(key) = [
                ("byteOrder", order.is_some()),
                ("offset", offset.is_some()),
                ("length", length.is_some()),
            ]
            .into_iter()
            .find_map(|(key, set)| set.then_some(key))
            {
                return Err(ConfigError::new(key, "only used with dataType"));
            }
            return Ok(None);
        };
        let offset = offset.unwrap_or(0) as usize;
        let length = length.map(|n| n as usize);
        if length.is_some() && data_type.width().is_some() {
            return Err(ConfigError::new(
                "length",
                format!("{data_type} has a fixed size"),
            ));
        }
        let end = offset + data_type.width().or(length).unwrap_or(0);
        if end > MAX_VALUE_LEN {
            return Err(ConfigError::new(
                "offset",
                format!(
                    "the value would end at byte {end}; characteristics hold at most {MAX_VALUE_LEN}"
                ),
            ));
        }
        Ok(Some(Typed {
            data_type,
            order: order.unwrap_or_default(),
            offset,
            length,
        }))
    }

    fn notify(&self) -> Result<NotifyMode, ConfigError> {
        Ok(match &self.notify {
            None | Some(Json::Null) => NotifyMode::Auto,
            Some(Json::Bool(true)) => NotifyMode::Always,
            Some(Json::Bool(false)) => NotifyMode::Never,
            Some(Json::String(text)) => match text.to_ascii_lowercase().as_str() {
                "auto" => NotifyMode::Auto,
                "true" | "always" | "on" => NotifyMode::Always,
                "false" | "never" | "off" => NotifyMode::Never,
                _ => {
                    return Err(ConfigError::new(
                        "notify",
                        format!("{text:?} is not auto, true or false"),
                    ));
                }
            },
            Some(other) => {
                return Err(ConfigError::new(
                    "notify",
                    format!("{other} is not auto, true or false"),
                ));
            }
        })
    }
}

/// A 128-bit UUID from the forms KubeEdge and the Bluetooth SIG write: 32 hex digits with or
/// without dashes, `0x`-prefixed or plain 16-bit (`2a6e`) and 32-bit short forms.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let trimmed = text.trim();
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if !hex.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return None;
    }
    let digits: String = hex.chars().filter(|c| *c != '-').collect();
    match digits.len() {
        4 | 8 if !hex.contains('-') => {
            let short = u32::from_str_radix(&digits, 16).ok()?;
            // The Bluetooth Base UUID, 0000xxxx-0000-1000-8000-00805F9B34FB.
            Some(Uuid::from_u128(
                (u128::from(short) << 96) | 0x0000_0000_0000_1000_8000_0080_5F9B_34FB,
            ))
        }
        32 if hex.len() == 32 || hex.len() == 36 => Uuid::parse_str(&digits).ok(),
        _ => None,
    }
}

fn not_a_uuid(text: &str) -> String {
    format!("{text:?} is not a UUID (128-bit, or a 16/32-bit short form like 2a6e)")
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

fn unknown(other: &BTreeMap<String, Json>) -> Vec<&str> {
    other
        .keys()
        .map(String::as_str)
        .filter(|k| !IGNORED_KEYS.contains(k))
        .collect()
}

/// A non-negative integer, written as a number or a numeric string.
fn uint(field: &str, json: Option<&Json>) -> Result<Option<u64>, ConfigError> {
    let parsed = match json {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(text)) => text.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match (parsed, json) {
        (Some(n), _) => Ok(Some(n)),
        (None, Some(json)) => Err(ConfigError::new(
            field,
            format!("{json} is not a whole number ≥ 0"),
        )),
        (None, None) => Ok(None),
    }
}

/// A number, written as a number or a numeric string.
fn number(field: &str, json: Option<&Json>) -> Result<Option<f64>, ConfigError> {
    let parsed = match json {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(n)) => n.as_f64(),
        Some(Json::String(text)) => text.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match (parsed, json) {
        (Some(n), _) if n.is_finite() => Ok(Some(n)),
        (_, Some(json)) => Err(ConfigError::new(field, format!("{json} is not a number"))),
        (_, None) => Ok(None),
    }
}

/// Milliseconds (a positive whole number).
fn millis(field: &str, json: Option<&Json>) -> Result<Option<Duration>, ConfigError> {
    match uint(field, json)? {
        Some(0) => Err(ConfigError::new(field, "must be more than 0 ms")),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
        None => Ok(None),
    }
}

/// Bytes from a list of numbers 0–255, or from base64 (how Go's JSON writes `[]byte`).
fn bytes_of(json: &Json) -> Result<Vec<u8>, String> {
    let bytes = match json {
        Json::Array(items) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| format!("{item} is not a byte (0–255)"))
            })
            .collect::<Result<Vec<u8>, String>>()?,
        Json::String(text) => {
            base64(text).ok_or_else(|| format!("{text:?} is neither a list of bytes nor base64"))?
        }
        other => return Err(format!("{other} is not a list of bytes like [1] or base64")),
    };
    if bytes.len() > MAX_VALUE_LEN {
        return Err(format!(
            "{} bytes; characteristics hold at most {MAX_VALUE_LEN}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Standard base64 with padding (RFC 4648), as Go encodes `[]byte`.
fn base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(4).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks.len()) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use edgetwin_sdk::Value;
    use serde_json::json;

    use super::*;

    fn protocol(json: Json) -> Result<DeviceSettings, String> {
        serde_json::from_value::<ProtocolConfig>(json)
            .map_err(|e| e.to_string())?
            .settings()
            .map_err(|e| e.to_string())
    }

    fn visitor(json: Json) -> VisitorConfig {
        serde_json::from_value(json).expect("visitor parses")
    }

    fn point(json: Json, ty: PropertyType) -> Result<PointSettings, String> {
        visitor(json).settings(ty).map_err(|e| e.to_string())
    }

    #[test]
    fn addresses_and_names() {
        let settings = protocol(json!({"macAddress": "bc:6a:29:ae:cc:96"})).expect("valid");
        assert_eq!(
            settings.target,
            Target::Address(Mac([0xBC, 0x6A, 0x29, 0xAE, 0xCC, 0x96]))
        );
        assert_eq!(settings.target.to_string(), "BC:6A:29:AE:CC:96");
        assert_eq!(settings.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(Mac::parse("BC-6A-29-AE-CC-96"), Mac::parse("bc6a29aecc96"));
        assert!(Mac::parse("BC:6A:29:AE:CC").is_none());
        assert!(Mac::parse("BC:6A:29:AE:CC:9G").is_none());
        assert!(Mac::parse("BC:6A29:AE:CC:96").is_none());
        let by_name = protocol(json!({"name": "CC2650 SensorTag", "adapter": "hci1",
                                      "connectTimeout": "20000", "timeout": 500}))
        .expect("valid");
        assert_eq!(by_name.target, Target::Name("CC2650 SensorTag".into()));
        assert_eq!(by_name.adapter.as_deref(), Some("hci1"));
        assert_eq!(by_name.connect_timeout, Duration::from_secs(20));
        assert_eq!(by_name.timeout, Duration::from_millis(500));
    }

    #[test]
    fn protocol_errors_name_the_field() {
        for (config, expected) in [
            (json!({}), "macAddress: missing"),
            (json!({"macAddress": " "}), "macAddress: missing"),
            (
                json!({"macAddress": "nope"}),
                "macAddress: \"nope\" is not a Bluetooth address",
            ),
            (
                json!({"name": "x", "adapter": "hci0/../x"}),
                "adapter: \"hci0/../x\" is not",
            ),
            (
                json!({"name": "x", "timeout": 0}),
                "timeout: must be more than 0 ms",
            ),
            (
                json!({"name": "x", "connectTimeout": -1}),
                "connectTimeout: -1 is not a whole number",
            ),
        ] {
            let err = protocol(config.clone()).expect_err("invalid");
            assert!(err.starts_with(expected), "{config}: {err}");
        }
        let spoiled = protocol(json!({"macAddress": {"x": 1}})).expect_err("invalid");
        assert!(spoiled.contains("invalid type"), "{spoiled}");
    }

    #[test]
    fn uuids_in_every_form() {
        let full = parse_uuid("f000aa0104514000b000000000000000").expect("32 digits");
        assert_eq!(full.to_string(), "f000aa01-0451-4000-b000-000000000000");
        assert_eq!(
            parse_uuid("F000AA01-0451-4000-B000-000000000000"),
            Some(full)
        );
        assert_eq!(
            parse_uuid("2a6e").map(|u| u.to_string()).as_deref(),
            Some("00002a6e-0000-1000-8000-00805f9b34fb")
        );
        assert_eq!(parse_uuid("0x2A6E"), parse_uuid("2a6e"));
        assert_eq!(
            parse_uuid("12345678").map(|u| u.to_string()).as_deref(),
            Some("12345678-0000-1000-8000-00805f9b34fb")
        );
        for bad in [
            "",
            "2a6",
            "2a6e-",
            "xyz1",
            "f000aa0104514000b00000000000000",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_kubeedge_visitor_as_converted() {
        let temperature = point(
            json!({"characteristicUUID": "f000aa0104514000b000000000000000",
                   "dataConverter": {"startIndex": 1, "endIndex": 0, "shiftRight": 2,
                     "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}]}}),
            PropertyType::Int,
        )
        .expect("valid");
        let converter = temperature.codec.converter.clone().expect("a converter");
        assert_eq!(
            (converter.start, converter.end, converter.shift),
            (1, 0, Shift::Right(2))
        );
        assert_eq!(temperature.notify, NotifyMode::Auto);
        assert_eq!(temperature.write_type, WriteType::Request);
        let enable = point(
            json!({"characteristicUUID": "f000aa0204514000b000000000000000",
                   "dataWrite": {"ON": [1], "OFF": "AA=="}}),
            PropertyType::String,
        )
        .expect("valid");
        assert_eq!(
            enable.codec.data_write,
            Some(DataWrite(vec![
                ("OFF".into(), vec![0]),
                ("ON".into(), vec![1])
            ]))
        );
    }

    #[test]
    fn the_cc2650_sample_with_its_keys_one_level_too_high() {
        // KubeEdge's build/crd-samples CC2650 instance indents dataConverter's and dataWrite's
        // entries at the visitor's level; `edgetwin convert` keeps them there.
        let flat = visitor(
            json!({"characteristicUUID": "f000aa0104514000b000000000000000",
                                  "dataConverter": null, "startIndex": 1, "endIndex": 0,
                                  "shiftRight": 2, "orderOfOperations":
                                  [{"operationType": "Multiply", "operationValue": 0.03125}]}),
        );
        assert_eq!(flat.flattened_keys(), ["dataConverter"]);
        let nested = point(
            json!({"characteristicUUID": "f000aa0104514000b000000000000000",
                   "dataConverter": {"startIndex": 1, "endIndex": 0, "shiftRight": 2,
                     "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}]}}),
            PropertyType::Int,
        )
        .expect("valid");
        assert_eq!(flat.settings(PropertyType::Int).expect("valid"), nested);
        let flat_write = visitor(
            json!({"characteristicUUID": "f000aa6504514000b000000000000000",
                                        "dataWrite": null, "Red": [1], "Green": [2]}),
        );
        assert_eq!(flat_write.flattened_keys(), ["dataWrite"]);
        assert!(flat_write.unknown_keys().is_empty());
        assert_eq!(
            flat_write
                .settings(PropertyType::Int)
                .expect("valid")
                .codec
                .data_write,
            Some(DataWrite(vec![
                ("Green".into(), vec![2]),
                ("Red".into(), vec![1])
            ]))
        );
        let both = point(
            json!({"characteristicUUID": "2a6e", "dataConverter": {"startIndex": 1},
                   "startIndex": 2}),
            PropertyType::Int,
        )
        .expect_err("ambiguous");
        assert!(
            both.starts_with("startIndex: set inside dataConverter and next to it"),
            "{both}"
        );
    }

    #[test]
    fn typed_settings() {
        let hr = point(
            json!({"characteristicUUID": "2a37", "dataType": "uint8", "offset": 1,
                   "notify": true}),
            PropertyType::Int,
        )
        .expect("valid");
        assert_eq!(
            hr.codec.typed,
            Some(Typed {
                data_type: DataType::Uint(1),
                order: ByteOrder::Little,
                offset: 1,
                length: None
            })
        );
        assert_eq!(hr.notify, NotifyMode::Always);
        let name = point(
            json!({"characteristicUUID": "2a00", "dataType": "utf8", "length": "8",
                   "writeType": "command", "notify": "never", "serviceUUID": "1800"}),
            PropertyType::String,
        )
        .expect("valid");
        assert_eq!(name.write_type, WriteType::Command);
        assert_eq!(name.notify, NotifyMode::Never);
        assert_eq!(name.service, parse_uuid("1800"));
        assert_eq!(
            name.codec
                .encode(&Value::String("ab".into()), None)
                .map(|e| e.bytes),
            Ok(b"ab\0\0\0\0\0\0".to_vec())
        );
    }

    #[test]
    fn visitor_errors_name_the_field() {
        use PropertyType as P;
        for (config, ty, expected) in [
            (json!({}), P::Int, "characteristicUUID: missing"),
            (
                json!({"characteristicUUID": "zz"}),
                P::Int,
                "characteristicUUID: \"zz\" is not a UUID",
            ),
            (
                json!({"uuid": "2a6e", "serviceUUID": "1"}),
                P::Int,
                "serviceUUID: \"1\" is not a UUID",
            ),
            (
                json!({"uuid": "2a6e", "dataWrite": {"ON": [256]}}),
                P::String,
                "dataWrite.ON: 256 is not a byte",
            ),
            (
                json!({"uuid": "2a6e", "dataWrite": {"ON": "%%"}}),
                P::String,
                "dataWrite.ON: \"%%\" is neither",
            ),
            (
                json!({"uuid": "2a6e", "dataWrite": {"ON": true}}),
                P::String,
                "dataWrite.ON: true is not a list",
            ),
            (
                json!({"uuid": "2a6e", "dataConverter": {"startIndex": 0, "endIndex": 9}}),
                P::Int,
                "dataConverter.startIndex: startIndex 0 to endIndex 9 is 10 bytes",
            ),
            (
                json!({"uuid": "2a6e", "dataConverter": {"shiftLeft": 1, "shiftRight": 2}}),
                P::Int,
                "dataConverter.shiftLeft: shiftLeft and shiftRight are both set",
            ),
            (
                json!({"uuid": "2a6e", "dataConverter": {"startIndex": -1}}),
                P::Int,
                "dataConverter.startIndex: -1 is not a whole number",
            ),
            (
                json!({"uuid": "2a6e", "dataConverter": {"orderOfOperations": [{"operationType": "Divide", "operationValue": 0}]}}),
                P::Int,
                "dataConverter.orderOfOperations[0]: Divide by 0",
            ),
            (
                json!({"uuid": "2a6e", "dataConverter": {"orderOfOperations": [{"operationType": "Add"}]}}),
                P::Int,
                "dataConverter.orderOfOperations[0]: operationValue missing",
            ),
            (
                json!({"uuid": "2a6e", "dataType": "decimal"}),
                P::Float,
                "dataType: \"decimal\" is not",
            ),
            (
                json!({"uuid": "2a6e", "dataType": "int16", "dataConverter": {"startIndex": 1}}),
                P::Float,
                "dataType: int16 and dataConverter both say how to read",
            ),
            (
                json!({"uuid": "2a6e", "byteOrder": "big"}),
                P::Int,
                "byteOrder: only used with dataType",
            ),
            (
                json!({"uuid": "2a6e", "dataType": "uint8", "byteOrder": "middle"}),
                P::Int,
                "byteOrder: \"middle\" is not",
            ),
            (
                json!({"uuid": "2a6e", "dataType": "uint8", "length": 2}),
                P::Int,
                "length: uint8 has a fixed size",
            ),
            (
                json!({"uuid": "2a6e", "dataType": "uint8", "offset": 600}),
                P::Int,
                "offset: the value would end at byte 601",
            ),
            (
                json!({"uuid": "2a6e", "dataType": "uint8"}),
                P::Bytes,
                "dataType: uint8 cannot feed a BYTES property",
            ),
            (
                json!({"uuid": "2a6e", "dataConverter": {"startIndex": 1}}),
                P::Bytes,
                "dataConverter: makes a number",
            ),
            (
                json!({"uuid": "2a6e", "writeType": "reliable"}),
                P::Int,
                "writeType: \"reliable\" is not",
            ),
            (
                json!({"uuid": "2a6e", "notify": "sometimes"}),
                P::Int,
                "notify: \"sometimes\" is not",
            ),
            (
                json!({"uuid": "2a6e", "notify": 3}),
                P::Int,
                "notify: 3 is not",
            ),
        ] {
            let err = point(config.clone(), ty).expect_err("invalid");
            assert!(err.starts_with(expected), "{config}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_listed_and_kubeedge_extras_are_not() {
        let config: ProtocolConfig =
            serde_json::from_value(json!({"macAddress": "BC:6A:29:AE:CC:96", "adress": 1,
                                          "protocolName": "bluetooth"}))
            .expect("parses");
        assert_eq!(config.unknown_keys(), ["adress"]);
        let visitor = visitor(json!({"characteristicUUID": "2a6e", "datatype": "uint8"}));
        assert_eq!(visitor.unknown_keys(), ["datatype"]);
    }

    #[test]
    fn base64_as_go_writes_bytes() {
        assert_eq!(base64("AQ=="), Some(vec![1]));
        assert_eq!(base64("AQI="), Some(vec![1, 2]));
        assert_eq!(base64("AQID"), Some(vec![1, 2, 3]));
        assert_eq!(base64(""), Some(vec![]));
        assert_eq!(base64("AQ="), None);
        assert_eq!(base64("A==="), None);
        assert_eq!(base64("AQ==AQ=="), None);
        assert_eq!(base64("A$=="), None);
    }
}
