//! Typed property values.
//!
//! On the KubeEdge wire every twin value is a string; the DeviceModel gives each property a type
//! (`INT`, `FLOAT`, `DOUBLE`, `STRING`, `BOOLEAN`, `BYTES`, `STREAM`). [`PropertyType::parse`] turns a
//! wire string into a typed [`Value`] and [`Value::to_wire`] turns it back.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The type of a DeviceModel property (`spec.properties[].type`), as KubeEdge v1beta1 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PropertyType {
    /// 64-bit signed integer.
    Int,
    /// Floating point (stored as f64; KubeEdge's FLOAT is Go's float32 semantics, we are wider).
    Float,
    /// 64-bit floating point.
    Double,
    /// Any UTF-8 string (bounded by the configured twin value size).
    String,
    /// `true` / `false`.
    Boolean,
    /// Opaque bytes, base64 on the wire.
    Bytes,
    /// A media stream reference (KubeEdge ≥ 1.17); carried as a string.
    Stream,
}

/// A typed property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An `INT` value.
    Int(i64),
    /// A `FLOAT` or `DOUBLE` value.
    Float(f64),
    /// A `STRING` or `STREAM` value.
    String(String),
    /// A `BOOLEAN` value.
    Boolean(bool),
    /// A `BYTES` value.
    Bytes(Vec<u8>),
}

/// Why a wire string is not a valid value of a property type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The string does not parse as the property's type.
    #[error("the value {value:?} is not {expected}")]
    WrongType {
        /// The offending wire value.
        value: String,
        /// What was expected, e.g. "int or integer".
        expected: &'static str,
    },
}

impl PropertyType {
    /// Parses a wire string into a value of this type.
    pub fn parse(self, wire: &str) -> Result<Value, ValueError> {
        let wrong = |expected| ValueError::WrongType {
            value: wire.to_owned(),
            expected,
        };
        match self {
            PropertyType::Int => wire
                .trim()
                .parse()
                .map(Value::Int)
                .map_err(|_| wrong("int or integer")),
            PropertyType::Float | PropertyType::Double => wire
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::Float)
                .ok_or_else(|| wrong("float")),
            PropertyType::Boolean => match wire.trim() {
                "true" | "TRUE" | "True" => Ok(Value::Boolean(true)),
                "false" | "FALSE" | "False" => Ok(Value::Boolean(false)),
                _ => Err(wrong("bool")),
            },
            PropertyType::String | PropertyType::Stream => Ok(Value::String(wire.to_owned())),
            PropertyType::Bytes => Ok(Value::Bytes(wire.as_bytes().to_vec())),
        }
    }

    /// The lower-case type name KubeEdge writes into twin `metadata.type` (`int`, `float`, …).
    pub fn twin_type_name(self) -> &'static str {
        match self {
            PropertyType::Int => "int",
            PropertyType::Float => "float",
            PropertyType::Double => "double",
            PropertyType::String => "string",
            PropertyType::Boolean => "boolean",
            PropertyType::Bytes => "bytes",
            PropertyType::Stream => "stream",
        }
    }
}

impl Value {
    /// The wire (string) form of this value, as it appears in twin messages.
    pub fn to_wire(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => f.write_str(s),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type_and_rejects_wrong_ones() {
        assert_eq!(PropertyType::Int.parse("42"), Ok(Value::Int(42)));
        assert!(PropertyType::Int.parse("4.2").is_err());
        assert_eq!(PropertyType::Float.parse("23.5"), Ok(Value::Float(23.5)));
        assert!(PropertyType::Double.parse("NaN").is_err());
        assert_eq!(
            PropertyType::Boolean.parse("true"),
            Ok(Value::Boolean(true))
        );
        assert!(PropertyType::Boolean.parse("ON").is_err());
        assert_eq!(
            PropertyType::String.parse("ON"),
            Ok(Value::String("ON".into()))
        );
    }

    #[test]
    fn wire_form_round_trips() {
        for (t, s) in [
            (PropertyType::Int, "-7"),
            (PropertyType::Float, "0.5"),
            (PropertyType::Boolean, "false"),
        ] {
            assert_eq!(t.parse(s).map(|v| v.to_wire()), Ok(s.to_owned()));
        }
    }
}
