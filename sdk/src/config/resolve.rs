//! A Device and its DeviceModel, resolved into what the runtime needs: every property with its
//! type, access, cycles, merged access configuration, sinks and pipeline.
//!
//! Everything that can be checked without the driver is checked here, so that a bad spec is
//! reported once, clearly, and the device is marked `unhealthy` instead of failing later.

use std::collections::BTreeMap;
use std::time::Duration;

use edgetwin_model::devices::{AccessMode, Device, DeviceModel, ModelProperty};

use edgetwin_model::pipeline::{Pipeline, PipelineSpec};
use edgetwin_model::value::{Limits, PropertyType};
use serde::de::DeserializeOwned;

use super::merge::{ConfigError, ConfigSite, ConfigText, merge_config};
use crate::driver::{DeviceConfig, DeviceId, Point, PointId};
use crate::sink::{SinkSpec, sink_specs};

/// A device ready for the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedDevice {
    /// The device.
    pub id: DeviceId,
    /// `metadata.labels` (used by selectors).
    pub labels: BTreeMap<String, String>,
    /// `spec.protocol.protocolName` (or the model's `protocol`).
    pub protocol: Option<String>,
    /// Model `protocolConfigData` with the instance's `protocol.configData` merged over it.
    pub protocol_config: ConfigText,
    /// The properties, instance properties first (in spec order), then properties that only
    /// the model gives an access configuration.
    pub properties: Vec<ResolvedProperty>,
    /// `spec.stateReport.reportCycle`: how often the state is re-published, if at all.
    pub state_report_cycle: Option<Duration>,
}

/// One property of a resolved device.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedProperty {
    /// The property name.
    pub name: String,
    /// Its DeviceModel type.
    pub ty: PropertyType,
    /// Whether desired values may be written (`accessMode` is not `ReadOnly`).
    pub writable: bool,
    /// The model's `minimum` / `maximum` (empty when unset, not numeric, or not parseable:
    /// desired values are checked against them elsewhere).
    pub limits: Limits,
    /// Model visitors with the instance's `visitors.configData` merged over them.
    pub visitor_config: ConfigText,
    /// `collectCycle`, when set.
    pub collect_cycle: Option<Duration>,
    /// `reportCycle`, when set.
    pub report_cycle: Option<Duration>,
    /// `reportToCloud` (default: true).
    pub report_to_cloud: bool,
    /// Where samples go besides the twin.
    pub sinks: Vec<SinkSpec>,
    /// The data pipeline, already checked by building it once.
    pub pipeline: Option<PipelineSpec>,
}

/// Why a device cannot be served; the message names the device and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {device}{}: {message}", property.as_ref().map(|p| format!(", property {p}")).unwrap_or_default())]
pub struct ResolveError {
    /// The device.
    pub device: DeviceId,
    /// The property, when the problem is in one.
    pub property: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// The id of a device object.
pub fn device_id(device: &Device) -> DeviceId {
    DeviceId::new(device.namespace(), device.name())
}

/// Resolves `device` against its `model` (which must be the one it refers to, or `None` when
/// it was not found).
pub fn resolve(
    device: &Device,
    model: Option<&DeviceModel>,
) -> Result<ResolvedDevice, ResolveError> {
    let id = device_id(device);
    let fail = |property: Option<&str>, message: String| ResolveError {
        device: id.clone(),
        property: property.map(str::to_owned),
        message,
    };
    let model = match (device.model_name(), model) {
        (Some(_), Some(model)) => model,
        (Some(name), None) => {
            return Err(fail(
                None,
                format!("its DeviceModel {name:?} was not found"),
            ));
        }
        (None, _) => return Err(fail(None, "spec.deviceModelRef.name is missing".into())),
    };
    let protocol = device
        .protocol_name()
        .map(str::to_owned)
        .or_else(|| model.spec.protocol.clone());
    let protocol_config = ConfigText::new(&merge_config(
        model.spec.protocol_config_data.as_ref(),
        device
            .spec
            .protocol
            .as_ref()
            .and_then(|p| p.config_data.as_ref()),
    ));

    // Exact capacities: a resolved device lives as long as it is served.
    let mut properties = Vec::with_capacity(device.spec.properties.len());
    for prop in &device.spec.properties {
        let Some(model_prop) = model.spec.properties.iter().find(|m| m.name == prop.name) else {
            return Err(fail(
                Some(&prop.name),
                format!("not a property of DeviceModel {:?}", model.name()),
            ));
        };
        let sinks = match &prop.push_method {
            Some(push) => sink_specs(push).map_err(|m| fail(Some(&prop.name), m))?,
            None => Vec::new(),
        };
        for sink in &sinks {
            sink.check_property(&id, &prop.name, model_prop.property_type)
                .map_err(|m| fail(Some(&prop.name), m))?;
        }
        if let Some(spec) = &prop.pipeline {
            Pipeline::build(spec).map_err(|e| fail(Some(&prop.name), e.to_string()))?;
        }
        properties.push(ResolvedProperty {
            name: prop.name.clone(),
            ty: model_prop.property_type,
            writable: model_prop.access_mode != Some(AccessMode::ReadOnly),
            limits: model_limits(model_prop),
            visitor_config: ConfigText::new(&merge_config(
                model_prop
                    .visitors
                    .as_ref()
                    .and_then(|v| v.config_data.as_ref()),
                prop.visitors.as_ref().and_then(|v| v.config_data.as_ref()),
            )),
            collect_cycle: prop.collect_cycle(),
            report_cycle: prop.report_cycle(),
            report_to_cloud: prop.report_to_cloud.unwrap_or(true),
            sinks,
            pipeline: prop.pipeline.clone(),
        });
    }
    // KubeEdge ≥ 1.22: a model property with visitors is served even when the instance does not
    // list it.
    for model_prop in &model.spec.properties {
        let inherited = model_prop
            .visitors
            .as_ref()
            .and_then(|v| v.config_data.as_ref());
        if inherited.is_some() && device.property(&model_prop.name).is_none() {
            properties.push(ResolvedProperty {
                name: model_prop.name.clone(),
                ty: model_prop.property_type,
                writable: model_prop.access_mode != Some(AccessMode::ReadOnly),
                limits: model_limits(model_prop),
                visitor_config: ConfigText::new(&merge_config(inherited, None)),
                collect_cycle: None,
                report_cycle: None,
                report_to_cloud: true,
                sinks: Vec::new(),
                pipeline: None,
            });
        }
    }
    properties.shrink_to_fit();

    Ok(ResolvedDevice {
        id,
        labels: device.metadata.labels.clone().unwrap_or_default(),
        protocol,
        protocol_config,
        properties,
        state_report_cycle: device
            .spec
            .state_report
            .as_ref()
            .and_then(|s| s.report_cycle()),
    })
}

/// A model property's numeric limits; limits that do not parse count as none here.
fn model_limits(prop: &ModelProperty) -> Limits {
    Limits::parse(
        prop.property_type,
        prop.minimum.as_deref(),
        prop.maximum.as_deref(),
    )
    .unwrap_or_default()
}

impl ResolvedDevice {
    /// Decodes the merged configuration into a driver's types; errors name the device, the
    /// property and the field.
    pub fn decode<P: DeserializeOwned, V: DeserializeOwned>(
        &self,
    ) -> Result<DeviceConfig<P, V>, ConfigError> {
        let protocol = self.protocol_config.decode(&ConfigSite {
            device: self.id.clone(),
            property: None,
            field: "protocol.configData",
        })?;
        // Collected into an exact capacity (collecting `Result`s cannot know the length).
        let mut points = Vec::with_capacity(self.properties.len());
        for (index, prop) in self.properties.iter().enumerate() {
            let visitor = prop.visitor_config.decode(&ConfigSite {
                device: self.id.clone(),
                property: Some(prop.name.clone()),
                field: "visitors.configData",
            })?;
            points.push(Point {
                id: PointId(index),
                property: prop.name.clone(),
                ty: prop.ty,
                writable: prop.writable,
                limits: prop.limits.clone(),
                visitor,
            });
        }
        Ok(DeviceConfig {
            id: self.id.clone(),
            protocol,
            points,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    const MODEL: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: traffic-light
spec:
  protocol: sim
  protocolConfigData:
    bus: 1
    speed: 100
  properties:
    - name: red
      type: BOOLEAN
      accessMode: ReadWrite
      visitors:
        protocolName: sim
        configData:
          pin: 17
          activeLow: false
    - name: temperature
      type: FLOAT
      accessMode: ReadOnly
      visitors:
        protocolName: sim
        configData:
          pin: 4
    - name: note
      type: STRING
"#;

    fn load(device_yaml: &str) -> (Device, DeviceModel) {
        let docs = edgetwin_model::devices::load::from_str(
            &format!("{MODEL}\n---\n{device_yaml}"),
            "<test>",
        )
        .expect("fixture parses");
        let mut device = None;
        let mut model = None;
        for doc in docs {
            match doc.manifest {
                edgetwin_model::devices::load::Manifest::Device(d) => device = Some(d),
                edgetwin_model::devices::load::Manifest::DeviceModel(m) => model = Some(m),
            }
        }
        (device.expect("device"), model.expect("model"))
    }

    const DEVICE: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: crossing
  namespace: town
  labels:
    line: north
spec:
  deviceModelRef:
    name: traffic-light
  nodeName: edge-1
  protocol:
    protocolName: sim
    configData:
      speed: 400
  properties:
    - name: red
      collectCycle: 500
      reportCycle: 1000
      visitors:
        protocolName: sim
        configData:
          activeLow: true
"#;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Proto {
        bus: u8,
        speed: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Visitor {
        pin: u32,
        #[serde(default)]
        active_low: bool,
    }

    #[test]
    fn model_configuration_is_merged_under_the_instance() {
        let (device, model) = load(DEVICE);
        let resolved = resolve(&device, Some(&model)).expect("resolves");
        assert_eq!(resolved.id, DeviceId::new("town", "crossing"));
        assert_eq!(resolved.protocol.as_deref(), Some("sim"));
        assert_eq!(
            resolved.labels.get("line").map(String::as_str),
            Some("north")
        );
        let names: Vec<_> = resolved
            .properties
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        // `temperature` is inherited from the model's visitors; `note` has none and is skipped.
        assert_eq!(names, ["red", "temperature"]);
        let red = &resolved.properties[0];
        assert!(red.writable);
        assert_eq!(red.collect_cycle, Some(Duration::from_millis(500)));
        assert!(!resolved.properties[1].writable);

        let config: DeviceConfig<Proto, Visitor> = resolved.decode().expect("decodes");
        assert_eq!(config.protocol, Proto { bus: 1, speed: 400 });
        assert_eq!(
            config.points[0].visitor,
            Visitor {
                pin: 17,
                active_low: true
            }
        );
        assert_eq!(config.points[1].visitor.pin, 4);
        assert_eq!(config.points[1].ty, PropertyType::Float);
    }

    #[test]
    fn decode_errors_name_the_device_property_and_field() {
        let (device, model) = load(&DEVICE.replace("activeLow: true", "pin: seventeen"));
        let resolved = resolve(&device, Some(&model)).expect("resolves");
        let err = resolved
            .decode::<Proto, Visitor>()
            .expect_err("pin is not a number");
        assert_eq!(
            err.to_string(),
            "device town/crossing, property red: visitors.configData.pin: \
             invalid type: string \"seventeen\", expected u32"
        );
    }

    #[test]
    fn unknown_property_missing_model_and_unsupported_sink_are_refused() {
        let (device, model) = load(&DEVICE.replace("- name: red", "- name: blue"));
        let err = resolve(&device, Some(&model)).expect_err("blue is not in the model");
        assert_eq!(
            err.to_string(),
            "device town/crossing, property blue: not a property of DeviceModel \"traffic-light\""
        );

        let (device, _) = load(DEVICE);
        let err = resolve(&device, None).expect_err("no model");
        assert_eq!(
            err.to_string(),
            "device town/crossing: its DeviceModel \"traffic-light\" was not found"
        );

        let with_push = |push: &str| {
            DEVICE.replace(
                "      reportCycle: 1000\n",
                &format!("      reportCycle: 1000\n      pushMethod:\n{push}"),
            )
        };
        let (device, model) = load(&with_push("        anomalyDetection: {}\n"));
        let err = resolve(&device, Some(&model)).expect_err("anomalyDetection refused");
        assert_eq!(
            err.to_string(),
            "device town/crossing, property red: pushMethod.anomalyDetection: not supported yet"
        );

        // A sink that cannot carry the property's type is refused with the device.
        let (device, model) = load(&with_push(
            "        mqtt: {topic: t}\n        dbMethod:\n          mysql:\n            mysqlClientConfig: {addr: db, database: d, userName: u}\n",
        ));
        let resolved = resolve(&device, Some(&model)).expect("mqtt and mysql take booleans");
        assert_eq!(resolved.properties[0].sinks.len(), 2);
        let long_name = format!("name: crossing{}", "x".repeat(60));
        let (device, model) = load(
            &with_push(
                "        dbMethod:\n          mysql:\n            mysqlClientConfig: {addr: db, database: d, userName: u}\n",
            )
            .replace("name: crossing", &long_name),
        );
        let err = resolve(&device, Some(&model)).expect_err("table name too long");
        assert!(
            err.to_string()
                .contains("longer than MySQL's 64 characters"),
            "{err}"
        );
    }
}
