//! Characteristic values ⇄ property values (pure).
//!
//! A [`Codec`] is built per property from its visitor configuration. Reading, in this order:
//!
//! 1. `dataWrite` backwards: bytes equal to one of its entries read as that entry's key
//!    (`[1]` → `ON`), when the key is a value of the property's type;
//! 2. KubeEdge's `dataConverter` ([`converter`]);
//! 3. a typed decoding ([`Typed`]: `dataType`, `byteOrder`, `offset`, `length`), explicit or
//!    implied by the property type ([`Codec::natural`]).
//!
//! Writing: `dataWrite` (the value's wire form is the key), else the typed encoding. A
//! `dataConverter` alone describes reads only. A `dataWrite` none of whose keys is a value of
//! the property's type is left out both ways.

pub mod converter;
pub mod number;

use std::fmt;

use edgetwin_sdk::{PropertyType, Value};

use self::converter::Converter;
use self::number::{ByteOrder, MEDFLOAT32, NumberError, SFLOAT};

/// How the bytes at `offset` encode a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// An unsigned integer of 1 to 8 bytes.
    Uint(usize),
    /// A two's-complement integer of 1 to 8 bytes.
    Int(usize),
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// IEEE 11073-20601 16-bit SFLOAT.
    Sfloat,
    /// IEEE 11073-20601 32-bit FLOAT.
    Medfloat32,
    /// UTF-8 text (`length` bytes, default the rest; trailing NULs dropped), parsed as the
    /// property's type.
    Utf8,
    /// The bytes as they are (`length`, default the rest).
    Bytes,
    /// One byte: 0 is false, anything else true.
    Bool,
}

impl DataType {
    /// Parses a `dataType` name, any case: `uint8`…`uint64` (also `uint24`), `int8`…`int64`,
    /// `float32`, `float64`, `sfloat` (`medfloat16`), `medfloat32`, `utf8` (`string`),
    /// `bytes`, `bool` (`boolean`).
    pub fn parse(name: &str) -> Option<DataType> {
        let lower = name.to_ascii_lowercase().replace(['-', '_'], "");
        let width = |digits: &str| match digits {
            "8" => Some(1),
            "16" => Some(2),
            "24" => Some(3),
            "32" => Some(4),
            "64" => Some(8),
            _ => None,
        };
        Some(match lower.as_str() {
            "float32" | "ieee754float32" => DataType::Float32,
            "float64" | "ieee754float64" => DataType::Float64,
            "sfloat" | "medfloat16" | "ieee11073sfloat" => DataType::Sfloat,
            "medfloat32" | "ieee11073float" => DataType::Medfloat32,
            "utf8" | "utf8s" | "string" | "text" => DataType::Utf8,
            "bytes" | "raw" => DataType::Bytes,
            "bool" | "boolean" => DataType::Bool,
            other => {
                if let Some(digits) = other.strip_prefix("uint") {
                    DataType::Uint(width(digits)?)
                } else if let Some(digits) = other.strip_prefix("int") {
                    DataType::Int(width(digits)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// Its size in bytes; `None` for text and bytes (their `length`, or the rest of the value).
    pub fn width(self) -> Option<usize> {
        match self {
            DataType::Uint(w) | DataType::Int(w) => Some(w),
            DataType::Float32 | DataType::Medfloat32 => Some(4),
            DataType::Float64 => Some(8),
            DataType::Sfloat => Some(2),
            DataType::Bool => Some(1),
            DataType::Utf8 | DataType::Bytes => None,
        }
    }

    /// Whether it is a number.
    pub fn is_numeric(self) -> bool {
        !matches!(self, DataType::Utf8 | DataType::Bytes | DataType::Bool)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Uint(w) => write!(f, "uint{}", w * 8),
            DataType::Int(w) => write!(f, "int{}", w * 8),
            DataType::Float32 => f.write_str("float32"),
            DataType::Float64 => f.write_str("float64"),
            DataType::Sfloat => f.write_str("sfloat"),
            DataType::Medfloat32 => f.write_str("medfloat32"),
            DataType::Utf8 => f.write_str("utf8"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::Bool => f.write_str("bool"),
        }
    }
}

/// A typed decoding: `dataType` at byte `offset`, in `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Typed {
    /// The encoding.
    pub data_type: DataType,
    /// Byte order of multi-byte numbers.
    pub order: ByteOrder,
    /// Where the value starts in the characteristic value (on writes: the write offset).
    pub offset: usize,
    /// For text and bytes: how many bytes (default: the rest of the value).
    pub length: Option<usize>,
}

/// `dataWrite`: the bytes written for each value, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataWrite(pub Vec<(String, Vec<u8>)>);

impl DataWrite {
    /// The bytes for a value's wire form: the exact key, else the one key equal to it in any
    /// letter case.
    pub fn bytes_for(&self, wire: &str) -> Option<&[u8]> {
        if let Some((_, bytes)) = self.0.iter().find(|(k, _)| k == wire) {
            return Some(bytes);
        }
        let mut folded = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(wire));
        match (folded.next(), folded.next()) {
            (Some((_, bytes)), None) => Some(bytes),
            _ => None,
        }
    }

    /// The first key whose bytes are `value`.
    pub fn key_for(&self, value: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, bytes)| bytes == value)
            .map(|(k, _)| k.as_str())
    }

    /// `KEY=hex, …` for messages.
    pub fn describe(&self) -> String {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={}", hex(v)))
            .collect();
        entries.join(", ")
    }
}

/// A property's reading and writing rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    /// The property's type.
    pub ty: PropertyType,
    /// `dataWrite`.
    pub data_write: Option<DataWrite>,
    /// KubeEdge's `dataConverter` (reads).
    pub converter: Option<Converter>,
    /// An explicit `dataType` (with `byteOrder`, `offset`, `length`).
    pub typed: Option<Typed>,
}

/// Bytes to write, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The write offset in the characteristic value (0 but for a typed value at an offset).
    pub offset: usize,
}

/// A decoded number before it becomes a property value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Codec {
    /// The decoding a property type implies when no `dataType` is given: INT an unsigned
    /// little-endian integer over the whole value (1–8 bytes), FLOAT and DOUBLE an IEEE 754
    /// float of 4 or 8 bytes, BOOLEAN any byte other than 0, STRING and STREAM UTF-8, BYTES the
    /// bytes as they are.
    pub fn natural(ty: PropertyType, len: usize) -> Result<Typed, String> {
        let data_type = match ty {
            PropertyType::Int => match len {
                1..=8 => DataType::Uint(len),
                0 => return Err("the value is empty".into()),
                n => {
                    return Err(format!(
                        "{n} bytes do not make an INT: set dataType (e.g. uint16) and offset"
                    ));
                }
            },
            PropertyType::Float | PropertyType::Double => match len {
                4 => DataType::Float32,
                8 => DataType::Float64,
                n => {
                    return Err(format!(
                        "{n} byte(s) are no IEEE 754 float: set dataType (e.g. sfloat, int16)"
                    ));
                }
            },
            PropertyType::Boolean => DataType::Bool,
            PropertyType::String | PropertyType::Stream => DataType::Utf8,
            PropertyType::Bytes => DataType::Bytes,
        };
        Ok(Typed {
            data_type,
            order: ByteOrder::Little,
            offset: 0,
            length: None,
        })
    }

    /// The property value of a characteristic value. Errors say what does not fit.
    pub fn decode(&self, value: &[u8]) -> Result<Value, String> {
        if let Some(map) = &self.data_write
            && let Some(key) = map.key_for(value)
            && let Ok(parsed) = self.ty.parse(key)
        {
            return Ok(parsed);
        }
        if let Some(converter) = &self.converter {
            let number = converter.convert(value)?;
            return self.number_value(Number::Float(number));
        }
        let typed = match (&self.typed, &self.data_write) {
            (Some(typed), _) => *typed,
            // Keys that are values of the property's type are all it can read.
            (None, Some(map)) if self.any_key_is_a_value(map) => {
                return Err(format!(
                    "the value {} is none of dataWrite's ({})",
                    hex(value),
                    map.describe()
                ));
            }
            (None, _) => Codec::natural(self.ty, value.len())?,
        };
        self.decode_typed(&typed, value)
    }

    /// Whether `dataWrite` applies: a map none of whose keys is a value of the property's type
    /// (KubeEdge's CC2650 sample maps colour names on an INT) can never match, and is left out.
    fn any_key_is_a_value(&self, map: &DataWrite) -> bool {
        map.0.iter().any(|(key, _)| self.ty.parse(key).is_ok())
    }

    fn decode_typed(&self, typed: &Typed, value: &[u8]) -> Result<Value, String> {
        let rest = value.get(typed.offset..).unwrap_or_default();
        let width = match typed.data_type.width() {
            Some(width) => width,
            None => typed.length.unwrap_or(rest.len()),
        };
        let Some(bytes) = rest.get(..width) else {
            return Err(format!(
                "the value has {} byte(s); {} at offset {} needs {}",
                value.len(),
                typed.data_type,
                typed.offset,
                typed.offset + width
            ));
        };
        let order = typed.order;
        let number = match typed.data_type {
            DataType::Uint(_) => Number::Int(i128::from(number::read_unsigned(bytes, order))),
            DataType::Int(_) => Number::Int(i128::from(number::read_signed(bytes, order))),
            DataType::Float32 => {
                let raw = number::read_unsigned(bytes, order) as u32;
                Number::Float(f64::from(f32::from_bits(raw)))
            }
            DataType::Float64 => Number::Float(f64::from_bits(number::read_unsigned(bytes, order))),
            DataType::Sfloat => {
                Number::Float(SFLOAT.decode(bytes, order).map_err(|e| e.to_string())?)
            }
            DataType::Medfloat32 => {
                Number::Float(MEDFLOAT32.decode(bytes, order).map_err(|e| e.to_string())?)
            }
            DataType::Bool => {
                return match self.ty {
                    PropertyType::Boolean => Ok(Value::Boolean(bytes.iter().any(|b| *b != 0))),
                    _ => self.number_value(Number::Int(i128::from(bytes[0]))),
                };
            }
            DataType::Bytes => return Ok(Value::Bytes(bytes.to_vec())),
            DataType::Utf8 => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| format!("the value {} is not UTF-8: {e}", hex(bytes)))?
                    .trim_end_matches('\0');
                return match self.ty {
                    PropertyType::String | PropertyType::Stream => Ok(Value::String(text.into())),
                    ty => ty.parse(text.trim()).map_err(|e| e.to_string()),
                };
            }
        };
        self.number_value(number)
    }

    /// A number as a value of the property's type: INT rounds to the nearest integer.
    fn number_value(&self, number: Number) -> Result<Value, String> {
        if let Number::Float(f) = number
            && !f.is_finite()
        {
            return Err(format!("{f} is not a finite number"));
        }
        match self.ty {
            PropertyType::Int => {
                let int = match number {
                    Number::Int(i) => i,
                    Number::Float(f) => f.round() as i128,
                };
                i64::try_from(int)
                    .map(Value::Int)
                    .map_err(|_| format!("{int} does not fit an INT"))
            }
            PropertyType::Float | PropertyType::Double => Ok(Value::Float(match number {
                Number::Int(i) => i as f64,
                Number::Float(f) => f,
            })),
            PropertyType::Boolean => Ok(Value::Boolean(match number {
                Number::Int(i) => i != 0,
                Number::Float(f) => f != 0.0,
            })),
            PropertyType::String | PropertyType::Stream => Ok(Value::String(match number {
                Number::Int(i) => i.to_string(),
                Number::Float(f) => f.to_string(),
            })),
            PropertyType::Bytes => Err("a number is no BYTES value: use dataType bytes".into()),
        }
    }

    /// The bytes to write for `value`. `current` is the length of the characteristic's value
    /// when known: a number without `dataType` is written in as many bytes.
    pub fn encode(&self, value: &Value, current: Option<usize>) -> Result<Encoded, String> {
        if let Some(map) = self
            .data_write
            .as_ref()
            .filter(|map| self.any_key_is_a_value(map))
        {
            let wire = value.to_wire();
            return match map.bytes_for(&wire) {
                Some(bytes) => Ok(Encoded {
                    bytes: bytes.to_vec(),
                    offset: 0,
                }),
                None => Err(format!(
                    "{wire:?} is not one of dataWrite's values ({})",
                    map.describe()
                )),
            };
        }
        let typed = match (&self.typed, &self.converter) {
            (Some(typed), _) => *typed,
            (None, Some(_)) => {
                return Err(
                    "dataConverter describes reads only: give dataWrite or dataType for writes"
                        .into(),
                );
            }
            (None, None) => self.natural_for_write(current)?,
        };
        Ok(Encoded {
            bytes: encode_typed(&typed, value)?,
            offset: typed.offset,
        })
    }

    /// The natural encoding of a written value; numbers need the characteristic's width.
    fn natural_for_write(&self, current: Option<usize>) -> Result<Typed, String> {
        match (self.ty, current) {
            (PropertyType::Int | PropertyType::Float | PropertyType::Double, Some(len)) => {
                Codec::natural(self.ty, len)
            }
            (PropertyType::Int | PropertyType::Float | PropertyType::Double, None) => Err(
                "the width of the characteristic's value is unknown (it cannot be read): set dataType"
                    .into(),
            ),
            (ty, _) => Codec::natural(ty, 0),
        }
    }
}

fn encode_typed(typed: &Typed, value: &Value) -> Result<Vec<u8>, String> {
    let order = typed.order;
    match typed.data_type {
        DataType::Utf8 => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_wire(),
            };
            let mut bytes = text.into_bytes();
            if let Some(length) = typed.length {
                if bytes.len() > length {
                    return Err(format!(
                        "{} bytes of text exceed length {length}",
                        bytes.len()
                    ));
                }
                bytes.resize(length, 0);
            }
            Ok(bytes)
        }
        DataType::Bytes => match value {
            Value::Bytes(bytes) => Ok(bytes.clone()),
            Value::String(s) => Ok(s.clone().into_bytes()),
            other => Err(format!("{other} is no BYTES value")),
        },
        DataType::Bool => Ok(vec![u8::from(truthy(value)?)]),
        DataType::Uint(width) => {
            let int = integer(value)?;
            if int < 0 || int as u128 > u128::from(number::unsigned_max(width)) {
                return Err(NumberError::OutOfRange {
                    value: int.to_string(),
                    encoding: name_of(typed.data_type),
                }
                .to_string());
            }
            Ok(number::write_unsigned(int as u64, width, order))
        }
        DataType::Int(width) => {
            let int = integer(value)?;
            let (min, max) = number::signed_range(width);
            if int < i128::from(min) || int > i128::from(max) {
                return Err(NumberError::OutOfRange {
                    value: int.to_string(),
                    encoding: name_of(typed.data_type),
                }
                .to_string());
            }
            Ok(number::write_unsigned(int as i64 as u64, width, order))
        }
        DataType::Float32 => {
            let f = float(value)?;
            if f.abs() > f64::from(f32::MAX) {
                return Err(format!("{f} does not fit float32"));
            }
            Ok(number::write_unsigned(
                u64::from((f as f32).to_bits()),
                4,
                order,
            ))
        }
        DataType::Float64 => Ok(number::write_unsigned(float(value)?.to_bits(), 8, order)),
        DataType::Sfloat => SFLOAT
            .encode(float(value)?, order)
            .map_err(|e| e.to_string()),
        DataType::Medfloat32 => MEDFLOAT32
            .encode(float(value)?, order)
            .map_err(|e| e.to_string()),
    }
}

fn name_of(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Uint(1) => "uint8",
        DataType::Uint(2) => "uint16",
        DataType::Uint(3) => "uint24",
        DataType::Uint(4) => "uint32",
        DataType::Uint(_) => "uint64",
        DataType::Int(1) => "int8",
        DataType::Int(2) => "int16",
        DataType::Int(3) => "int24",
        DataType::Int(4) => "int32",
        DataType::Int(_) => "int64",
        _ => "the data type",
    }
}

fn integer(value: &Value) -> Result<i128, String> {
    match value {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::Boolean(b) => Ok(i128::from(*b)),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 => Ok(*f as i128),
        Value::Float(f) => Err(format!("{f} is not an integer")),
        Value::String(s) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| format!("{s:?} is not an integer")),
        Value::Bytes(_) => Err("BYTES are not an integer".into()),
    }
}

fn float(value: &Value) -> Result<f64, String> {
    let f = match value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Boolean(b) => f64::from(u8::from(*b)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a number"))?,
        Value::Bytes(_) => return Err("BYTES are not a number".into()),
    };
    if f.is_finite() {
        Ok(f)
    } else {
        Err(format!("{f} is not a finite number"))
    }
}

fn truthy(value: &Value) -> Result<bool, String> {
    match value {
        Value::Boolean(b) => Ok(*b),
        Value::Int(i) => Ok(*i != 0),
        Value::Float(f) => Ok(*f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" => Ok(true),
            "false" | "0" | "off" => Ok(false),
            _ => Err(format!("{s:?} is not true or false")),
        },
        Value::Bytes(_) => Err("BYTES are not true or false".into()),
    }
}

/// Bytes as hex, e.g. `0a ff`.
pub fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::converter::{Operation, Shift};
    use super::*;

    fn codec(ty: PropertyType) -> Codec {
        Codec {
            ty,
            data_write: None,
            converter: None,
            typed: None,
        }
    }

    fn typed(ty: PropertyType, data_type: &str, order: ByteOrder, offset: usize) -> Codec {
        Codec {
            typed: Some(Typed {
                data_type: DataType::parse(data_type).expect("a data type"),
                order,
                offset,
                length: None,
            }),
            ..codec(ty)
        }
    }

    fn on_off() -> DataWrite {
        DataWrite(vec![("OFF".into(), vec![0]), ("ON".into(), vec![1])])
    }

    #[test]
    fn data_type_names() {
        assert_eq!(DataType::parse("UINT16"), Some(DataType::Uint(2)));
        assert_eq!(DataType::parse("int24"), Some(DataType::Int(3)));
        assert_eq!(DataType::parse("medfloat16"), Some(DataType::Sfloat));
        assert_eq!(
            DataType::parse("IEEE-11073-FLOAT"),
            Some(DataType::Medfloat32)
        );
        assert_eq!(DataType::parse("string"), Some(DataType::Utf8));
        assert_eq!(DataType::parse("uint12"), None);
        assert_eq!(DataType::parse("decimal"), None);
        assert_eq!(DataType::Uint(3).to_string(), "uint24");
    }

    #[test]
    fn natural_decoding_follows_the_property_type() {
        assert_eq!(
            codec(PropertyType::Int).decode(&[0x34, 0x12]),
            Ok(Value::Int(0x1234))
        );
        assert_eq!(
            codec(PropertyType::Float).decode(&21.5f32.to_le_bytes()),
            Ok(Value::Float(21.5))
        );
        assert_eq!(
            codec(PropertyType::Double).decode(&(-1.25f64).to_le_bytes()),
            Ok(Value::Float(-1.25))
        );
        assert_eq!(
            codec(PropertyType::Boolean).decode(&[2, 0]),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            codec(PropertyType::Boolean).decode(&[0]),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            codec(PropertyType::String).decode(b"SensorTag\0\0"),
            Ok(Value::String("SensorTag".into()))
        );
        assert_eq!(
            codec(PropertyType::Bytes).decode(&[1, 2, 3]),
            Ok(Value::Bytes(vec![1, 2, 3]))
        );
        let err = codec(PropertyType::Float)
            .decode(&[1, 2])
            .expect_err("2 bytes");
        assert!(err.contains("set dataType"), "{err}");
        assert!(codec(PropertyType::Int).decode(&[]).is_err());
        assert!(codec(PropertyType::Int).decode(&[0; 9]).is_err());
        assert!(codec(PropertyType::String).decode(&[0xFF, 0xFE]).is_err());
    }

    #[test]
    fn typed_decoding_at_an_offset() {
        // Heart Rate Measurement: flags byte, then uint8 bpm.
        assert_eq!(
            typed(PropertyType::Int, "uint8", ByteOrder::Little, 1).decode(&[0x00, 72]),
            Ok(Value::Int(72))
        );
        // Temperature Measurement: flags, then a medfloat32.
        assert_eq!(
            typed(PropertyType::Float, "medfloat32", ByteOrder::Little, 1)
                .decode(&[0x00, 0x6C, 0x01, 0x00, 0xFF]),
            Ok(Value::Float(36.4))
        );
        assert_eq!(
            typed(PropertyType::Float, "int16", ByteOrder::Big, 0).decode(&[0xFF, 0x38]),
            Ok(Value::Float(-200.0))
        );
        assert_eq!(
            typed(PropertyType::Float, "sfloat", ByteOrder::Little, 0).decode(&[0x6C, 0xF1]),
            Ok(Value::Float(36.4))
        );
        assert_eq!(
            typed(PropertyType::Int, "utf8", ByteOrder::Little, 0).decode(b" 42 "),
            Ok(Value::Int(42))
        );
        assert_eq!(
            typed(PropertyType::String, "uint16", ByteOrder::Little, 0).decode(&[1, 1]),
            Ok(Value::String("257".into()))
        );
        let short = typed(PropertyType::Int, "uint32", ByteOrder::Little, 1)
            .decode(&[0, 1, 2])
            .expect_err("short");
        assert_eq!(short, "the value has 3 byte(s); uint32 at offset 1 needs 5");
        let nan = typed(PropertyType::Float, "sfloat", ByteOrder::Little, 0)
            .decode(&[0xFF, 0x07])
            .expect_err("NaN");
        assert!(nan.contains("NaN"), "{nan}");
    }

    #[test]
    fn the_converter_rounds_into_an_int_property() {
        let c = Codec {
            converter: Some(
                Converter::new(
                    1,
                    0,
                    Shift::Right(2),
                    vec![Operation::new("Multiply", 0.03125).expect("valid")],
                )
                .expect("valid"),
            ),
            ..codec(PropertyType::Int)
        };
        // 0x0CD0 >> 2 = 820, × 0.03125 = 25.625 → 26.
        assert_eq!(c.decode(&[0xD0, 0x0C]), Ok(Value::Int(26)));
        let as_float = Codec {
            ty: PropertyType::Float,
            ..c.clone()
        };
        assert_eq!(as_float.decode(&[0xD0, 0x0C]), Ok(Value::Float(25.625)));
        let err = c.encode(&Value::Int(3), Some(2)).expect_err("reads only");
        assert!(err.contains("reads only"), "{err}");
    }

    #[test]
    fn data_write_maps_both_ways() {
        let c = Codec {
            data_write: Some(on_off()),
            ..codec(PropertyType::String)
        };
        assert_eq!(c.decode(&[1]), Ok(Value::String("ON".into())));
        assert_eq!(c.decode(&[0]), Ok(Value::String("OFF".into())));
        assert_eq!(
            c.decode(&[3]),
            Err("the value 03 is none of dataWrite's (OFF=00, ON=01)".into())
        );
        let on = c.encode(&Value::String("ON".into()), None).expect("a key");
        assert_eq!(
            on,
            Encoded {
                bytes: vec![1],
                offset: 0
            }
        );
        assert_eq!(
            c.encode(&Value::String("on".into()), None).map(|e| e.bytes),
            Ok(vec![1])
        );
        assert_eq!(
            c.encode(&Value::String("DIM".into()), None),
            Err("\"DIM\" is not one of dataWrite's values (OFF=00, ON=01)".into())
        );
        // Keys that are not values of the type are never read back; the bytes decode by type
        // (KubeEdge's CC2650 sample maps colour names on an INT property).
        let colours = Codec {
            data_write: Some(DataWrite(vec![
                ("Red".into(), vec![1]),
                ("Green".into(), vec![2]),
            ])),
            ..codec(PropertyType::Int)
        };
        assert_eq!(colours.decode(&[2]), Ok(Value::Int(2)));
        assert_eq!(colours.decode(&[9]), Ok(Value::Int(9)));
        assert_eq!(
            colours.encode(&Value::Int(3), Some(1)).map(|e| e.bytes),
            Ok(vec![3])
        );
    }

    #[test]
    fn typed_and_natural_encoding() {
        let u16le = typed(PropertyType::Int, "uint16", ByteOrder::Little, 0);
        assert_eq!(
            u16le.encode(&Value::Int(0x1234), None).map(|e| e.bytes),
            Ok(vec![0x34, 0x12])
        );
        assert_eq!(
            u16le.encode(&Value::Int(70000), None),
            Err("70000 does not fit uint16".into())
        );
        assert!(u16le.encode(&Value::Int(-1), None).is_err());
        let i8 = typed(PropertyType::Int, "int8", ByteOrder::Little, 2);
        assert_eq!(
            i8.encode(&Value::Int(-2), None),
            Ok(Encoded {
                bytes: vec![0xFE],
                offset: 2
            })
        );
        assert!(i8.encode(&Value::Int(128), None).is_err());
        let sfloat = typed(PropertyType::Float, "sfloat", ByteOrder::Little, 0);
        assert_eq!(
            sfloat.encode(&Value::Float(36.4), None).map(|e| e.bytes),
            Ok(vec![0x6C, 0xF1])
        );
        let f32be = typed(PropertyType::Float, "float32", ByteOrder::Big, 0);
        assert_eq!(
            f32be.encode(&Value::Float(1.5), None).map(|e| e.bytes),
            Ok(1.5f32.to_be_bytes().to_vec())
        );
        assert!(
            typed(PropertyType::Int, "uint8", ByteOrder::Little, 0)
                .encode(&Value::Float(2.5), None)
                .is_err()
        );
        // Without dataType a number takes the characteristic's width.
        let int = codec(PropertyType::Int);
        assert_eq!(
            int.encode(&Value::Int(7), Some(1)).map(|e| e.bytes),
            Ok(vec![7])
        );
        assert_eq!(
            int.encode(&Value::Int(7), Some(2)).map(|e| e.bytes),
            Ok(vec![7, 0])
        );
        assert!(int.encode(&Value::Int(7), None).is_err());
        assert_eq!(
            codec(PropertyType::Boolean)
                .encode(&Value::Boolean(true), None)
                .map(|e| e.bytes),
            Ok(vec![1])
        );
        assert_eq!(
            codec(PropertyType::String)
                .encode(&Value::String("hi".into()), None)
                .map(|e| e.bytes),
            Ok(b"hi".to_vec())
        );
        let padded = Codec {
            typed: Some(Typed {
                data_type: DataType::Utf8,
                order: ByteOrder::Little,
                offset: 0,
                length: Some(4),
            }),
            ..codec(PropertyType::String)
        };
        assert_eq!(
            padded
                .encode(&Value::String("ab".into()), None)
                .map(|e| e.bytes),
            Ok(b"ab\0\0".to_vec())
        );
        assert!(padded.encode(&Value::String("abcde".into()), None).is_err());
    }

    #[test]
    fn round_trips_through_every_numeric_type() {
        for (name, ty, value) in [
            ("uint8", PropertyType::Int, Value::Int(200)),
            ("int16", PropertyType::Int, Value::Int(-300)),
            ("uint24", PropertyType::Int, Value::Int(0xABCDEF)),
            ("int32", PropertyType::Int, Value::Int(-70000)),
            ("int64", PropertyType::Int, Value::Int(i64::MIN)),
            ("uint64", PropertyType::Int, Value::Int(i64::MAX)),
            ("float32", PropertyType::Float, Value::Float(0.25)),
            ("float64", PropertyType::Double, Value::Float(1e-300)),
            ("sfloat", PropertyType::Float, Value::Float(-12.5)),
            ("medfloat32", PropertyType::Double, Value::Float(1013.25)),
            ("bool", PropertyType::Boolean, Value::Boolean(true)),
            ("utf8", PropertyType::String, Value::String("héllo".into())),
            ("bytes", PropertyType::Bytes, Value::Bytes(vec![0, 255])),
        ] {
            for order in [ByteOrder::Little, ByteOrder::Big] {
                let c = typed(ty, name, order, 0);
                let encoded = c
                    .encode(&value, None)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    c.decode(&encoded.bytes),
                    Ok(value.clone()),
                    "{name} {order}"
                );
            }
        }
    }

    #[test]
    fn hex_formatting() {
        assert_eq!(hex(&[0x0a, 0xff]), "0a ff");
        assert_eq!(hex(&[]), "(empty)");
    }
}
