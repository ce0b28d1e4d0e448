//! What the engine knows about a device's properties from its DeviceModel, and the value checks
//! it applies with that knowledge.

use std::collections::BTreeMap;

use crate::value::{PropertyType, Value};

use super::error::TwinError;
use super::state::Half;

/// The checks for one property, built by the caller from the DeviceModel property (type,
/// `minimum`/`maximum`, `accessMode`). The engine never sees the model itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySchema {
    /// The property's type; every value of both halves must parse as it.
    pub value_type: PropertyType,
    /// Inclusive lower bound for desired values of numeric types.
    pub minimum: Option<f64>,
    /// Inclusive upper bound for desired values of numeric types.
    pub maximum: Option<f64>,
    /// `accessMode: ReadOnly`: the property is reported by the device and takes no desired value.
    pub read_only: bool,
}

/// The schemas of a device's properties, by property name.
pub type DeviceSchema = BTreeMap<String, PropertySchema>;

impl PropertySchema {
    /// A writable property of `value_type` without bounds.
    pub fn new(value_type: PropertyType) -> Self {
        PropertySchema {
            value_type,
            minimum: None,
            maximum: None,
            read_only: false,
        }
    }

    /// The same schema with inclusive bounds for desired values.
    pub fn with_range(mut self, minimum: Option<f64>, maximum: Option<f64>) -> Self {
        self.minimum = minimum;
        self.maximum = maximum;
        self
    }

    /// The same schema, read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// The property type named by a twin's `metadata.type` (`int`, `integer`, `float`, `double`,
/// `string`, `boolean`, `bytes`, `stream`; any letter case). An empty name is KubeEdge's default,
/// `string`. `None` for anything else (e.g. the `Updated` that old mappers send).
pub fn type_from_name(name: &str) -> Option<PropertyType> {
    let known = [
        ("", PropertyType::String),
        ("string", PropertyType::String),
        ("int", PropertyType::Int),
        ("integer", PropertyType::Int),
        ("float", PropertyType::Float),
        ("double", PropertyType::Double),
        ("boolean", PropertyType::Boolean),
        ("bytes", PropertyType::Bytes),
        ("stream", PropertyType::Stream),
    ];
    known
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name.trim()))
        .map(|(_, value_type)| *value_type)
}

/// Checks a property name: 1 to 128 bytes, no control characters.
pub(super) fn check_name(property: &str) -> Result<(), TwinError> {
    let valid =
        !property.is_empty() && property.len() <= 128 && !property.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(TwinError::InvalidName {
            property: property.to_owned(),
        })
    }
}

/// The checks one value goes through before the engine stores it.
pub(super) struct ValueCheck<'a> {
    /// The property name, for messages.
    pub property: &'a str,
    /// The type the value must have.
    pub value_type: PropertyType,
    /// The model's rules for the property, when the model is known.
    pub schema: Option<&'a PropertySchema>,
    /// The configured size limit.
    pub max_value_bytes: usize,
}

impl ValueCheck<'_> {
    /// Checks a value for `half`: size and type for both halves; read-only and bounds only for
    /// desired values (a device reporting an out-of-range reading is data, not an error).
    pub fn check(&self, half: Half, value: &str) -> Result<(), TwinError> {
        let property = || self.property.to_owned();
        if value.len() > self.max_value_bytes {
            return Err(TwinError::ValueTooLarge {
                property: property(),
                size: value.len(),
                limit: self.max_value_bytes,
            });
        }
        let typed = self
            .value_type
            .parse(value)
            .map_err(|_| TwinError::WrongType {
                property: property(),
                value_type: self.value_type,
                value: value.to_owned(),
            })?;
        let Some(schema) = self.schema.filter(|_| half == Half::Desired) else {
            return Ok(());
        };
        if schema.read_only {
            return Err(TwinError::ReadOnly {
                property: property(),
            });
        }
        let number = match typed {
            // Bounds are f64 (the model writes them as decimal strings); ints beyond 2^53 lose
            // precision only against bounds that large.
            Value::Int(i) => i as f64,
            Value::Float(x) => x,
            Value::String(_) | Value::Boolean(_) | Value::Bytes(_) => return Ok(()),
        };
        if let Some(minimum) = schema.minimum.filter(|min| number < *min) {
            return Err(TwinError::BelowMinimum {
                property: property(),
                value: value.to_owned(),
                minimum,
            });
        }
        if let Some(maximum) = schema.maximum.filter(|max| number > *max) {
            return Err(TwinError::AboveMaximum {
                property: property(),
                value: value.to_owned(),
                maximum,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<'a>(schema: Option<&'a PropertySchema>, value_type: PropertyType) -> ValueCheck<'a> {
        ValueCheck {
            property: "p",
            value_type,
            schema,
            max_value_bytes: 16,
        }
    }

    #[test]
    fn type_names_fold_case_and_know_kubeedge_aliases() {
        assert_eq!(type_from_name("INT"), Some(PropertyType::Int));
        assert_eq!(type_from_name("integer"), Some(PropertyType::Int));
        assert_eq!(type_from_name(""), Some(PropertyType::String));
        assert_eq!(type_from_name("Boolean"), Some(PropertyType::Boolean));
        assert_eq!(type_from_name("Updated"), None);
        assert_eq!(type_from_name("deleted"), None);
    }

    #[test]
    fn names_must_be_short_and_printable() {
        assert!(check_name("temperature").is_ok());
        assert!(check_name("a b/ü#").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(129)).is_err());
        assert!(check_name("a\nb").is_err());
    }

    #[test]
    fn size_and_type_apply_to_both_halves() {
        let c = check(None, PropertyType::Int);
        for half in Half::BOTH {
            assert!(c.check(half, "12").is_ok());
            assert!(matches!(
                c.check(half, "1.5"),
                Err(TwinError::WrongType { .. })
            ));
            assert!(matches!(
                c.check(half, &"1".repeat(17)),
                Err(TwinError::ValueTooLarge {
                    size: 17,
                    limit: 16,
                    ..
                })
            ));
        }
        let strings = check(None, PropertyType::String);
        assert!(strings.check(Half::Reported, "a b: ü €").is_ok());
    }

    #[test]
    fn bounds_and_read_only_apply_to_desired_values_only() {
        let schema = PropertySchema::new(PropertyType::Float).with_range(Some(0.0), Some(100.0));
        let c = check(Some(&schema), PropertyType::Float);
        assert!(c.check(Half::Desired, "100").is_ok());
        assert!(c.check(Half::Desired, "0").is_ok());
        assert!(matches!(
            c.check(Half::Desired, "100.5"),
            Err(TwinError::AboveMaximum { .. })
        ));
        assert!(matches!(
            c.check(Half::Desired, "-1"),
            Err(TwinError::BelowMinimum { .. })
        ));
        assert!(c.check(Half::Reported, "150").is_ok());

        let read_only = PropertySchema::new(PropertyType::Int).read_only();
        let c = check(Some(&read_only), PropertyType::Int);
        assert!(matches!(
            c.check(Half::Desired, "1"),
            Err(TwinError::ReadOnly { .. })
        ));
        assert!(c.check(Half::Reported, "1").is_ok());
    }
}
