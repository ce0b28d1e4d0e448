//! Merging the model's configuration under the instance's, and decoding the result into a
//! driver's typed configuration with errors that name the device, property and field.
//!
//! KubeEdge ≥ 1.22 lets a DeviceModel carry `protocolConfigData` and per-property `visitors`
//! that every instance inherits; the instance's `configData` overrides them key by key. Nested
//! objects merge recursively (an instance may override `com.baudRate` and keep the model's
//! `com.serialPort`); any other value (string, number, list) from the instance replaces the
//! model's.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::driver::DeviceId;

/// Free-form configuration as it appears in the YAML (`configData`, `protocolConfigData`).
pub type ConfigMap = Map<String, Value>;

/// Merges `instance` over `model`, key by key, recursing into objects present in both.
pub fn merge_config(model: Option<&ConfigMap>, instance: Option<&ConfigMap>) -> ConfigMap {
    let mut merged = model.cloned().unwrap_or_default();
    if let Some(instance) = instance {
        merge_into(&mut merged, instance);
    }
    merged
}

fn merge_into(base: &mut ConfigMap, over: &ConfigMap) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Object(base_obj)), Value::Object(over_obj)) => {
                merge_into(base_obj, over_obj);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Where a piece of configuration sits, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSite {
    /// The device.
    pub device: DeviceId,
    /// The property, for visitor configuration.
    pub property: Option<String>,
    /// The YAML field the configuration came from, e.g. `protocol.configData`.
    pub field: &'static str,
}

/// A configuration value that does not decode into the driver's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Where: the device, the property and the field path, e.g.
    /// `device default/lamp, property red: visitors.configData.pin`.
    pub field: String,
    /// What serde said.
    pub message: String,
}

impl fmt::Display for ConfigSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {}", self.device)?;
        if let Some(property) = &self.property {
            write!(f, ", property {property}")?;
        }
        write!(f, ": {}", self.field)
    }
}

/// Merged configuration kept as compact JSON text. Keys are sorted (serde_json's map is
/// ordered), so equal texts mean equal configurations; and a device's configuration takes a few
/// dozen bytes instead of a map node per property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigText(Box<str>);

impl ConfigText {
    /// The text of a configuration map.
    pub fn new(config: &ConfigMap) -> Self {
        // A map of JSON values always serialises.
        let text = serde_json::to_string(config).unwrap_or_else(|_| "{}".to_owned());
        Self(text.into_boxed_str())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The configuration as a map again.
    pub fn to_map(&self) -> ConfigMap {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// Decodes the configuration into `T`, naming the failing field on error.
    pub fn decode<T: DeserializeOwned>(&self, site: &ConfigSite) -> Result<T, ConfigError> {
        // Through a map, not the text: a text position would point into our own JSON.
        decode_config(self.to_map(), site)
    }
}

/// Decodes merged configuration into `T`, naming the failing field on error.
pub fn decode_config<T: DeserializeOwned>(
    config: ConfigMap,
    site: &ConfigSite,
) -> Result<T, ConfigError> {
    let value = Value::Object(config);
    serde_path_to_error::deserialize(&value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            site.to_string()
        } else {
            format!("{site}.{path}")
        };
        ConfigError {
            field,
            message: err.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> ConfigMap {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn instance_wins_key_by_key_and_objects_merge_recursively() {
        let model = map(json!({
            "slaveID": 1,
            "com": {"serialPort": "/dev/ttyS0", "baudRate": 9600},
            "tags": ["a", "b"],
        }));
        let instance = map(json!({
            "com": {"baudRate": 115200},
            "tags": ["c"],
            "extra": true,
        }));
        let merged = merge_config(Some(&model), Some(&instance));
        assert_eq!(
            Value::Object(merged),
            json!({
                "slaveID": 1,
                "com": {"serialPort": "/dev/ttyS0", "baudRate": 115200},
                "tags": ["c"],
                "extra": true,
            })
        );
    }

    #[test]
    fn missing_sides_merge_to_the_other_or_empty() {
        let only = map(json!({"pin": 17}));
        assert_eq!(merge_config(Some(&only), None), only);
        assert_eq!(merge_config(None, Some(&only)), only);
        assert!(merge_config(None, None).is_empty());
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Visitor {
        pin: u32,
        com: Com,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Com {
        baud_rate: u32,
    }

    #[test]
    fn decode_errors_name_device_property_and_field() {
        let site = ConfigSite {
            device: DeviceId::new("default", "traffic-light"),
            property: Some("red".into()),
            field: "visitors.configData",
        };
        let err = decode_config::<Visitor>(map(json!({"pin": "x", "com": {"baudRate": 1}})), &site)
            .expect_err("pin is a string");
        assert_eq!(
            err.to_string(),
            "device default/traffic-light, property red: visitors.configData.pin: \
             invalid type: string \"x\", expected u32"
        );
        let err = decode_config::<Visitor>(map(json!({"pin": 1, "com": {"baudRate": -1}})), &site)
            .expect_err("negative baud rate");
        assert!(
            err.to_string()
                .contains("visitors.configData.com.baudRate: invalid value"),
            "{err}"
        );
        let err = decode_config::<Visitor>(map(json!({"com": {"baudRate": 1}})), &site)
            .expect_err("pin missing");
        assert_eq!(
            err.to_string(),
            "device default/traffic-light, property red: visitors.configData: missing field `pin`"
        );
    }

    #[test]
    fn config_text_decodes_like_the_map_and_compares_by_content() {
        let site = ConfigSite {
            device: DeviceId::new("default", "traffic-light"),
            property: Some("red".into()),
            field: "visitors.configData",
        };
        let config = map(json!({"pin": "x", "com": {"baudRate": 1}}));
        let text = ConfigText::new(&config);
        assert_eq!(text.as_str(), r#"{"com":{"baudRate":1},"pin":"x"}"#);
        assert_eq!(text.to_map(), config);
        let from_text = text.decode::<Visitor>(&site).expect_err("pin is a string");
        let from_map = decode_config::<Visitor>(config, &site).expect_err("pin is a string");
        assert_eq!(from_text.field, from_map.field);
        assert_eq!(
            from_text.field,
            "device default/traffic-light, property red: visitors.configData.pin"
        );
        let reordered = map(json!({"com": {"baudRate": 1}, "pin": "x"}));
        assert_eq!(ConfigText::new(&reordered), text);
    }

    #[test]
    fn decode_accepts_valid_config() {
        let site = ConfigSite {
            device: DeviceId::new("plant", "pump"),
            property: None,
            field: "protocol.configData",
        };
        let visitor: Visitor =
            decode_config(map(json!({"pin": 4, "com": {"baudRate": 9600}})), &site).expect("valid");
        assert_eq!(visitor.pin, 4);
        assert_eq!(visitor.com.baud_rate, 9600);
    }
}
