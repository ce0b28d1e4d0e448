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

/// Why a wire string is not a valid value of a DeviceModel property.
///
/// The messages do not name the property; callers that know it put it in front.
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
    /// The value is smaller than the model's `minimum`.
    #[error("the value {value} is below the minimum {minimum}")]
    BelowMinimum {
        /// The offending wire value.
        value: String,
        /// The model's `minimum`, as written in the model.
        minimum: String,
    },
    /// The value is larger than the model's `maximum`.
    #[error("the value {value} is above the maximum {maximum}")]
    AboveMaximum {
        /// The offending wire value.
        value: String,
        /// The model's `maximum`, as written in the model.
        maximum: String,
    },
    /// The model's `minimum` or `maximum` is not a number, so no value can be checked against it.
    #[error("the model's {which} {limit:?} is not a number")]
    InvalidLimit {
        /// `"minimum"` or `"maximum"`.
        which: &'static str,
        /// The limit as written in the model.
        limit: String,
    },
    /// The property is `accessMode: ReadOnly`: it is reported by the device, never desired.
    #[error("the property is ReadOnly: it cannot take a desired value")]
    ReadOnly,
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

    /// Whether `minimum`/`maximum` apply to this type (INT, FLOAT, DOUBLE). For the other types
    /// KubeEdge's model allows the fields but gives them no meaning; edgetwin ignores them.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            PropertyType::Int | PropertyType::Float | PropertyType::Double
        )
    }
}

/// The inclusive numeric limits of a property, parsed from the model's `minimum` / `maximum`
/// strings (KubeEdge writes them as strings, e.g. `"0"`, `"100.0"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    minimum: Option<Limit>,
    maximum: Option<Limit>,
}

/// One limit: its numeric value and its text as written in the model (for messages).
#[derive(Debug, Clone, PartialEq)]
struct Limit {
    number: f64,
    text: String,
}

impl Limits {
    /// Parses the limits of a property of type `ty`. Limits of non-numeric types are ignored.
    pub fn parse(
        ty: PropertyType,
        minimum: Option<&str>,
        maximum: Option<&str>,
    ) -> Result<Limits, ValueError> {
        if !ty.is_numeric() {
            return Ok(Limits::default());
        }
        Ok(Limits {
            minimum: minimum.map(|m| Limit::parse("minimum", m)).transpose()?,
            maximum: maximum.map(|m| Limit::parse("maximum", m)).transpose()?,
        })
    }

    /// The inclusive lower limit, if any.
    pub fn minimum(&self) -> Option<f64> {
        self.minimum.as_ref().map(|l| l.number)
    }

    /// The inclusive upper limit, if any.
    pub fn maximum(&self) -> Option<f64> {
        self.maximum.as_ref().map(|l| l.number)
    }

    /// Whether the minimum is larger than the maximum (no value can satisfy both).
    pub fn is_empty_range(&self) -> bool {
        match (&self.minimum, &self.maximum) {
            (Some(min), Some(max)) => min.number > max.number,
            _ => false,
        }
    }

    /// Checks a value against the limits. Non-numeric values always pass.
    pub fn check(&self, value: &Value) -> Result<(), ValueError> {
        let number = match value {
            // Precision loss above 2^53 only matters for limits that large; none are in practice.
            Value::Int(i) => *i as f64,
            Value::Float(x) => *x,
            Value::String(_) | Value::Boolean(_) | Value::Bytes(_) => return Ok(()),
        };
        if let Some(min) = &self.minimum
            && number < min.number
        {
            return Err(ValueError::BelowMinimum {
                value: value.to_wire(),
                minimum: min.text.clone(),
            });
        }
        if let Some(max) = &self.maximum
            && number > max.number
        {
            return Err(ValueError::AboveMaximum {
                value: value.to_wire(),
                maximum: max.text.clone(),
            });
        }
        Ok(())
    }
}

impl Limit {
    fn parse(which: &'static str, text: &str) -> Result<Limit, ValueError> {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|number| Limit {
                number,
                text: text.trim().to_owned(),
            })
            .ok_or_else(|| ValueError::InvalidLimit {
                which,
                limit: text.to_owned(),
            })
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

    #[test]
    fn limits_are_inclusive_and_name_the_limit() {
        let limits =
            Limits::parse(PropertyType::Float, Some("0"), Some("100.0")).expect("valid limits");
        assert_eq!(
            (limits.minimum(), limits.maximum()),
            (Some(0.0), Some(100.0))
        );
        assert_eq!(limits.check(&Value::Float(0.0)), Ok(()));
        assert_eq!(limits.check(&Value::Float(100.0)), Ok(()));
        let above = limits.check(&Value::Float(100.5)).expect_err("above");
        assert_eq!(
            above.to_string(),
            "the value 100.5 is above the maximum 100.0"
        );
        let below = limits.check(&Value::Float(-0.1)).expect_err("below");
        assert_eq!(below.to_string(), "the value -0.1 is below the minimum 0");
    }

    #[test]
    fn int_values_compare_against_fractional_limits() {
        let limits = Limits::parse(PropertyType::Int, Some("1.5"), None).expect("valid limits");
        assert!(limits.check(&Value::Int(1)).is_err());
        assert_eq!(limits.check(&Value::Int(2)), Ok(()));
    }

    #[test]
    fn bad_limits_are_reported_and_non_numeric_types_ignore_limits() {
        assert_eq!(
            Limits::parse(PropertyType::Int, Some("ten"), None),
            Err(ValueError::InvalidLimit {
                which: "minimum",
                limit: "ten".into()
            })
        );
        let limits = Limits::parse(PropertyType::String, Some("ten"), Some("x")).expect("ignored");
        assert_eq!(limits, Limits::default());
        assert!(!limits.is_empty_range());
        assert!(
            Limits::parse(PropertyType::Double, Some("5"), Some("1"))
                .expect("parses")
                .is_empty_range()
        );
    }
}
