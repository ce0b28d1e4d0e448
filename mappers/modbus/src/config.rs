//! The Modbus parts of a Device: `protocol.configData` ([`ProtocolConfig`]) and each property's
//! `visitors.configData` ([`VisitorConfig`]), with KubeEdge's keys and ours, and their
//! validation into [`DeviceSettings`] and [`Field`]s with clear errors.
//!
//! KubeEdge's keys are read as its Modbus mappers read them, so KubeEdge Devices run unchanged:
//! `communicateMode`, `ip`, `port` (a string in v1beta1, a number in v1alpha2), `slaveID`,
//! `serialPort`, `baudRate`, `dataBits`, `parity`, `stopBits`; and per property `register`,
//! `offset`, `limit`, `scale`, `isSwap`, `isRegisterSwap`, `dataType`. See the crate README for
//! the full reference.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use edgetwin_sdk::PropertyType;
use edgetwin_sdk::cycle_duration;
use edgetwin_sdk::model::value::Limits;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value as Json;

use crate::codec::{ByteOrder, DataType, Field, Transform};
use crate::plan::{DEFAULT_MAX_GAP, PlanLimits};
use crate::table::{Table, normalize};

/// Default Modbus TCP port.
pub const DEFAULT_PORT: u16 = 502;
/// Default unit (slave) id.
pub const DEFAULT_UNIT: u8 = 1;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of times a request that failed on the transport is sent again.
pub const DEFAULT_RETRIES: u32 = 1;
/// Most retries accepted.
pub const MAX_RETRIES: u32 = 10;
/// Default serial speed.
pub const DEFAULT_BAUD_RATE: u32 = 9600;

/// A configuration problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The key (`port`, `limit`, …).
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

/// `protocol.configData` of a Modbus device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolConfig {
    /// `TCP` or `RTU`; when absent, `ip` means TCP and `serialPort` means RTU.
    #[serde(
        default,
        alias = "communicationMode",
        alias = "commType",
        alias = "mode",
        deserialize_with = "parsed"
    )]
    pub communicate_mode: Option<Mode>,
    /// TCP: the device's host name or IP address.
    #[serde(default, alias = "host")]
    pub ip: Option<String>,
    /// TCP: the port (number or numeric string; default 502).
    #[serde(default, deserialize_with = "number")]
    pub port: Option<u16>,
    /// The unit (slave) id (default 1).
    #[serde(
        default,
        rename = "slaveID",
        alias = "slaveId",
        alias = "unitId",
        alias = "unitID",
        deserialize_with = "number"
    )]
    pub slave_id: Option<u8>,
    /// RTU: the serial device, e.g. `/dev/ttyUSB0`.
    #[serde(default, alias = "serialName")]
    pub serial_port: Option<String>,
    /// RTU: bits per second (default 9600).
    #[serde(default, deserialize_with = "number")]
    pub baud_rate: Option<u32>,
    /// RTU: 5–8 (default 8).
    #[serde(default, deserialize_with = "number")]
    pub data_bits: Option<u8>,
    /// RTU: `none`, `even` or `odd` (default none, as KubeEdge).
    #[serde(default, deserialize_with = "parsed")]
    pub parity: Option<Parity>,
    /// RTU: 1 or 2 (default 1).
    #[serde(default, deserialize_with = "number")]
    pub stop_bits: Option<u8>,
    /// Per-request timeout in milliseconds (default 1000; values ≥ 10⁷ are nanoseconds).
    /// KubeEdge v1alpha2: `collectTimeout`.
    #[serde(
        default,
        alias = "timeoutMs",
        alias = "collectTimeout",
        deserialize_with = "number"
    )]
    pub timeout: Option<u64>,
    /// How many times a request that failed on the transport is sent again (default 1).
    /// KubeEdge v1alpha2: `collectRetryTimes`.
    #[serde(default, alias = "collectRetryTimes", deserialize_with = "number")]
    pub retries: Option<u32>,
    /// Largest hole, in registers or bits, bridged when merging reads (default 16).
    #[serde(default, deserialize_with = "number")]
    pub max_gap: Option<u16>,
    /// Most registers per read request (1–125, default 125).
    #[serde(default, deserialize_with = "number")]
    pub max_read_registers: Option<u16>,
    /// Most coils or discrete inputs per read request (1–2000, default 2000).
    #[serde(default, deserialize_with = "number")]
    pub max_read_bits: Option<u16>,
    /// Every other key (KubeEdge's `serialType`, …): ignored, unknown ones with a warning.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// `properties[].visitors.configData` of a Modbus property.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorConfig {
    /// The table: `HoldingRegister`, `InputRegister`, `CoilRegister`, `DiscreteInputRegister`
    /// (or `holding`, `input`, `coil`, `discrete`).
    #[serde(deserialize_with = "required_parsed")]
    pub register: Table,
    /// The first register or bit, 0-based.
    #[serde(default, alias = "address", deserialize_with = "number")]
    pub offset: Option<u16>,
    /// How many registers or bits (implied by fixed-size data types).
    #[serde(
        default,
        alias = "count",
        alias = "quantity",
        deserialize_with = "number"
    )]
    pub limit: Option<u16>,
    /// How the registers encode the value (default: from the property type and `limit`).
    #[serde(default, deserialize_with = "parsed")]
    pub data_type: Option<DataTypeName>,
    /// For `dataType: bit` (or `boolean` on a register): which bit, 0 = least significant.
    #[serde(default, deserialize_with = "number")]
    pub bit: Option<u8>,
    /// `ABCD`, `BADC`, `CDAB` or `DCBA` (default `ABCD`).
    #[serde(default, deserialize_with = "parsed")]
    pub byte_order: Option<ByteOrder>,
    /// KubeEdge: swap the bytes inside each register (`BADC`).
    #[serde(default, deserialize_with = "flag")]
    pub is_swap: Option<bool>,
    /// KubeEdge: reverse the register order (`CDAB`).
    #[serde(default, deserialize_with = "flag")]
    pub is_register_swap: Option<bool>,
    /// Multiplies the raw value (default 1, never 0).
    #[serde(default, deserialize_with = "number")]
    pub scale: Option<f64>,
    /// Added to the scaled value (default 0).
    #[serde(default, deserialize_with = "number")]
    pub value_offset: Option<f64>,
    /// Every other key (KubeEdge samples carry `max`, `min`): ignored, unknown ones with a
    /// warning.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// Modbus TCP or RTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Modbus TCP.
    Tcp,
    /// Modbus RTU over a serial line.
    Rtu,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// The `dataType` names accepted: KubeEdge's property types and explicit register types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataTypeName {
    /// KubeEdge `int`: an unsigned integer over `limit` (1, 2 or 4) registers (signed when the
    /// model's `minimum` is negative), or coils.
    Int,
    /// KubeEdge `float`: `float32` over 2 registers; over 1 register an unsigned integer
    /// (usually with a `scale`); `float64` over 4.
    Float,
    /// KubeEdge `double`: `float64` over 4 registers (2: `float32`, 1: unsigned integer).
    Double,
    /// KubeEdge `boolean` (also `bool`): a coil, a `bit` of a register, or register ≠ 0.
    Boolean,
    /// Text over `limit` registers.
    String,
    /// Raw bytes over `limit` registers.
    Bytes,
    /// One `bit` of a register.
    Bit,
    /// `int16`.
    Int16,
    /// `uint16`.
    Uint16,
    /// `int32`.
    Int32,
    /// `uint32`.
    Uint32,
    /// `int64`.
    Int64,
    /// `uint64`.
    Uint64,
    /// `float32`.
    Float32,
    /// `float64`.
    Float64,
}

/// How the mapper reaches a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSettings {
    /// Modbus TCP to `host:port`.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// Modbus RTU on a serial line.
    Rtu(SerialSettings),
}

/// A serial line's settings. Devices on one line must agree on them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    /// The serial device path.
    pub path: String,
    /// Bits per second.
    pub baud_rate: u32,
    /// Data bits (5–8).
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits (1 or 2).
    pub stop_bits: u8,
}

/// A device's validated connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// TCP or RTU, and where.
    pub link: LinkSettings,
    /// The unit (slave) id.
    pub unit: u8,
    /// The timeout of one request.
    pub timeout: Duration,
    /// How many times a request that failed on the transport is sent again.
    pub retries: u32,
    /// How reads are merged.
    pub limits: PlanLimits,
}

/// Keys KubeEdge configurations carry that the mapper knowingly ignores (see the README:
/// `serialType: RS485` needs no kernel RS-485 mode with adapters that switch direction
/// themselves; `collectType` was never read by a KubeEdge mapper; reconnecting is the runtime's
/// backoff, without a retry limit).
const IGNORED_PROTOCOL_KEYS: &[&str] = &[
    "serialType",
    "customizedValues",
    "protocolName",
    "collectType",
    "reconnRetryTimes",
    "reconnTimeout",
];
/// Keys KubeEdge visitor configurations carry that the mapper knowingly ignores (`max` and
/// `min` appear in KubeEdge's samples but no KubeEdge mapper reads them; use the pipeline's
/// `clamp`).
const IGNORED_VISITOR_KEYS: &[&str] = &["max", "min", "customizedValues", "protocolName"];

impl ProtocolConfig {
    /// Validates the configuration into settings.
    pub fn settings(&self) -> Result<DeviceSettings, ConfigError> {
        let mode = match (self.communicate_mode, &self.ip, &self.serial_port) {
            (Some(mode), _, _) => mode,
            (None, Some(_), None) => Mode::Tcp,
            (None, None, Some(_)) => Mode::Rtu,
            (None, Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "communicateMode",
                    "both ip and serialPort are set: say which one to use (TCP or RTU)",
                ));
            }
            (None, None, None) => {
                return Err(ConfigError::new(
                    "ip",
                    "missing: set ip (Modbus TCP) or serialPort (Modbus RTU)",
                ));
            }
        };
        let link = match mode {
            Mode::Tcp => self.tcp()?,
            Mode::Rtu => LinkSettings::Rtu(self.serial()?),
        };
        let unit = self.slave_id.unwrap_or(DEFAULT_UNIT);
        if mode == Mode::Rtu && !(1..=247).contains(&unit) {
            return Err(ConfigError::new(
                "slaveID",
                format!("{unit} is not a Modbus RTU slave address (1–247; 0 is broadcast)"),
            ));
        }
        Ok(DeviceSettings {
            link,
            unit,
            timeout: self.timeout()?,
            retries: match self.retries {
                Some(n) if n > MAX_RETRIES => {
                    return Err(ConfigError::new(
                        "retries",
                        format!("{n} is too many (at most {MAX_RETRIES})"),
                    ));
                }
                Some(n) => n,
                None => DEFAULT_RETRIES,
            },
            limits: self.limits()?,
        })
    }

    /// Keys that are neither read nor knowingly ignored (probably typos).
    pub fn unknown_keys(&self) -> Vec<&str> {
        unknown(&self.other, IGNORED_PROTOCOL_KEYS)
    }

    fn tcp(&self) -> Result<LinkSettings, ConfigError> {
        let host = match self.ip.as_deref().map(str::trim) {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => {
                return Err(ConfigError::new(
                    "ip",
                    "missing: Modbus TCP needs the device's address",
                ));
            }
        };
        let port = match self.port {
            Some(0) => return Err(ConfigError::new("port", "0 is not a TCP port")),
            Some(port) => port,
            None => DEFAULT_PORT,
        };
        Ok(LinkSettings::Tcp { host, port })
    }

    fn serial(&self) -> Result<SerialSettings, ConfigError> {
        let path = match self.serial_port.as_deref().map(str::trim) {
            Some(path) if !path.is_empty() => path.to_owned(),
            _ => {
                return Err(ConfigError::new(
                    "serialPort",
                    "missing: Modbus RTU needs the serial device, e.g. /dev/ttyUSB0",
                ));
            }
        };
        let baud_rate = match self.baud_rate {
            Some(0) => return Err(ConfigError::new("baudRate", "must be more than 0")),
            Some(baud) => baud,
            None => DEFAULT_BAUD_RATE,
        };
        let data_bits = self.data_bits.unwrap_or(8);
        if !(5..=8).contains(&data_bits) {
            return Err(ConfigError::new(
                "dataBits",
                format!("{data_bits} is not 5, 6, 7 or 8"),
            ));
        }
        let stop_bits = self.stop_bits.unwrap_or(1);
        if !(1..=2).contains(&stop_bits) {
            return Err(ConfigError::new(
                "stopBits",
                format!("{stop_bits} is not 1 or 2"),
            ));
        }
        Ok(SerialSettings {
            path,
            baud_rate,
            data_bits,
            parity: self.parity.unwrap_or(Parity::None),
            stop_bits,
        })
    }

    /// Milliseconds, or nanoseconds from 10⁷ up (with a warning), as for `collectCycle`.
    fn timeout(&self) -> Result<Duration, ConfigError> {
        match self.timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(raw) => cycle_duration(i64::try_from(raw).ok(), "protocol.configData.timeout")
                .ok_or_else(|| ConfigError::new("timeout", "must be a positive number of ms")),
        }
    }

    fn limits(&self) -> Result<PlanLimits, ConfigError> {
        let bounded = |field: &str, value: Option<u16>, max: u16| match value {
            None => Ok(max),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::new(
                field,
                format!("{n} is outside 1–{max} (the Modbus limit)"),
            )),
        };
        Ok(PlanLimits {
            max_registers: bounded(
                "maxReadRegisters",
                self.max_read_registers,
                Table::HoldingRegisters.max_read(),
            )?,
            max_bits: bounded("maxReadBits", self.max_read_bits, Table::Coils.max_read())?,
            max_gap: self.max_gap.unwrap_or(DEFAULT_MAX_GAP),
        })
    }
}

impl VisitorConfig {
    /// Validates the visitor of a property of type `ty` into a [`Field`]; `model` are the
    /// DeviceModel's `minimum`/`maximum` (a negative minimum makes KubeEdge's `int`, `float` and
    /// `double` over whole registers signed: two's complement at the register width);
    /// `limits` are the device's read limits (a property must fit one request).
    pub fn field(
        &self,
        ty: PropertyType,
        model: &Limits,
        limits: &PlanLimits,
    ) -> Result<Field, ConfigError> {
        let table = self.register;
        let address = self.offset.ok_or_else(|| {
            ConfigError::new(
                "offset",
                "missing: the address of the first register or bit",
            )
        })?;
        if self.bit.is_some()
            && !matches!(
                self.data_type,
                Some(DataTypeName::Bit | DataTypeName::Boolean) | None
            )
        {
            return Err(ConfigError::new(
                "bit",
                "only used with dataType bit (or boolean) on a register",
            ));
        }
        let (data_type, count) = if table.holds_bits() {
            self.bits_layout(ty)?
        } else {
            let (data_type, count) = self.register_layout(ty)?;
            let signed = model.minimum().is_some_and(|minimum| minimum < 0.0);
            let kubeedge_name = matches!(
                self.data_type,
                None | Some(DataTypeName::Int | DataTypeName::Float | DataTypeName::Double)
            );
            if signed && kubeedge_name {
                (data_type.signed(), count)
            } else {
                (data_type, count)
            }
        };
        check_type_fits(ty, data_type)?;
        let max = if table.holds_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        };
        if count > max {
            return Err(ConfigError::new(
                "limit",
                format!("{count} {table} do not fit one read request (at most {max})"),
            ));
        }
        if u32::from(address) + u32::from(count) > 65_536 {
            return Err(ConfigError::new(
                "limit",
                format!("offset {address} + limit {count} runs past the last address (65535)"),
            ));
        }
        let transform = self.transform(ty, data_type)?;
        Ok(Field {
            table,
            address,
            count,
            data_type,
            order: self.order()?,
            transform,
            ty,
        })
    }

    /// Keys that are neither read nor knowingly ignored (probably typos).
    pub fn unknown_keys(&self) -> Vec<&str> {
        unknown(&self.other, IGNORED_VISITOR_KEYS)
    }

    /// Coils and discrete inputs: one bit, or a mask of up to 64.
    fn bits_layout(&self, ty: PropertyType) -> Result<(DataType, u16), ConfigError> {
        use DataTypeName as N;
        let count = self.limit.unwrap_or(1);
        match self.data_type {
            None | Some(N::Boolean | N::Bit | N::Int | N::Uint16 | N::Uint32 | N::Uint64) => {}
            Some(other) => {
                return Err(ConfigError::new(
                    "dataType",
                    format!(
                        "{other} needs registers; {} hold single bits (use boolean, or int for a \
                         bit mask)",
                        self.register
                    ),
                ));
            }
        }
        if count == 0 || count > 64 {
            return Err(ConfigError::new(
                "limit",
                format!("{count}: a property spans 1 to 64 coils or discrete inputs"),
            ));
        }
        if count > 1 && (ty == PropertyType::Boolean || self.data_type == Some(N::Boolean)) {
            return Err(ConfigError::new(
                "limit",
                format!(
                    "{count}: a boolean is one coil; use limit 1, or an INT property for a \
                     bit mask"
                ),
            ));
        }
        Ok((DataType::Bits, count))
    }

    /// Holding and input registers.
    fn register_layout(&self, ty: PropertyType) -> Result<(DataType, u16), ConfigError> {
        use DataTypeName as N;
        let name = self.data_type.unwrap_or(match ty {
            PropertyType::Int => N::Int,
            PropertyType::Float => N::Float,
            PropertyType::Double => N::Double,
            PropertyType::Boolean => N::Boolean,
            PropertyType::String | PropertyType::Stream => N::String,
            PropertyType::Bytes => N::Bytes,
        });
        let by_limit = |choices: &[(u16, DataType)], default: u16| {
            let limit = self.limit.unwrap_or(default);
            choices
                .iter()
                .find(|(registers, _)| *registers == limit)
                .map(|(registers, data_type)| (*data_type, *registers))
                .ok_or_else(|| {
                    let counts: Vec<String> = choices.iter().map(|(n, _)| n.to_string()).collect();
                    ConfigError::new(
                        "limit",
                        format!("{limit}: {name} spans {} registers", counts.join(", ")),
                    )
                })
        };
        let fixed = |data_type: DataType| {
            let registers = data_type.fixed_registers().unwrap_or(1);
            match self.limit {
                Some(limit) if limit != registers => Err(ConfigError::new(
                    "limit",
                    format!("{limit} does not match dataType {name} ({registers} registers)"),
                )),
                _ => Ok((data_type, registers)),
            }
        };
        let sized = |data_type: DataType| match self.limit {
            Some(0) | None => Err(ConfigError::new(
                "limit",
                format!("dataType {name} needs limit: how many registers (2 bytes each)"),
            )),
            Some(limit) => Ok((data_type, limit)),
        };
        match name {
            N::Int => by_limit(
                &[
                    (1, DataType::Uint16),
                    (2, DataType::Uint32),
                    (4, DataType::Uint64),
                ],
                1,
            ),
            N::Float => by_limit(
                &[
                    (2, DataType::Float32),
                    (1, DataType::Uint16),
                    (4, DataType::Float64),
                ],
                2,
            ),
            N::Double => by_limit(
                &[
                    (4, DataType::Float64),
                    (2, DataType::Float32),
                    (1, DataType::Uint16),
                ],
                4,
            ),
            N::Boolean => match self.bit {
                Some(bit) => fixed(self.bit_type(bit)?),
                None => fixed(DataType::Uint16),
            },
            N::Bit => {
                let bit = self.bit.ok_or_else(|| {
                    ConfigError::new("bit", "missing: dataType bit needs the bit number (0–15)")
                })?;
                fixed(self.bit_type(bit)?)
            }
            N::String => sized(DataType::String),
            N::Bytes => sized(DataType::Bytes),
            N::Int16 => fixed(DataType::Int16),
            N::Uint16 => fixed(DataType::Uint16),
            N::Int32 => fixed(DataType::Int32),
            N::Uint32 => fixed(DataType::Uint32),
            N::Int64 => fixed(DataType::Int64),
            N::Uint64 => fixed(DataType::Uint64),
            N::Float32 => fixed(DataType::Float32),
            N::Float64 => fixed(DataType::Float64),
        }
    }

    fn bit_type(&self, bit: u8) -> Result<DataType, ConfigError> {
        if bit < 16 {
            Ok(DataType::Bit(bit))
        } else {
            Err(ConfigError::new(
                "bit",
                format!("{bit} is not a bit of a 16-bit register (0–15)"),
            ))
        }
    }

    fn order(&self) -> Result<ByteOrder, ConfigError> {
        let flags = (self.is_swap.is_some() || self.is_register_swap.is_some()).then(|| {
            ByteOrder::from_swaps(
                self.is_swap.unwrap_or(false),
                self.is_register_swap.unwrap_or(false),
            )
        });
        match (self.byte_order, flags) {
            (Some(order), Some(from_flags)) if order != from_flags => Err(ConfigError::new(
                "byteOrder",
                format!(
                    "{order} contradicts isSwap/isRegisterSwap (which mean {from_flags}); set \
                     one or the other"
                ),
            )),
            (Some(order), _) => Ok(order),
            (None, Some(from_flags)) => Ok(from_flags),
            (None, None) => Ok(ByteOrder::Abcd),
        }
    }

    fn transform(&self, ty: PropertyType, data_type: DataType) -> Result<Transform, ConfigError> {
        let scale = self.scale.unwrap_or(1.0);
        let offset = self.value_offset.unwrap_or(0.0);
        if scale == 0.0 || !scale.is_finite() {
            return Err(ConfigError::new(
                "scale",
                format!("{scale}: must be a finite number other than 0"),
            ));
        }
        if !offset.is_finite() {
            return Err(ConfigError::new("valueOffset", "must be a finite number"));
        }
        let transform = Transform { scale, offset };
        if !transform.is_identity() {
            let field = if scale != 1.0 { "scale" } else { "valueOffset" };
            if !data_type.is_numeric() {
                return Err(ConfigError::new(
                    field,
                    format!("applies to numbers, not dataType {data_type}"),
                ));
            }
            if ty == PropertyType::Boolean {
                return Err(ConfigError::new(
                    field,
                    "makes no sense for a BOOLEAN property",
                ));
            }
        }
        Ok(transform)
    }
}

/// Whether a property of type `ty` can show values of `data_type`.
fn check_type_fits(ty: PropertyType, data_type: DataType) -> Result<(), ConfigError> {
    let numeric_property = matches!(
        ty,
        PropertyType::Int | PropertyType::Float | PropertyType::Double | PropertyType::Boolean
    );
    if numeric_property && !data_type.is_numeric() {
        return Err(ConfigError::new(
            "dataType",
            format!("{data_type} cannot feed a {} property", type_name(ty)),
        ));
    }
    if ty == PropertyType::Bytes && data_type.is_numeric() {
        return Err(ConfigError::new(
            "dataType",
            format!("{data_type} cannot feed a BYTES property (use bytes or string)"),
        ));
    }
    Ok(())
}

fn type_name(ty: PropertyType) -> &'static str {
    match ty {
        PropertyType::Int => "INT",
        PropertyType::Float => "FLOAT",
        PropertyType::Double => "DOUBLE",
        PropertyType::String => "STRING",
        PropertyType::Boolean => "BOOLEAN",
        PropertyType::Bytes => "BYTES",
        PropertyType::Stream => "STREAM",
    }
}

fn unknown<'a>(other: &'a BTreeMap<String, Json>, ignored: &[&str]) -> Vec<&'a str> {
    other
        .keys()
        .map(String::as_str)
        .filter(|key| !ignored.contains(key))
        .collect()
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match normalize(s).as_str() {
            "tcp" => Ok(Mode::Tcp),
            // KubeEdge v1alpha2 `commType: COM`.
            "rtu" | "com" => Ok(Mode::Rtu),
            _ => Err(format!("{s:?} is not a Modbus mode (use TCP or RTU)")),
        }
    }
}

impl FromStr for Parity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match normalize(s).as_str() {
            "none" | "n" | "" => Ok(Parity::None),
            "even" | "e" => Ok(Parity::Even),
            "odd" | "o" => Ok(Parity::Odd),
            _ => Err(format!("{s:?} is not a parity (use none, even or odd)")),
        }
    }
}

impl FromStr for Table {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::parse(s).ok_or_else(|| {
            format!(
                "{s:?} is not a Modbus table (use HoldingRegister, InputRegister, CoilRegister \
                 or DiscreteInputRegister)"
            )
        })
    }
}

impl FromStr for ByteOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ByteOrder::parse(s)
            .ok_or_else(|| format!("{s:?} is not a byte order (use ABCD, BADC, CDAB or DCBA)"))
    }
}

impl FromStr for DataTypeName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use DataTypeName as N;
        Ok(match normalize(s).as_str() {
            "int" | "integer" => N::Int,
            "float" => N::Float,
            "double" => N::Double,
            "boolean" | "bool" => N::Boolean,
            "string" | "text" => N::String,
            "bytes" => N::Bytes,
            "bit" => N::Bit,
            "int16" => N::Int16,
            "uint16" => N::Uint16,
            "int32" => N::Int32,
            "uint32" => N::Uint32,
            "int64" => N::Int64,
            "uint64" => N::Uint64,
            "float32" => N::Float32,
            "float64" => N::Float64,
            _ => {
                return Err(format!(
                    "{s:?} is not a data type (use int16, uint16, int32, uint32, int64, uint64, \
                     float32, float64, bit, string, bytes, or KubeEdge's int, float, double, \
                     boolean)"
                ));
            }
        })
    }
}

impl fmt::Display for DataTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DataTypeName as N;
        f.write_str(match self {
            N::Int => "int",
            N::Float => "float",
            N::Double => "double",
            N::Boolean => "boolean",
            N::String => "string",
            N::Bytes => "bytes",
            N::Bit => "bit",
            N::Int16 => "int16",
            N::Uint16 => "uint16",
            N::Int32 => "int32",
            N::Uint32 => "uint32",
            N::Int64 => "int64",
            N::Uint64 => "uint64",
            N::Float32 => "float32",
            N::Float64 => "float64",
        })
    }
}

/// A name parsed with `FromStr`, from a string.
fn parsed<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    match Json::deserialize(deserializer)? {
        Json::Null => Ok(None),
        Json::String(text) => text.parse().map(Some).map_err(de::Error::custom),
        other => Err(de::Error::custom(format!("expected a name, got {other}"))),
    }
}

fn required_parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    parsed(deserializer)?.ok_or_else(|| de::Error::custom("must not be null"))
}

/// A number, written as a number or as a numeric string (KubeEdge writes `port: "502"`).
fn number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + serde::de::DeserializeOwned,
{
    let json = Json::deserialize(deserializer)?;
    let parsed = match &json {
        Json::Null => return Ok(None),
        Json::Number(_) => serde_json::from_value::<T>(json.clone()).ok(),
        Json::String(text) => text.trim().parse::<T>().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| de::Error::custom(format!("{json} is not a number in range")))
}

/// A boolean, also as `"true"` / `"false"`.
fn flag<'de, D>(deserializer: D) -> Result<Option<bool>, D::Error>
where
    D: Deserializer<'de>,
{
    match Json::deserialize(deserializer)? {
        Json::Null => Ok(None),
        Json::Bool(b) => Ok(Some(b)),
        Json::String(text) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Json::String(text) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
        other => Err(de::Error::custom(format!("{other} is not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn protocol(json: Json) -> Result<ProtocolConfig, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    fn visitor(json: Json) -> VisitorConfig {
        serde_json::from_value(json).expect("visitor parses")
    }

    fn field(json: Json, ty: PropertyType) -> Result<Field, ConfigError> {
        visitor(json).field(ty, &Limits::default(), &PlanLimits::default())
    }

    #[test]
    fn a_negative_model_minimum_makes_kubeedge_types_signed() {
        let signed = Limits::parse(PropertyType::Int, Some("-500"), None).expect("limits");
        let layout = |json: Json, ty: PropertyType, model: &Limits| {
            visitor(json)
                .field(ty, model, &PlanLimits::default())
                .map(|field| (field.data_type, field.count))
        };
        let int = |limit: u16| json!({"register": "holding", "offset": 0, "dataType": "int", "limit": limit});
        assert_eq!(
            layout(int(1), PropertyType::Int, &signed),
            Ok((DataType::Int16, 1))
        );
        assert_eq!(
            layout(int(2), PropertyType::Int, &signed),
            Ok((DataType::Int32, 2))
        );
        assert_eq!(
            layout(int(4), PropertyType::Int, &signed),
            Ok((DataType::Int64, 4))
        );
        assert_eq!(
            layout(int(1), PropertyType::Int, &Limits::default()),
            Ok((DataType::Uint16, 1))
        );
        let scaled = json!({"register": "input", "offset": 0, "dataType": "float", "limit": 1, "scale": 0.1});
        assert_eq!(
            layout(scaled, PropertyType::Float, &signed),
            Ok((DataType::Int16, 1))
        );
        // An explicit register type is what the device holds, whatever the model allows.
        let explicit = json!({"register": "holding", "offset": 0, "dataType": "uint16"});
        assert_eq!(
            layout(explicit, PropertyType::Int, &signed),
            Ok((DataType::Uint16, 1))
        );
    }

    #[test]
    fn kubeedge_v1beta1_tcp_protocol() {
        let config = protocol(json!({
            "communicateMode": "TCP", "port": "5502", "slaveID": 1, "ip": "10.244.1.13"
        }))
        .expect("parses");
        let settings = config.settings().expect("valid");
        assert_eq!(
            settings.link,
            LinkSettings::Tcp {
                host: "10.244.1.13".into(),
                port: 5502
            }
        );
        assert_eq!(settings.unit, 1);
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(settings.retries, DEFAULT_RETRIES);
        assert_eq!(settings.limits, PlanLimits::default());
    }

    #[test]
    fn converted_v1alpha2_rtu_protocol_infers_the_mode() {
        // `edgetwin convert` flattens `modbus: {slaveID}` and `common.com` / `customizedValues`.
        let config = protocol(json!({
            "slaveID": 1, "serialPort": "/dev/ttyS0", "baudRate": 9600, "dataBits": 8,
            "parity": "even", "stopBits": 1, "serialType": "RS485"
        }))
        .expect("parses");
        assert!(config.unknown_keys().is_empty());
        let settings = config.settings().expect("valid");
        assert_eq!(
            settings.link,
            LinkSettings::Rtu(SerialSettings {
                path: "/dev/ttyS0".into(),
                baud_rate: 9600,
                data_bits: 8,
                parity: Parity::Even,
                stop_bits: 1
            })
        );
    }

    #[test]
    fn v1alpha2_common_settings_map_or_are_ignored_knowingly() {
        let config = protocol(json!({
            "slaveID": 2, "serialPort": "/dev/ttyS1", "commType": "COM", "collectTimeout": 300,
            "collectRetryTimes": 2, "collectType": "sync", "reconnRetryTimes": 3,
            "reconnTimeout": 10
        }))
        .expect("parses");
        assert!(
            config.unknown_keys().is_empty(),
            "{:?}",
            config.unknown_keys()
        );
        let settings = config.settings().expect("valid");
        assert!(matches!(settings.link, LinkSettings::Rtu(_)));
        assert_eq!(settings.timeout, Duration::from_millis(300));
        assert_eq!(settings.retries, 2);
    }

    #[test]
    fn converted_v1alpha2_tcp_protocol_has_a_numeric_port() {
        let settings = protocol(json!({"slaveID": 3, "ip": "192.168.33.1", "port": 502}))
            .expect("parses")
            .settings()
            .expect("valid");
        assert_eq!(
            settings.link,
            LinkSettings::Tcp {
                host: "192.168.33.1".into(),
                port: 502
            }
        );
        assert_eq!(settings.unit, 3);
    }

    #[test]
    fn our_protocol_keys() {
        let settings = protocol(json!({
            "communicateMode": "rtu", "serialPort": "/dev/ttyUSB0", "unitId": "7",
            "parity": "O", "stopBits": 2, "baudRate": "19200", "timeout": 250, "retries": 3,
            "maxGap": 4, "maxReadRegisters": 60, "maxReadBits": 800
        }))
        .expect("parses")
        .settings()
        .expect("valid");
        assert_eq!(settings.unit, 7);
        assert_eq!(settings.timeout, Duration::from_millis(250));
        assert_eq!(settings.retries, 3);
        assert_eq!(
            settings.limits,
            PlanLimits {
                max_registers: 60,
                max_bits: 800,
                max_gap: 4
            }
        );
        let LinkSettings::Rtu(serial) = settings.link else {
            panic!("rtu")
        };
        assert_eq!(
            (serial.baud_rate, serial.parity, serial.stop_bits),
            (19200, Parity::Odd, 2)
        );
    }

    #[test]
    fn a_nanosecond_timeout_is_read_as_nanoseconds() {
        let settings = protocol(json!({"ip": "h", "timeout": 500_000_000u64}))
            .expect("parses")
            .settings()
            .expect("valid");
        assert_eq!(settings.timeout, Duration::from_millis(500));
    }

    #[test]
    fn protocol_errors_name_the_field() {
        let cases = [
            (
                json!({}),
                "ip: missing: set ip (Modbus TCP) or serialPort (Modbus RTU)",
            ),
            (
                json!({"ip": "a", "serialPort": "/dev/x"}),
                "communicateMode: both ip and serialPort are set",
            ),
            (json!({"communicateMode": "TCP"}), "ip: missing"),
            (
                json!({"communicateMode": "RTU", "ip": "a"}),
                "serialPort: missing",
            ),
            (json!({"ip": "a", "port": 0}), "port: 0 is not a TCP port"),
            (
                json!({"serialPort": "/dev/x", "slaveID": 0}),
                "slaveID: 0 is not",
            ),
            (
                json!({"serialPort": "/dev/x", "slaveID": 248}),
                "slaveID: 248 is not",
            ),
            (
                json!({"serialPort": "/dev/x", "dataBits": 9}),
                "dataBits: 9 is not",
            ),
            (
                json!({"serialPort": "/dev/x", "stopBits": 3}),
                "stopBits: 3 is not",
            ),
            (
                json!({"serialPort": "/dev/x", "baudRate": 0}),
                "baudRate: must be",
            ),
            (
                json!({"ip": "a", "timeout": 0}),
                "timeout: must be a positive number of ms",
            ),
            (json!({"ip": "a", "retries": 11}), "retries: 11 is too many"),
            (
                json!({"ip": "a", "maxReadRegisters": 126}),
                "maxReadRegisters: 126 is outside",
            ),
            (
                json!({"ip": "a", "maxReadBits": 0}),
                "maxReadBits: 0 is outside",
            ),
        ];
        for (config, expected) in cases {
            let err = protocol(config.clone())
                .expect("parses")
                .settings()
                .expect_err("invalid");
            assert!(
                err.to_string().starts_with(expected),
                "{config}: {err} does not start with {expected}"
            );
        }
        // TCP allows unit 0 and 255 (gateways and devices that ignore the unit id).
        assert!(
            protocol(json!({"ip": "a", "slaveID": 0}))
                .expect("parses")
                .settings()
                .is_ok()
        );
    }

    #[test]
    fn bad_values_fail_to_parse_with_the_reason() {
        let cases = [
            (
                json!({"communicateMode": "UDP"}),
                "\"UDP\" is not a Modbus mode",
            ),
            (json!({"parity": "mark"}), "\"mark\" is not a parity"),
            (json!({"port": "http"}), "\"http\" is not a number in range"),
            (json!({"port": 70000}), "70000 is not a number in range"),
            (json!({"slaveID": {"x": 1}}), "is not a number in range"),
        ];
        for (config, expected) in cases {
            let err = protocol(config).expect_err("invalid");
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_listed_and_kubeedge_extras_are_not() {
        let config = protocol(json!({"ip": "a", "slaveId": 2, "prot": 1, "serialType": "RS485"}))
            .expect("parses");
        assert_eq!(config.unknown_keys(), ["prot"]);
        let visitor = visitor(
            json!({"register": "HoldingRegister", "offset": 0, "max": 100.0,
                                     "min": 1.0, "isswap": true}),
        );
        assert_eq!(visitor.unknown_keys(), ["isswap"]);
    }

    #[test]
    fn the_kubeedge_v1beta1_temperature_sample() {
        // float over one holding register with scale 0.1: the raw register, scaled.
        let temperature = field(
            json!({"dataType": "float", "register": "HoldingRegister", "offset": 0, "limit": 1,
                   "scale": 0.1, "isSwap": false, "isRegisterSwap": false, "max": 100.0,
                   "min": 1.0}),
            PropertyType::Float,
        )
        .expect("valid");
        assert_eq!(temperature.table, Table::HoldingRegisters);
        assert_eq!(temperature.data_type, DataType::Uint16);
        assert_eq!(temperature.count, 1);
        assert_eq!(temperature.transform.scale, 0.1);
        // int over one coil.
        let switch = field(
            json!({"dataType": "int", "register": "CoilRegister", "offset": 0, "limit": 1,
                   "scale": 1, "isSwap": false, "isRegisterSwap": false}),
            PropertyType::Int,
        )
        .expect("valid");
        assert_eq!(
            (switch.table, switch.data_type, switch.count),
            (Table::Coils, DataType::Bits, 1)
        );
    }

    #[test]
    fn converted_v1alpha2_visitors_take_the_type_from_the_property() {
        let enable = field(
            json!({"register": "DiscreteInputRegister", "offset": 3, "limit": 1, "scale": 1.0,
                   "isSwap": true, "isRegisterSwap": true}),
            PropertyType::Int,
        )
        .expect("valid");
        assert_eq!(enable.table, Table::DiscreteInputs);
        assert_eq!(enable.order, ByteOrder::Dcba);
        let counter = field(
            json!({"register": "HoldingRegister", "offset": 0, "limit": 2}),
            PropertyType::Int,
        )
        .expect("valid");
        assert_eq!(counter.data_type, DataType::Uint32);
        let level = field(
            json!({"register": "InputRegister", "offset": 0}),
            PropertyType::Double,
        )
        .expect("valid");
        assert_eq!((level.data_type, level.count), (DataType::Float64, 4));
        let flag = field(
            json!({"register": "HoldingRegister", "offset": 9}),
            PropertyType::Boolean,
        )
        .expect("valid");
        assert_eq!(flag.data_type, DataType::Uint16);
    }

    #[test]
    fn explicit_data_types_and_orders() {
        let cases = [
            ("int16", PropertyType::Int, DataType::Int16, 1),
            ("uint16", PropertyType::Int, DataType::Uint16, 1),
            ("int32", PropertyType::Int, DataType::Int32, 2),
            ("uint32", PropertyType::Int, DataType::Uint32, 2),
            ("int64", PropertyType::Int, DataType::Int64, 4),
            ("uint64", PropertyType::Double, DataType::Uint64, 4),
            ("float32", PropertyType::Float, DataType::Float32, 2),
            ("float64", PropertyType::Double, DataType::Float64, 4),
            ("FLOAT32", PropertyType::String, DataType::Float32, 2),
        ];
        for (name, ty, data_type, count) in cases {
            let f = field(
                json!({"register": "holding", "offset": 100, "dataType": name, "byteOrder": "CDAB"}),
                ty,
            )
            .expect(name);
            assert_eq!(
                (f.data_type, f.count, f.order),
                (data_type, count, ByteOrder::Cdab),
                "{name}"
            );
        }
        let bit = field(
            json!({"register": "holding", "offset": 1, "dataType": "bit", "bit": 15}),
            PropertyType::Boolean,
        )
        .expect("valid");
        assert_eq!(bit.data_type, DataType::Bit(15));
        let text = field(
            json!({"register": "input", "offset": 1, "dataType": "string", "limit": 8}),
            PropertyType::String,
        )
        .expect("valid");
        assert_eq!((text.data_type, text.count), (DataType::String, 8));
        let mask = field(
            json!({"register": "coil", "offset": 0, "limit": 16}),
            PropertyType::Int,
        )
        .expect("valid");
        assert_eq!((mask.data_type, mask.count), (DataType::Bits, 16));
        let matching = field(
            json!({"register": "holding", "offset": 0, "byteOrder": "BADC", "isSwap": true,
                   "isRegisterSwap": false, "dataType": "int32"}),
            PropertyType::Int,
        )
        .expect("agreeing flags are fine");
        assert_eq!(matching.order, ByteOrder::Badc);
    }

    #[test]
    fn visitor_errors_name_the_field() {
        use PropertyType as P;
        let cases = [
            (json!({"register": "holding"}), P::Int, "offset: missing"),
            (
                json!({"register": "holding", "offset": 0, "limit": 3}),
                P::Int,
                "limit: 3: int spans 1, 2, 4",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "int32", "limit": 1}),
                P::Int,
                "limit: 1 does not match dataType int32 (2 registers)",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "string"}),
                P::String,
                "limit: dataType string needs limit",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "bit"}),
                P::Boolean,
                "bit: missing",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "bit", "bit": 16}),
                P::Boolean,
                "bit: 16 is not a bit",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "int16", "bit": 1}),
                P::Int,
                "bit: only used with dataType bit",
            ),
            (
                json!({"register": "coil", "offset": 0, "dataType": "float32"}),
                P::Float,
                "dataType: float32 needs registers",
            ),
            (
                json!({"register": "coil", "offset": 0, "limit": 2}),
                P::Boolean,
                "limit: 2: a boolean is one coil",
            ),
            (
                json!({"register": "coil", "offset": 0, "limit": 65}),
                P::Int,
                "limit: 65: a property spans 1 to 64",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "string", "limit": 2}),
                P::Int,
                "dataType: string cannot feed a INT property",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "int16"}),
                P::Bytes,
                "dataType: int16 cannot feed a BYTES property",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "string", "limit": 126}),
                P::String,
                "limit: 126 holding registers do not fit one read request (at most 125)",
            ),
            (
                json!({"register": "holding", "offset": 65535, "dataType": "int32"}),
                P::Int,
                "limit: offset 65535 + limit 2 runs past the last address",
            ),
            (
                json!({"register": "holding", "offset": 0, "scale": 0}),
                P::Int,
                "scale: 0: must be a finite number other than 0",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "string", "limit": 1, "scale": 2}),
                P::String,
                "scale: applies to numbers",
            ),
            (
                json!({"register": "holding", "offset": 0, "valueOffset": 1}),
                P::Boolean,
                "valueOffset: makes no sense for a BOOLEAN",
            ),
            (
                json!({"register": "holding", "offset": 0, "byteOrder": "ABCD", "isSwap": true}),
                P::Int,
                "byteOrder: ABCD contradicts isSwap/isRegisterSwap (which mean BADC)",
            ),
        ];
        for (config, ty, expected) in cases {
            let err = field(config.clone(), ty).expect_err("invalid");
            assert!(
                err.to_string().starts_with(expected),
                "{config}: {err:?} does not start with {expected:?}"
            );
        }
    }

    #[test]
    fn visitor_parse_errors() {
        let bad = [
            (json!({"offset": 0}), "missing field `register`"),
            (
                json!({"register": "Holding Registers!", "offset": 0}),
                "is not a Modbus table",
            ),
            (
                json!({"register": "holding", "offset": -1}),
                "-1 is not a number in range",
            ),
            (
                json!({"register": "holding", "offset": 0, "dataType": "real"}),
                "\"real\" is not a data type",
            ),
            (
                json!({"register": "holding", "offset": 0, "byteOrder": "ABDC"}),
                "is not a byte order",
            ),
            (
                json!({"register": "holding", "offset": 0, "isSwap": "yes"}),
                "is not true or false",
            ),
        ];
        for (config, expected) in bad {
            let err = serde_json::from_value::<VisitorConfig>(config).expect_err("invalid");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
