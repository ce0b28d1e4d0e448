//! `devices.kubeedge.io/v1beta1` `Device`: one device instance, made from a `DeviceModel`.

use std::collections::HashSet;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cycle::cycle_duration;
use super::device_model::DeviceModel;
use super::protocol::{ProtocolConfig, VisitorConfig};
use super::push_method::PushMethod;
use super::root::object_accessors;
use super::status::{DeviceStatus, TwinProperty};
use crate::value::ValueError;

/// The desired state of a device: which model it is, which node serves it, how to reach it and
/// which properties to collect, report and actuate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    /// The device model this device is an instance of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_model_ref: Option<DeviceModelRef>,
    /// The edge node that serves this device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// How to connect to the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolConfig>,
    /// The device's properties: how to access each, how often to collect and report it, its
    /// desired value. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<DeviceProperty>,
    /// The device's methods. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<DeviceMethod>,
    /// How the device state is reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_report: Option<StateReport>,
    /// edgetwin extension: who sets the desired values of the device's properties (a property's
    /// own `desiredPolicy` overrides it). Default `CloudWins`. KubeEdge ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_policy: Option<DesiredPolicy>,
}

/// edgetwin extension: who may set a property's desired value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DesiredPolicy {
    /// Only the cloud sets the desired value (the Device's `spec`). A `twin/update` with
    /// `expected` from the edge node's bus is refused with an error result, and whatever else
    /// the edge holds is replaced by the spec's value at the next reconcile.
    #[default]
    CloudWins,
    /// A client on the edge node that may report for the device (its mapper, an app with a
    /// credential for it) may also set the desired value with `expected`: the agent accepts it
    /// and the cloud writes it into the Device's spec, where `kubectl` and `edgetwin ctl` show
    /// it. A cloud change that crosses it still wins.
    EdgeMayWrite,
}

/// A reference to the DeviceModel (same namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceModelRef {
    /// Name of the DeviceModel.
    pub name: String,
}

/// One property of a device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProperty {
    /// The property name; it must be unique and should be in the device model.
    pub name: String,
    /// The desired value of the property.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinProperty>,
    /// How the mapper accesses the property (protocol-specific configuration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitors: Option<VisitorConfig>,
    /// How often the mapper reports the value, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_cycle: Option<i64>,
    /// How often the mapper collects the value from the device, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collect_cycle: Option<i64>,
    /// Whether the value is reported to the cloud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_to_cloud: Option<bool>,
    /// Where the mapper pushes the value besides the twin.
    // Boxed: it is large (about 500 bytes) and rarely set, and every device holds one
    // `DeviceProperty` per property.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_method: Option<Box<PushMethod>>,
    /// edgetwin extension: the data pipeline applied to every sample of this property before it
    /// is reported or pushed (see `docs/data-pipeline.md`). KubeEdge ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<crate::pipeline::PipelineSpec>,
    /// edgetwin extension: who sets this property's desired value; overrides the Device's
    /// `spec.desiredPolicy`. KubeEdge ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_policy: Option<DesiredPolicy>,
}

impl DeviceProperty {
    /// `collectCycle` as a duration (see [`crate::devices::cycle`]).
    pub fn collect_cycle(&self) -> Option<Duration> {
        cycle_duration(self.collect_cycle, "collectCycle")
    }

    /// `reportCycle` as a duration (see [`crate::devices::cycle`]).
    pub fn report_cycle(&self) -> Option<Duration> {
        cycle_duration(self.report_cycle, "reportCycle")
    }
}

/// A device method: a named operation over some of the device's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMethod {
    /// The method name; it must be unique.
    pub name: String,
    /// What the method does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The properties the method controls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property_names: Vec<String>,
}

/// How the mapper reports the device state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    /// How often the mapper reports the device state, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_cycle: Option<i64>,
    /// Whether the device state is reported to the cloud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_to_cloud: Option<bool>,
}

impl StateReport {
    /// `reportCycle` as a duration (see [`crate::devices::cycle`]).
    pub fn report_cycle(&self) -> Option<Duration> {
        cycle_duration(self.report_cycle, "stateReport.reportCycle")
    }
}

super::root::plain_root!(
    /// Device is one device instance (KubeEdge `devices.kubeedge.io/v1beta1`, with edgetwin's
    /// status additions).
    Device,
    DeviceSpec,
    DeviceStatus,
    "Device"
);

object_accessors!(Device);

impl Device {
    /// The id KubeEdge ≥ 1.17 uses in MQTT topics: `{namespace}/{name}`.
    pub fn device_id(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }

    /// The name of the DeviceModel, if the device refers to one.
    pub fn model_name(&self) -> Option<&str> {
        self.spec.device_model_ref.as_ref().map(|r| r.name.as_str())
    }

    /// The edge node that serves the device, if set.
    pub fn node_name(&self) -> Option<&str> {
        self.spec.node_name.as_deref()
    }

    /// The protocol name, if set.
    pub fn protocol_name(&self) -> Option<&str> {
        self.spec.protocol.as_ref()?.protocol_name.as_deref()
    }

    /// A property of the spec by name.
    pub fn property(&self, name: &str) -> Option<&DeviceProperty> {
        self.spec.properties.iter().find(|p| p.name == name)
    }

    /// Who sets the desired value of `property`: the property's own `desiredPolicy`, else the
    /// Device's, else [`DesiredPolicy::CloudWins`].
    pub fn desired_policy(&self, property: &str) -> DesiredPolicy {
        self.property(property)
            .and_then(|p| p.desired_policy)
            .or(self.spec.desired_policy)
            .unwrap_or_default()
    }

    /// Whether some property of the device may get its desired value from the edge.
    pub fn takes_edge_desired(&self) -> bool {
        self.spec.desired_policy == Some(DesiredPolicy::EdgeMayWrite)
            || self
                .spec
                .properties
                .iter()
                .any(|p| p.desired_policy == Some(DesiredPolicy::EdgeMayWrite))
    }

    /// Every way in which the device does not fit `model`: another model name, duplicate or
    /// unknown properties, desired values the model's types, limits or access modes refuse.
    /// Empty when the device fits.
    pub fn check_against(&self, model: &DeviceModel) -> Vec<ModelMismatch> {
        let mut mismatches = Vec::new();
        if self.model_name() != Some(model.name()) {
            mismatches.push(ModelMismatch::OtherModel {
                referenced: self.model_name().map(str::to_owned),
                model: model.name().to_owned(),
            });
        }
        let mut seen = HashSet::new();
        for property in &self.spec.properties {
            let name = property.name.clone();
            if !seen.insert(property.name.as_str()) {
                mismatches.push(ModelMismatch::DuplicateProperty { name });
                continue;
            }
            let Some(model_property) = model.property(&property.name) else {
                mismatches.push(ModelMismatch::UnknownProperty { name });
                continue;
            };
            if let Some(desired) = &property.desired
                && let Err(source) = model_property.check_desired(&desired.value)
            {
                mismatches.push(ModelMismatch::InvalidDesired { name, source });
            }
        }
        mismatches
    }
}

/// A way in which a Device does not fit a DeviceModel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelMismatch {
    /// The device refers to another model (or to none).
    #[error("the device refers to model {referenced:?}, not {model:?}")]
    OtherModel {
        /// `spec.deviceModelRef.name` of the device.
        referenced: Option<String>,
        /// The model checked against.
        model: String,
    },
    /// Two device properties have the same name.
    #[error("property {name:?} is defined more than once")]
    DuplicateProperty {
        /// The repeated name.
        name: String,
    },
    /// A device property the model does not define.
    #[error("property {name:?} is not in the device model")]
    UnknownProperty {
        /// The property.
        name: String,
    },
    /// A desired value the model refuses.
    #[error("property {name:?}: desired value: {source}")]
    InvalidDesired {
        /// The property.
        name: String,
        /// Why the value is refused.
        source: ValueError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ObjectMeta;

    fn lamp() -> Device {
        let mut device = Device::new(
            "lamp",
            DeviceSpec {
                device_model_ref: Some(DeviceModelRef { name: "led".into() }),
                node_name: Some("pi-1".into()),
                protocol: Some(ProtocolConfig {
                    protocol_name: Some("gpio".into()),
                    config_data: None,
                }),
                properties: vec![DeviceProperty {
                    name: "power".into(),
                    desired: Some(TwinProperty::new("ON")),
                    collect_cycle: Some(10_000_000_000),
                    report_cycle: Some(500),
                    ..DeviceProperty::default()
                }],
                ..DeviceSpec::default()
            },
        );
        device.metadata.namespace = Some("plant".into());
        device
    }

    #[test]
    fn accessors_read_the_spec_and_metadata() {
        let device = lamp();
        assert_eq!(device.name(), "lamp");
        assert_eq!(device.namespace(), "plant");
        assert_eq!(device.device_id(), "plant/lamp");
        assert_eq!(device.model_name(), Some("led"));
        assert_eq!(device.node_name(), Some("pi-1"));
        assert_eq!(device.protocol_name(), Some("gpio"));
        let power = device.property("power").expect("property");
        assert_eq!(power.collect_cycle(), Some(Duration::from_secs(10)));
        assert_eq!(power.report_cycle(), Some(Duration::from_millis(500)));
        assert!(device.property("missing").is_none());
    }

    #[test]
    fn missing_namespace_is_default_and_missing_name_is_empty() {
        let device = Device {
            metadata: ObjectMeta::default(),
            spec: DeviceSpec::default(),
            status: None,
        };
        assert_eq!(device.namespace(), "default");
        assert_eq!(device.name(), "");
    }

    #[test]
    fn check_against_lists_every_mismatch_with_the_model() {
        use crate::devices::{AccessMode, DeviceModelSpec, ModelProperty};
        use crate::value::PropertyType;

        let model = DeviceModel::new(
            "led",
            DeviceModelSpec {
                properties: vec![
                    ModelProperty::new("power", PropertyType::Boolean),
                    ModelProperty {
                        access_mode: Some(AccessMode::ReadOnly),
                        ..ModelProperty::new("pin", PropertyType::Int)
                    },
                ],
                ..DeviceModelSpec::default()
            },
        );
        let mut device = lamp();
        assert_eq!(
            device.check_against(&model),
            [ModelMismatch::InvalidDesired {
                name: "power".into(),
                source: ValueError::WrongType {
                    value: "ON".into(),
                    expected: "bool"
                }
            }]
        );
        device.spec.properties[0].desired = Some(TwinProperty::new("true"));
        assert_eq!(device.check_against(&model), []);

        device.spec.properties.push(DeviceProperty {
            name: "pin".into(),
            desired: Some(TwinProperty::new("17")),
            ..DeviceProperty::default()
        });
        device.spec.properties.push(DeviceProperty {
            name: "colour".into(),
            ..DeviceProperty::default()
        });
        device.spec.properties.push(DeviceProperty {
            name: "power".into(),
            ..DeviceProperty::default()
        });
        device.spec.device_model_ref = None;
        let messages: Vec<String> = device
            .check_against(&model)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "the device refers to model None, not \"led\"",
                "property \"pin\": desired value: the property is ReadOnly: it cannot take a desired value",
                "property \"colour\" is not in the device model",
                "property \"power\" is defined more than once",
            ]
        );
    }

    #[test]
    fn serializes_with_type_meta_and_without_empty_fields() {
        let json = serde_json::to_value(lamp()).expect("serializes");
        assert_eq!(json["apiVersion"], "devices.kubeedge.io/v1beta1");
        assert_eq!(json["kind"], "Device");
        assert_eq!(json["spec"]["nodeName"], "pi-1");
        assert_eq!(json["spec"]["properties"][0]["desired"]["value"], "ON");
        assert!(json["spec"].get("methods").is_none());
        assert!(json.get("status").is_none());
        let back: Device = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, lamp());
    }
}
