//! Raw device values ⇄ typed property values, through scale and offset.
//!
//! Reading: `value = raw × scale + offset`, then converted to the DeviceModel type of the
//! property. Writing inverts it: `raw = (value − offset) / scale`, rounded to the nearest
//! integer for integer registers. With `scale: 1, offset: 0` integers are exact over the whole
//! 64-bit range. An INT property whose scaled value has a fraction is truncated toward zero, as
//! KubeEdge's Modbus mapper does (`int64(raw * scale)`), except that values within 10⁻⁹ of an
//! integer snap to it, so that `30 × 0.1` reads as 3, not 2.

use edgetwin_sdk::{PropertyType, Value};

use super::CodecError;
use super::number::{DataType, Raw};

/// Scale and offset of a numeric property.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Multiplies the raw value (never 0).
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
}

impl Default for Transform {
    fn default() -> Self {
        Transform::IDENTITY
    }
}

impl Transform {
    /// No scaling.
    pub const IDENTITY: Transform = Transform {
        scale: 1.0,
        offset: 0.0,
    };

    /// Whether this transform changes nothing.
    pub fn is_identity(&self) -> bool {
        self.scale == 1.0 && self.offset == 0.0
    }

    fn apply(&self, raw: f64) -> f64 {
        raw * self.scale + self.offset
    }

    fn invert(&self, value: f64) -> f64 {
        (value - self.offset) / self.scale
    }
}

/// A number on its way between the device and the twin.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i128),
    Float(f64),
}

/// The property value of a raw device value.
pub fn to_value(raw: Raw, transform: Transform, ty: PropertyType) -> Result<Value, CodecError> {
    let number = match raw {
        Raw::Text(text) => {
            return match ty {
                PropertyType::String | PropertyType::Stream => Ok(Value::String(text)),
                PropertyType::Bytes => Ok(Value::Bytes(text.into_bytes())),
                _ => Err(CodecError::Mismatch(format!(
                    "text cannot be read as a {ty:?} property"
                ))),
            };
        }
        Raw::Bytes(bytes) => {
            return match ty {
                PropertyType::Bytes => Ok(Value::Bytes(bytes)),
                PropertyType::String | PropertyType::Stream => String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|e| CodecError::NotUtf8(e.utf8_error().to_string())),
                _ => Err(CodecError::Mismatch(format!(
                    "bytes cannot be read as a {ty:?} property"
                ))),
            };
        }
        Raw::Bool(on) if transform.is_identity() && ty == PropertyType::Boolean => {
            return Ok(Value::Boolean(on));
        }
        Raw::Bool(on) => scaled(Number::Int(on.into()), transform),
        Raw::Int(i) => scaled(Number::Int(i), transform),
        Raw::Float(x) => scaled(Number::Float(x), transform),
    };
    match (ty, number) {
        (PropertyType::Int, Number::Int(i)) => {
            i64::try_from(i)
                .map(Value::Int)
                .map_err(|_| CodecError::OutOfRange {
                    value: i.to_string(),
                    target: "an INT property (64-bit signed)".into(),
                })
        }
        (PropertyType::Int, Number::Float(x)) => float_to_int(x).map(Value::Int),
        (PropertyType::Float | PropertyType::Double, number) => {
            let x = as_f64(number);
            if x.is_finite() {
                Ok(Value::Float(x))
            } else {
                Err(CodecError::NotFinite(x.to_string()))
            }
        }
        (PropertyType::Boolean, number) => Ok(Value::Boolean(as_f64(number) != 0.0)),
        (PropertyType::String | PropertyType::Stream, Number::Int(i)) => {
            Ok(Value::String(i.to_string()))
        }
        (PropertyType::String | PropertyType::Stream, Number::Float(x)) => {
            Ok(Value::String(x.to_string()))
        }
        (PropertyType::Bytes, _) => Err(CodecError::Mismatch(
            "a number cannot be read as a BYTES property".into(),
        )),
    }
}

/// The raw device value to write for a property value, for a register or coil of `data_type`.
pub fn to_raw(value: &Value, transform: Transform, data_type: DataType) -> Result<Raw, CodecError> {
    if !data_type.is_numeric() {
        return Ok(match value {
            Value::String(text) => Raw::Text(text.clone()),
            Value::Bytes(bytes) => Raw::Bytes(bytes.clone()),
            other => Raw::Text(other.to_wire()),
        });
    }
    let number = match value {
        Value::Int(i) => Number::Int((*i).into()),
        Value::Float(x) => Number::Float(*x),
        Value::Boolean(on) => Number::Int((*on).into()),
        Value::String(text) => parse_number(text)?,
        Value::Bytes(_) => {
            return Err(CodecError::Mismatch(format!(
                "bytes cannot be written as {data_type}"
            )));
        }
    };
    Ok(match (number, transform.is_identity()) {
        (Number::Int(i), true) => Raw::Int(i),
        (number, true) => Raw::Float(as_f64(number)),
        (number, false) => Raw::Float(transform.invert(as_f64(number))),
    })
}

fn scaled(number: Number, transform: Transform) -> Number {
    if transform.is_identity() {
        number
    } else {
        Number::Float(transform.apply(as_f64(number)))
    }
}

fn as_f64(number: Number) -> f64 {
    match number {
        Number::Int(i) => i as f64,
        Number::Float(x) => x,
    }
}

/// Truncates toward zero (KubeEdge), snapping values within 10⁻⁹ (relative) of an integer.
fn float_to_int(x: f64) -> Result<i64, CodecError> {
    if !x.is_finite() {
        return Err(CodecError::NotFinite(x.to_string()));
    }
    let nearest = x.round();
    let snapped = if (x - nearest).abs() <= 1e-9 * nearest.abs().max(1.0) {
        nearest
    } else {
        x.trunc()
    };
    // i64::MAX as f64 rounds up to 2^63, which does not fit.
    if snapped >= -(2f64.powi(63)) && snapped < 2f64.powi(63) {
        Ok(snapped as i64)
    } else {
        Err(CodecError::OutOfRange {
            value: x.to_string(),
            target: "an INT property (64-bit signed)".into(),
        })
    }
}

fn parse_number(text: &str) -> Result<Number, CodecError> {
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i128>() {
        return Ok(Number::Int(i));
    }
    trimmed
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(Number::Float)
        .ok_or_else(|| CodecError::NotANumber(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn scale(scale: f64) -> Transform {
        Transform { scale, offset: 0.0 }
    }

    #[test]
    fn kubeedge_truncates_scaled_ints_but_exact_products_survive() {
        assert_eq!(
            to_value(Raw::Int(235), scale(0.1), PropertyType::Int),
            Ok(Value::Int(23))
        );
        assert_eq!(
            to_value(Raw::Int(30), scale(0.1), PropertyType::Int),
            Ok(Value::Int(3))
        );
        assert_eq!(
            to_value(Raw::Int(-235), scale(0.1), PropertyType::Int),
            Ok(Value::Int(-23))
        );
        assert_eq!(
            to_value(Raw::Int(235), scale(0.1), PropertyType::Float),
            Ok(Value::Float(23.5))
        );
    }

    #[test]
    fn scale_and_offset_apply_on_read_and_invert_on_write() {
        let t = Transform {
            scale: 0.5,
            offset: -40.0,
        };
        assert_eq!(
            to_value(Raw::Int(130), t, PropertyType::Double),
            Ok(Value::Float(25.0))
        );
        assert_eq!(
            to_raw(&Value::Float(25.0), t, DataType::Uint16),
            Ok(Raw::Float(130.0))
        );
        assert_eq!(
            to_raw(&Value::Int(25), t, DataType::Uint16),
            Ok(Raw::Float(130.0))
        );
    }

    #[test]
    fn identity_integers_are_exact_over_64_bits() {
        assert_eq!(
            to_value(
                Raw::Int(i64::MIN.into()),
                Transform::IDENTITY,
                PropertyType::Int
            ),
            Ok(Value::Int(i64::MIN))
        );
        assert_eq!(
            to_raw(&Value::Int(i64::MAX), Transform::IDENTITY, DataType::Int64),
            Ok(Raw::Int(i64::MAX.into()))
        );
        let err = to_value(
            Raw::Int(u64::MAX.into()),
            Transform::IDENTITY,
            PropertyType::Int,
        )
        .expect_err("too big for INT");
        assert!(err.to_string().contains("18446744073709551615"), "{err}");
        // A DOUBLE property can still show it.
        assert!(
            to_value(
                Raw::Int(u64::MAX.into()),
                Transform::IDENTITY,
                PropertyType::Double
            )
            .is_ok()
        );
    }

    #[test]
    fn every_property_type_reads_numbers_and_bits() {
        let id = Transform::IDENTITY;
        assert_eq!(
            to_value(Raw::Bool(true), id, PropertyType::Boolean),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            to_value(Raw::Bool(true), id, PropertyType::Int),
            Ok(Value::Int(1))
        );
        assert_eq!(
            to_value(Raw::Bool(false), id, PropertyType::Float),
            Ok(Value::Float(0.0))
        );
        assert_eq!(
            to_value(Raw::Int(7), id, PropertyType::Boolean),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            to_value(Raw::Int(0), id, PropertyType::Boolean),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            to_value(Raw::Int(7), id, PropertyType::String),
            Ok(Value::String("7".into()))
        );
        assert_eq!(
            to_value(Raw::Float(21.5), id, PropertyType::Stream),
            Ok(Value::String("21.5".into()))
        );
        assert_eq!(
            to_value(Raw::Float(21.9), id, PropertyType::Int),
            Ok(Value::Int(21))
        );
        assert_eq!(
            to_value(Raw::Text("on".into()), id, PropertyType::String),
            Ok(Value::String("on".into()))
        );
        assert_eq!(
            to_value(Raw::Bytes(vec![1, 2]), id, PropertyType::Bytes),
            Ok(Value::Bytes(vec![1, 2]))
        );
        assert!(to_value(Raw::Text("on".into()), id, PropertyType::Int).is_err());
        assert!(to_value(Raw::Int(1), id, PropertyType::Bytes).is_err());
        assert!(to_value(Raw::Float(f64::NAN), id, PropertyType::Float).is_err());
        assert!(to_value(Raw::Float(f64::INFINITY), id, PropertyType::Int).is_err());
        assert!(to_value(Raw::Float(1e30), id, PropertyType::Int).is_err());
    }

    #[test]
    fn writes_accept_every_value_kind_that_is_a_number() {
        let id = Transform::IDENTITY;
        assert_eq!(
            to_raw(&Value::Boolean(true), id, DataType::Bits),
            Ok(Raw::Int(1))
        );
        assert_eq!(
            to_raw(&Value::String(" 42 ".into()), id, DataType::Int16),
            Ok(Raw::Int(42))
        );
        assert_eq!(
            to_raw(&Value::String("4.5".into()), id, DataType::Float32),
            Ok(Raw::Float(4.5))
        );
        assert_eq!(
            to_raw(&Value::String("warm".into()), id, DataType::Int16),
            Err(CodecError::NotANumber("warm".into()))
        );
        assert!(to_raw(&Value::Bytes(vec![1]), id, DataType::Int16).is_err());
        assert_eq!(
            to_raw(&Value::Int(5), id, DataType::String),
            Ok(Raw::Text("5".into()))
        );
        assert_eq!(
            to_raw(&Value::Bytes(vec![5]), id, DataType::Bytes),
            Ok(Raw::Bytes(vec![5]))
        );
    }

    proptest! {
        #[test]
        fn doubles_round_trip_through_any_transform(
            value in -1e12f64..1e12,
            scale in prop_oneof![0.001f64..1000.0, -1000.0f64..-0.001],
            offset in -1e6f64..1e6,
        ) {
            let t = Transform { scale, offset };
            let raw = to_raw(&Value::Float(value), t, DataType::Float64).expect("number");
            let back = to_value(raw, t, PropertyType::Double).expect("finite");
            let Value::Float(back) = back else { panic!("a float") };
            prop_assert!((back - value).abs() <= 1e-6 * value.abs().max(1.0), "{back} vs {value}");
        }

        #[test]
        fn identity_ints_round_trip(value in any::<i64>()) {
            let raw = to_raw(&Value::Int(value), Transform::IDENTITY, DataType::Int64).expect("int");
            prop_assert_eq!(to_value(raw, Transform::IDENTITY, PropertyType::Int), Ok(Value::Int(value)));
        }
    }
}
