//! `devices.kubeedge.io/v1beta1` `DeviceModel`: the blueprint of a kind of device (its typed
//! properties), and the typed checks of property values against it.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::protocol::VisitorConfig;
use super::root::object_accessors;
use super::schema::{ConfigData, free_form_object};
use crate::value::{Limits, PropertyType, Value, ValueError};

/// The model of a kind of device: its properties with their types, limits and access modes, and
/// the protocol its devices speak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceModelSpec {
    /// The protocol name used by devices of this model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The properties of the model. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<ModelProperty>,
    /// Protocol configuration shared by the devices of this model; a device can override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub protocol_config_data: Option<ConfigData>,
}

/// One property of a device model, like temperature or a switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelProperty {
    /// The property name. For the built-in stream processing use `saveFrame` or `saveVideo`.
    pub name: String,
    /// What the property is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value type; twin values of this property are checked against it.
    #[serde(rename = "type")]
    pub property_type: PropertyType,
    /// Whether the property can be written (absent: ReadWrite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
    /// The smallest allowed value of a numeric property (a number written as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<String>,
    /// The largest allowed value of a numeric property (a number written as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<String>,
    /// The unit of the property.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Default access configuration; a device can override it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitors: Option<VisitorConfig>,
}

/// Whether the property can be written: ReadWrite (the default) or ReadOnly. A ReadOnly property
/// cannot take a desired value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// Read and written (actuated).
    #[default]
    ReadWrite,
    /// Only read (reported).
    ReadOnly,
}

/// The status of a device model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceModelStatus {
    /// edgetwin: the `metadata.generation` of the model that the device controller has processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A problem in a device model that makes some of its properties unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Two properties have the same name.
    #[error("property {name:?} is defined more than once")]
    DuplicateProperty {
        /// The repeated name.
        name: String,
    },
    /// A property's `minimum` / `maximum` is not a number.
    #[error("property {property:?}: {source}")]
    InvalidLimit {
        /// The property.
        property: String,
        /// What is wrong with the limit.
        source: ValueError,
    },
    /// A property's `minimum` is larger than its `maximum`.
    #[error("property {property:?}: minimum {minimum} is larger than maximum {maximum}")]
    EmptyRange {
        /// The property.
        property: String,
        /// The model's minimum.
        minimum: String,
        /// The model's maximum.
        maximum: String,
    },
}

impl ModelProperty {
    /// A ReadWrite property of the given type without limits.
    pub fn new(name: impl Into<String>, property_type: PropertyType) -> Self {
        Self {
            name: name.into(),
            description: None,
            property_type,
            access_mode: None,
            minimum: None,
            maximum: None,
            unit: None,
            visitors: None,
        }
    }

    /// The access mode (ReadWrite when absent).
    pub fn access_mode(&self) -> AccessMode {
        self.access_mode.unwrap_or_default()
    }

    /// The numeric limits of the property.
    pub fn limits(&self) -> Result<Limits, ValueError> {
        Limits::parse(
            self.property_type,
            self.minimum.as_deref(),
            self.maximum.as_deref(),
        )
    }

    /// Parses a wire value by the property's type and checks it against `minimum` / `maximum`.
    /// (Whether out-of-range *reported* values are refused is the caller's policy: the twin engine
    /// accepts them as data and applies limits to desired values only.)
    pub fn check_value(&self, wire: &str) -> Result<Value, ValueError> {
        let value = self.property_type.parse(wire)?;
        self.limits()?.check(&value)?;
        Ok(value)
    }

    /// Like [`check_value`](Self::check_value), for a desired value: also rejects ReadOnly
    /// properties.
    pub fn check_desired(&self, wire: &str) -> Result<Value, ValueError> {
        if self.access_mode() == AccessMode::ReadOnly {
            return Err(ValueError::ReadOnly);
        }
        self.check_value(wire)
    }
}

impl DeviceModelSpec {
    /// A property by name.
    pub fn property(&self, name: &str) -> Option<&ModelProperty> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// Every problem that makes a property unusable: duplicate names, limits that are not
    /// numbers, empty ranges. Empty when the model is sound.
    pub fn problems(&self) -> Vec<ModelError> {
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for property in &self.properties {
            if !seen.insert(property.name.as_str()) {
                problems.push(ModelError::DuplicateProperty {
                    name: property.name.clone(),
                });
            }
            match property.limits() {
                Err(source) => problems.push(ModelError::InvalidLimit {
                    property: property.name.clone(),
                    source,
                }),
                Ok(limits) if limits.is_empty_range() => problems.push(ModelError::EmptyRange {
                    property: property.name.clone(),
                    minimum: property.minimum.clone().unwrap_or_default(),
                    maximum: property.maximum.clone().unwrap_or_default(),
                }),
                Ok(_) => {}
            }
        }
        problems
    }
}

super::root::plain_root!(
    /// DeviceModel is the blueprint of a kind of device (KubeEdge `devices.kubeedge.io/v1beta1`).
    DeviceModel,
    DeviceModelSpec,
    DeviceModelStatus,
    "DeviceModel"
);

object_accessors!(DeviceModel);

impl DeviceModel {
    /// A property by name.
    pub fn property(&self, name: &str) -> Option<&ModelProperty> {
        self.spec.property(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temperature() -> ModelProperty {
        ModelProperty {
            minimum: Some("0".into()),
            maximum: Some("100.0".into()),
            unit: Some("Celsius".into()),
            ..ModelProperty::new("temperature", PropertyType::Float)
        }
    }

    #[test]
    fn check_value_parses_by_type_and_applies_limits() {
        let t = temperature();
        assert_eq!(t.check_value("23.5"), Ok(Value::Float(23.5)));
        assert_eq!(
            t.check_value("warm"),
            Err(ValueError::WrongType {
                value: "warm".into(),
                expected: "float"
            })
        );
        assert_eq!(
            t.check_value("100.01").map_err(|e| e.to_string()),
            Err("the value 100.01 is above the maximum 100.0".into())
        );
    }

    #[test]
    fn read_only_properties_take_no_desired_value_but_report_values() {
        let sensor = ModelProperty {
            access_mode: Some(AccessMode::ReadOnly),
            ..temperature()
        };
        assert_eq!(sensor.check_desired("20"), Err(ValueError::ReadOnly));
        assert_eq!(sensor.check_value("20"), Ok(Value::Float(20.0)));
        assert_eq!(temperature().check_desired("20"), Ok(Value::Float(20.0)));
    }

    #[test]
    fn an_unparsable_limit_is_an_error_not_a_pass() {
        let broken = ModelProperty {
            maximum: Some("hot".into()),
            ..temperature()
        };
        assert_eq!(
            broken.check_value("1"),
            Err(ValueError::InvalidLimit {
                which: "maximum",
                limit: "hot".into()
            })
        );
    }

    #[test]
    fn problems_lists_duplicates_bad_limits_and_empty_ranges() {
        let spec = DeviceModelSpec {
            properties: vec![
                temperature(),
                temperature(),
                ModelProperty {
                    minimum: Some("x".into()),
                    ..ModelProperty::new("a", PropertyType::Int)
                },
                ModelProperty {
                    minimum: Some("9".into()),
                    maximum: Some("1".into()),
                    ..ModelProperty::new("b", PropertyType::Int)
                },
                ModelProperty {
                    minimum: Some("ignored".into()),
                    ..ModelProperty::new("c", PropertyType::String)
                },
            ],
            ..DeviceModelSpec::default()
        };
        let problems: Vec<String> = spec.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "property \"temperature\" is defined more than once",
                "property \"a\": the model's minimum \"x\" is not a number",
                "property \"b\": minimum 9 is larger than maximum 1",
            ]
        );
        assert!(
            DeviceModelSpec {
                properties: vec![temperature()],
                ..DeviceModelSpec::default()
            }
            .problems()
            .is_empty()
        );
    }

    #[test]
    fn property_lookup_by_name() {
        let model = DeviceModel::new(
            "thermo",
            DeviceModelSpec {
                properties: vec![temperature()],
                ..DeviceModelSpec::default()
            },
        );
        assert_eq!(model.name(), "thermo");
        assert!(model.property("temperature").is_some());
        assert!(model.property("humidity").is_none());
    }
}
