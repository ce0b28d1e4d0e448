//! OPC UA values ⇄ DeviceModel values (pure).
//!
//! Reading converts whatever scalar the server holds into the property's DeviceModel type
//! ([`from_variant`]); writing converts the desired value into the node's own DataType
//! ([`to_variant`]), refusing what the node cannot take (out of range, fractional for an
//! integer node, a string for a number node) with a message that says why.

use std::fmt;

use edgetwin_sdk::{PropertyType, Value};
use opcua::types::{
    ByteString, DataTypeId, DateTime, Identifier, NodeId, UAString, Variant, VariantScalarTypeId,
};

/// The scalar OPC UA types the mapper writes (and names in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// Boolean.
    Boolean,
    /// 8-bit signed integer.
    SByte,
    /// 8-bit unsigned integer.
    Byte,
    /// 16-bit signed integer.
    Int16,
    /// 16-bit unsigned integer.
    UInt16,
    /// 32-bit signed integer.
    Int32,
    /// 32-bit unsigned integer.
    UInt32,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit unsigned integer.
    UInt64,
    /// 32-bit float.
    Float,
    /// 64-bit float.
    Double,
    /// UTF-8 string.
    String,
    /// Date and time (UTC).
    DateTime,
    /// Bytes.
    ByteString,
}

impl ScalarType {
    /// Every type, in OPC UA's DataType id order.
    pub const ALL: [ScalarType; 14] = [
        ScalarType::Boolean,
        ScalarType::SByte,
        ScalarType::Byte,
        ScalarType::Int16,
        ScalarType::UInt16,
        ScalarType::Int32,
        ScalarType::UInt32,
        ScalarType::Int64,
        ScalarType::UInt64,
        ScalarType::Float,
        ScalarType::Double,
        ScalarType::String,
        ScalarType::DateTime,
        ScalarType::ByteString,
    ];

    /// The name OPC UA gives the type.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::Boolean => "Boolean",
            ScalarType::SByte => "SByte",
            ScalarType::Byte => "Byte",
            ScalarType::Int16 => "Int16",
            ScalarType::UInt16 => "UInt16",
            ScalarType::Int32 => "Int32",
            ScalarType::UInt32 => "UInt32",
            ScalarType::Int64 => "Int64",
            ScalarType::UInt64 => "UInt64",
            ScalarType::Float => "Float",
            ScalarType::Double => "Double",
            ScalarType::String => "String",
            ScalarType::DateTime => "DateTime",
            ScalarType::ByteString => "ByteString",
        }
    }

    /// The DataType node of the type.
    pub fn data_type_id(self) -> DataTypeId {
        match self {
            ScalarType::Boolean => DataTypeId::Boolean,
            ScalarType::SByte => DataTypeId::SByte,
            ScalarType::Byte => DataTypeId::Byte,
            ScalarType::Int16 => DataTypeId::Int16,
            ScalarType::UInt16 => DataTypeId::UInt16,
            ScalarType::Int32 => DataTypeId::Int32,
            ScalarType::UInt32 => DataTypeId::UInt32,
            ScalarType::Int64 => DataTypeId::Int64,
            ScalarType::UInt64 => DataTypeId::UInt64,
            ScalarType::Float => DataTypeId::Float,
            ScalarType::Double => DataTypeId::Double,
            ScalarType::String => DataTypeId::String,
            ScalarType::DateTime => DataTypeId::DateTime,
            ScalarType::ByteString => DataTypeId::ByteString,
        }
    }

    /// The type of a node's `DataType` attribute: `Ok(None)` for an abstract type (BaseDataType,
    /// Number, Integer, UInteger), whose concrete type is the current value's; `Err` with the
    /// type's name for a type the mapper cannot write.
    pub fn from_data_type(data_type: &NodeId) -> Result<Option<ScalarType>, String> {
        let Identifier::Numeric(id) = data_type.identifier else {
            return Err(format!("the DataType {data_type}"));
        };
        if data_type.namespace != 0 {
            return Err(format!("the DataType {data_type}"));
        }
        let scalar = match id {
            1 => ScalarType::Boolean,
            2 => ScalarType::SByte,
            3 => ScalarType::Byte,
            4 => ScalarType::Int16,
            5 => ScalarType::UInt16,
            6 => ScalarType::Int32,
            7 => ScalarType::UInt32,
            8 => ScalarType::Int64,
            9 => ScalarType::UInt64,
            10 => ScalarType::Float,
            11 => ScalarType::Double,
            12 => ScalarType::String,
            13 => ScalarType::DateTime,
            15 => ScalarType::ByteString,
            // Enumeration: values are Int32.
            29 => ScalarType::Int32,
            // Duration.
            290 => ScalarType::Double,
            // UtcTime.
            294 => ScalarType::DateTime,
            // LocaleId, NumericRange.
            295 | 291 => ScalarType::String,
            // Image, ImageBMP, ImageGIF, ImageJPG, ImagePNG, ImageWebP.
            30 | 2000..=2003 | 16307 => ScalarType::ByteString,
            // BaseDataType, Number, Integer, UInteger.
            24 | 26 | 27 | 28 => return Ok(None),
            14 => return Err("the DataType Guid".into()),
            _ => return Err(format!("the DataType i={id}")),
        };
        Ok(Some(scalar))
    }

    /// The type of a scalar value, if it is one the mapper writes.
    pub fn of_variant(variant: &Variant) -> Option<ScalarType> {
        match variant.scalar_type_id()? {
            VariantScalarTypeId::Boolean => Some(ScalarType::Boolean),
            VariantScalarTypeId::SByte => Some(ScalarType::SByte),
            VariantScalarTypeId::Byte => Some(ScalarType::Byte),
            VariantScalarTypeId::Int16 => Some(ScalarType::Int16),
            VariantScalarTypeId::UInt16 => Some(ScalarType::UInt16),
            VariantScalarTypeId::Int32 => Some(ScalarType::Int32),
            VariantScalarTypeId::UInt32 => Some(ScalarType::UInt32),
            VariantScalarTypeId::Int64 => Some(ScalarType::Int64),
            VariantScalarTypeId::UInt64 => Some(ScalarType::UInt64),
            VariantScalarTypeId::Float => Some(ScalarType::Float),
            VariantScalarTypeId::Double => Some(ScalarType::Double),
            VariantScalarTypeId::String => Some(ScalarType::String),
            VariantScalarTypeId::DateTime => Some(ScalarType::DateTime),
            VariantScalarTypeId::ByteString => Some(ScalarType::ByteString),
            _ => None,
        }
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts a value read from the server into the property's DeviceModel type.
pub fn from_variant(variant: &Variant, ty: PropertyType) -> Result<Value, String> {
    match variant {
        Variant::Empty => return Err("the node has no value (null)".into()),
        Variant::Array(_) => {
            return Err("the node holds an array; only scalar values are supported".into());
        }
        _ => {}
    }
    match ty {
        PropertyType::Int => to_int(variant).map(Value::Int),
        PropertyType::Float | PropertyType::Double => to_float(variant).map(Value::Float),
        PropertyType::Boolean => to_bool(variant).map(Value::Boolean),
        PropertyType::String | PropertyType::Stream => to_text(variant).map(Value::String),
        PropertyType::Bytes => match variant {
            Variant::ByteString(bytes) => Ok(Value::Bytes(bytes.value.clone().unwrap_or_default())),
            Variant::String(text) => Ok(Value::Bytes(text.as_ref().as_bytes().to_vec())),
            other => Err(cannot(other, "BYTES")),
        },
    }
}

fn cannot(variant: &Variant, target: &str) -> String {
    format!(
        "a {} value cannot be reported as {target}",
        variant_type_name(variant)
    )
}

/// The OPC UA type name of a value, for messages.
pub fn variant_type_name(variant: &Variant) -> String {
    match ScalarType::of_variant(variant) {
        Some(scalar) => scalar.name().to_owned(),
        None => match variant.scalar_type_id() {
            Some(id) => format!("{id:?}"),
            None => "non-scalar".to_owned(),
        },
    }
}

fn to_int(variant: &Variant) -> Result<i64, String> {
    Ok(match variant {
        Variant::Boolean(b) => i64::from(*b),
        Variant::SByte(v) => i64::from(*v),
        Variant::Byte(v) => i64::from(*v),
        Variant::Int16(v) => i64::from(*v),
        Variant::UInt16(v) => i64::from(*v),
        Variant::Int32(v) => i64::from(*v),
        Variant::UInt32(v) => i64::from(*v),
        Variant::Int64(v) => *v,
        Variant::UInt64(v) => {
            i64::try_from(*v).map_err(|_| format!("the UInt64 {v} does not fit an INT"))?
        }
        Variant::Float(v) => integral(f64::from(*v))?,
        Variant::Double(v) => integral(*v)?,
        Variant::String(text) => text
            .as_ref()
            .trim()
            .parse()
            .map_err(|_| format!("the String {:?} is not an integer", text.as_ref()))?,
        Variant::DateTime(time) => time.as_chrono().timestamp_millis(),
        other => return Err(cannot(other, "INT")),
    })
}

fn integral(value: f64) -> Result<i64, String> {
    if value.fract() == 0.0 && value >= i64::MIN as f64 && value < i64::MAX as f64 {
        Ok(value as i64)
    } else {
        Err(format!("{value} is not an integer"))
    }
}

fn to_float(variant: &Variant) -> Result<f64, String> {
    Ok(match variant {
        Variant::Boolean(b) => f64::from(u8::from(*b)),
        Variant::SByte(v) => f64::from(*v),
        Variant::Byte(v) => f64::from(*v),
        Variant::Int16(v) => f64::from(*v),
        Variant::UInt16(v) => f64::from(*v),
        Variant::Int32(v) => f64::from(*v),
        Variant::UInt32(v) => f64::from(*v),
        Variant::Int64(v) => *v as f64,
        Variant::UInt64(v) => *v as f64,
        // The shortest decimal that reads back as this f32 (21.3f32 reports 21.3, not
        // 21.299999237060547).
        Variant::Float(v) => v.to_string().parse().unwrap_or(f64::from(*v)),
        Variant::Double(v) => *v,
        Variant::String(text) => text
            .as_ref()
            .trim()
            .parse()
            .map_err(|_| format!("the String {:?} is not a number", text.as_ref()))?,
        other => return Err(cannot(other, "FLOAT")),
    })
    .and_then(|f: f64| {
        if f.is_finite() {
            Ok(f)
        } else {
            Err(format!("{f} is not a finite number"))
        }
    })
}

fn to_bool(variant: &Variant) -> Result<bool, String> {
    match variant {
        Variant::Boolean(b) => Ok(*b),
        Variant::String(text) => match text.as_ref().trim() {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(format!("the String {other:?} is not a boolean")),
        },
        other => match to_int(other) {
            Ok(0) => Ok(false),
            Ok(1) => Ok(true),
            Ok(n) => Err(format!("{n} is not a boolean (0 or 1)")),
            Err(_) => Err(cannot(other, "BOOLEAN")),
        },
    }
}

fn to_text(variant: &Variant) -> Result<String, String> {
    Ok(match variant {
        Variant::String(text) => text.as_ref().to_owned(),
        Variant::Boolean(b) => b.to_string(),
        Variant::Float(_) | Variant::Double(_) => to_float(variant)?.to_string(),
        Variant::DateTime(time) => time.to_rfc3339(),
        Variant::ByteString(bytes) => bytes.as_base64(),
        Variant::LocalizedText(text) => text.text.as_ref().to_owned(),
        Variant::QualifiedName(name) => format!("{}:{}", name.namespace_index, name.name.as_ref()),
        Variant::Guid(guid) => guid.to_string(),
        Variant::NodeId(id) => id.to_string(),
        Variant::StatusCode(code) => code.to_string(),
        Variant::XmlElement(xml) => xml.to_string(),
        other => match to_int(other) {
            Ok(n) => n.to_string(),
            Err(_) => match other {
                Variant::UInt64(v) => v.to_string(),
                _ => return Err(cannot(other, "STRING")),
            },
        },
    })
}

/// Converts a desired value into `target`, the node's DataType.
pub fn to_variant(value: &Value, target: ScalarType) -> Result<Variant, String> {
    let refuse = |why: String| Err(format!("the node's DataType is {target}: {why}"));
    match target {
        ScalarType::Boolean => match value {
            Value::Boolean(b) => Ok(Variant::Boolean(*b)),
            Value::Int(0) => Ok(Variant::Boolean(false)),
            Value::Int(1) => Ok(Variant::Boolean(true)),
            other => refuse(format!("{} is not a boolean", describe(other))),
        },
        ScalarType::SByte => int(value, target).and_then(|n| fit(n, target, Variant::SByte)),
        ScalarType::Byte => int(value, target).and_then(|n| fit(n, target, Variant::Byte)),
        ScalarType::Int16 => int(value, target).and_then(|n| fit(n, target, Variant::Int16)),
        ScalarType::UInt16 => int(value, target).and_then(|n| fit(n, target, Variant::UInt16)),
        ScalarType::Int32 => int(value, target).and_then(|n| fit(n, target, Variant::Int32)),
        ScalarType::UInt32 => int(value, target).and_then(|n| fit(n, target, Variant::UInt32)),
        ScalarType::Int64 => int(value, target).map(Variant::Int64),
        ScalarType::UInt64 => int(value, target).and_then(|n| fit(n, target, Variant::UInt64)),
        ScalarType::Float => match number(value) {
            Some(f) if f.abs() <= f64::from(f32::MAX) => Ok(Variant::Float(f as f32)),
            Some(f) => refuse(format!("{f} is out of the Float range")),
            None => refuse(format!("{} is not a number", describe(value))),
        },
        ScalarType::Double => match number(value) {
            Some(f) => Ok(Variant::Double(f)),
            None => refuse(format!("{} is not a number", describe(value))),
        },
        ScalarType::String => match value {
            Value::String(text) => Ok(Variant::String(UAString::from(text.as_str()))),
            other => refuse(format!("{} is not a string", describe(other))),
        },
        ScalarType::DateTime => match value {
            Value::String(text) => DateTime::parse_from_rfc3339(text.trim())
                .map(|t| Variant::DateTime(Box::new(t)))
                .or_else(|_| refuse(format!("{text:?} is not an RFC 3339 date and time"))),
            other => refuse(format!(
                "{} is not an RFC 3339 date and time",
                describe(other)
            )),
        },
        ScalarType::ByteString => match value {
            Value::Bytes(bytes) => Ok(Variant::ByteString(ByteString::from(bytes.clone()))),
            other => refuse(format!("{} is not bytes", describe(other))),
        },
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Int(n) => format!("the integer {n}"),
        Value::Float(f) => format!("the number {f}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Bytes(b) => format!("{} bytes", b.len()),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(n) => Some(*n as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

fn int(value: &Value, target: ScalarType) -> Result<i64, String> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::Float(f) => {
            integral(*f).map_err(|why| format!("the node's DataType is {target}: {why}"))
        }
        other => Err(format!(
            "the node's DataType is {target}: {} is not an integer",
            describe(other)
        )),
    }
}

fn fit<T: TryFrom<i64>>(
    n: i64,
    target: ScalarType,
    wrap: fn(T) -> Variant,
) -> Result<Variant, String> {
    T::try_from(n)
        .map(wrap)
        .map_err(|_| format!("the node's DataType is {target}: {n} is out of its range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scalar_type_reads_into_its_model_type() {
        let cases: Vec<(Variant, PropertyType, Value)> = vec![
            (
                Variant::Boolean(true),
                PropertyType::Boolean,
                Value::Boolean(true),
            ),
            (Variant::SByte(-5), PropertyType::Int, Value::Int(-5)),
            (Variant::Byte(200), PropertyType::Int, Value::Int(200)),
            (Variant::Int16(-300), PropertyType::Int, Value::Int(-300)),
            (Variant::UInt16(60000), PropertyType::Int, Value::Int(60000)),
            (
                Variant::Int32(-70000),
                PropertyType::Int,
                Value::Int(-70000),
            ),
            (
                Variant::UInt32(4_000_000_000),
                PropertyType::Int,
                Value::Int(4_000_000_000),
            ),
            (
                Variant::Int64(i64::MIN),
                PropertyType::Int,
                Value::Int(i64::MIN),
            ),
            (
                Variant::UInt64(1 << 40),
                PropertyType::Int,
                Value::Int(1 << 40),
            ),
            (
                Variant::Float(21.3),
                PropertyType::Float,
                Value::Float(21.3),
            ),
            (
                Variant::Double(-0.125),
                PropertyType::Double,
                Value::Float(-0.125),
            ),
            (
                Variant::String("pump-1".into()),
                PropertyType::String,
                Value::String("pump-1".into()),
            ),
            (
                Variant::ByteString(ByteString::from(vec![1u8, 2, 3])),
                PropertyType::Bytes,
                Value::Bytes(vec![1, 2, 3]),
            ),
        ];
        for (variant, ty, expected) in cases {
            assert_eq!(from_variant(&variant, ty), Ok(expected), "{variant:?}");
        }
        let time = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.250Z").expect("valid");
        assert_eq!(
            from_variant(&Variant::DateTime(Box::new(time)), PropertyType::String),
            Ok(Value::String("2024-05-01T12:00:00.250Z".into()))
        );
        assert_eq!(
            from_variant(&Variant::DateTime(Box::new(time)), PropertyType::Int),
            Ok(Value::Int(1_714_564_800_250))
        );
    }

    #[test]
    fn values_that_do_not_fit_the_model_type_are_errors() {
        assert!(from_variant(&Variant::UInt64(u64::MAX), PropertyType::Int).is_err());
        assert!(from_variant(&Variant::Double(1.5), PropertyType::Int).is_err());
        assert!(from_variant(&Variant::Int32(2), PropertyType::Boolean).is_err());
        assert!(
            from_variant(&Variant::Empty, PropertyType::Int).is_err_and(|e| e.contains("null"))
        );
        assert!(
            from_variant(&Variant::from(vec![1i32, 2]), PropertyType::Int)
                .is_err_and(|e| e.contains("array"))
        );
        assert_eq!(
            from_variant(&Variant::Double(f64::NAN), PropertyType::Double),
            Err("NaN is not a finite number".into())
        );
    }

    #[test]
    fn scalars_report_as_strings() {
        assert_eq!(
            from_variant(&Variant::Int32(7), PropertyType::String),
            Ok(Value::String("7".into()))
        );
        assert_eq!(
            from_variant(&Variant::UInt64(u64::MAX), PropertyType::String),
            Ok(Value::String(u64::MAX.to_string()))
        );
        assert_eq!(
            from_variant(&Variant::Float(0.1), PropertyType::String),
            Ok(Value::String("0.1".into()))
        );
    }

    #[test]
    fn desired_values_convert_to_the_node_type_or_say_why_not() {
        assert_eq!(
            to_variant(&Value::Int(-128), ScalarType::SByte),
            Ok(Variant::SByte(-128))
        );
        assert_eq!(
            to_variant(&Value::Int(255), ScalarType::Byte),
            Ok(Variant::Byte(255))
        );
        assert_eq!(
            to_variant(&Value::Float(3.0), ScalarType::Int16),
            Ok(Variant::Int16(3))
        );
        assert_eq!(
            to_variant(&Value::Int(7), ScalarType::Double),
            Ok(Variant::Double(7.0))
        );
        assert_eq!(
            to_variant(&Value::Float(1.5), ScalarType::Float),
            Ok(Variant::Float(1.5))
        );
        assert_eq!(
            to_variant(&Value::Int(1), ScalarType::Boolean),
            Ok(Variant::Boolean(true))
        );
        assert_eq!(
            to_variant(&Value::Int(u32::MAX.into()), ScalarType::UInt32),
            Ok(Variant::UInt32(u32::MAX))
        );
        let error = to_variant(&Value::Int(256), ScalarType::Byte).expect_err("out of range");
        assert_eq!(
            error,
            "the node's DataType is Byte: 256 is out of its range"
        );
        let error = to_variant(&Value::Int(-1), ScalarType::UInt64).expect_err("negative");
        assert!(error.contains("out of its range"), "{error}");
        let error = to_variant(&Value::Float(2.5), ScalarType::Int32).expect_err("fraction");
        assert!(error.contains("2.5 is not an integer"), "{error}");
        let error = to_variant(&Value::String("hot".into()), ScalarType::Double).expect_err("text");
        assert_eq!(
            error,
            "the node's DataType is Double: the string \"hot\" is not a number"
        );
        let error = to_variant(&Value::Float(1e300), ScalarType::Float).expect_err("too large");
        assert!(error.contains("Float range"), "{error}");
        assert!(to_variant(&Value::Int(3), ScalarType::String).is_err());
        assert!(to_variant(&Value::String("x".into()), ScalarType::DateTime).is_err());
        assert!(to_variant(&Value::String("x".into()), ScalarType::ByteString).is_err());
    }

    #[test]
    fn written_values_read_back_as_the_same_model_value() {
        let cases = [
            (Value::Boolean(true), PropertyType::Boolean),
            (Value::Int(-100), PropertyType::Int),
            (Value::Float(21.5), PropertyType::Float),
            (
                Value::String("2024-05-01T12:00:00.000Z".into()),
                PropertyType::String,
            ),
            (Value::Bytes(b"abc".to_vec()), PropertyType::Bytes),
        ];
        for scalar in ScalarType::ALL {
            for (value, ty) in &cases {
                let Ok(variant) = to_variant(value, scalar) else {
                    continue;
                };
                assert_eq!(
                    from_variant(&variant, *ty).as_ref(),
                    Ok(value),
                    "{value:?} through {scalar}"
                );
            }
        }
    }

    #[test]
    fn data_types_map_to_scalars() {
        for scalar in ScalarType::ALL {
            let id: NodeId = scalar.data_type_id().into();
            assert_eq!(ScalarType::from_data_type(&id), Ok(Some(scalar)));
        }
        assert_eq!(
            ScalarType::from_data_type(&DataTypeId::BaseDataType.into()),
            Ok(None)
        );
        assert_eq!(
            ScalarType::from_data_type(&DataTypeId::Duration.into()),
            Ok(Some(ScalarType::Double))
        );
        assert!(ScalarType::from_data_type(&NodeId::new(2, 3003u32)).is_err());
        assert!(ScalarType::from_data_type(&DataTypeId::Guid.into()).is_err());
    }
}
