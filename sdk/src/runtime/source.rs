//! Device sources besides the spec topic: a directory of YAML and KubeEdge's v1alpha2
//! `deviceProfile.json`; and the decoding of spec topic messages.

use std::collections::BTreeMap;
#[cfg(feature = "yaml")]
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use edgetwin_model::devices::load::LoadError;
#[cfg(feature = "yaml")]
use edgetwin_model::devices::load::{self, Manifest};
use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::wire;
use edgetwin_model::wire::payload::DeviceSpecMessage;
use serde::Deserialize;
use serde_json::{Value, json};

/// A device and its model (when found).
pub type DeviceWithModel = (Device, Option<DeviceModel>);

/// Why a device source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A YAML file is invalid (the message names the file and line).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The device profile could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The device profile is not what KubeEdge writes.
    #[error("{path}: {message}")]
    Profile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field.
        message: String,
    },
    /// A directory of YAML was asked for, but this mapper was built without the `yaml` feature.
    #[error(
        "cannot read the devices in {dir}: this mapper was built without YAML support (feature \
         `yaml` of edgetwin-sdk); serve it from the edge agent's spec topic or a deviceProfile.json"
    )]
    YamlNotBuilt {
        /// The directory.
        dir: PathBuf,
    },
}

/// Every Device in a directory of YAML, each with its DeviceModel (same namespace) when the
/// directory has it.
#[cfg(feature = "yaml")]
pub fn load_directory(dir: &Path) -> Result<Vec<DeviceWithModel>, SourceError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SourceError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if load::is_manifest_file_name(&path) && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut manifests = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let documents = load::from_str(&text, &path.display().to_string())?;
        manifests.extend(documents.into_iter().map(|doc| doc.manifest));
    }
    Ok(pair_with_models(manifests))
}

/// Without the `yaml` feature: always [`SourceError::YamlNotBuilt`].
#[cfg(not(feature = "yaml"))]
pub fn load_directory(dir: &Path) -> Result<Vec<DeviceWithModel>, SourceError> {
    Err(SourceError::YamlNotBuilt {
        dir: dir.to_owned(),
    })
}

/// Pairs each Device of `manifests` with its DeviceModel.
#[cfg(feature = "yaml")]
pub fn pair_with_models(manifests: Vec<Manifest>) -> Vec<DeviceWithModel> {
    let mut models = HashMap::new();
    let mut devices = Vec::new();
    for manifest in manifests {
        match manifest {
            Manifest::Device(device) => devices.push(device),
            Manifest::DeviceModel(model) => {
                models.insert(
                    (model.namespace().to_owned(), model.name().to_owned()),
                    model,
                );
            }
        }
    }
    devices
        .into_iter()
        .map(|device| {
            let model = device.model_name().and_then(|name| {
                models
                    .get(&(device.namespace().to_owned(), name.to_owned()))
                    .cloned()
            });
            (device, model)
        })
        .collect()
}

/// Decodes a spec topic payload.
///
/// Our edge agent writes these messages from Devices it has already validated, so a failure here
/// is a version mismatch, not a user's typo: the message names the field, not its full path.
/// That is deliberate. Decoding through a parsed [`Value`] reuses the model's deserialisation
/// code that the device profile source needs anyway, while [`wire::decode`] (Go key matching and
/// path tracking) would add a second copy of all of it to every mapper binary, and code pages are
/// most of a mapper's resident memory (BENCHMARKS.md, "Mapper SDK › Design choices").
pub fn decode_spec_message(payload: &[u8]) -> Result<DeviceWithModel, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("not a JSON spec message: {e}"))?;
    let message: DeviceSpecMessage =
        serde_json::from_value(value).map_err(|e| format!("not a spec message: {e}"))?;
    Ok((message.device, message.model))
}

/// KubeEdge v1alpha2 `deviceProfile.json`, as cloudcore's devicecontroller wrote it. Keys match
/// case-insensitively, as with Go (`CollectCycle` and `collectCycle` both occur).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Profile {
    device_instances: Vec<ProfileInstance>,
    device_models: Vec<ProfileModel>,
    protocols: Vec<ProfileProtocol>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProfileInstance {
    id: String,
    name: String,
    protocol: String,
    model: String,
    property_visitors: Vec<ProfileVisitor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProfileVisitor {
    property_name: String,
    protocol: String,
    report_cycle: Option<i64>,
    collect_cycle: Option<i64>,
    visitor_config: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProfileModel {
    name: String,
    properties: Vec<ProfileProperty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProfileProperty {
    name: String,
    data_type: String,
    access_mode: Option<String>,
    minimum: Option<Value>,
    maximum: Option<Value>,
    unit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProfileProtocol {
    name: String,
    protocol: String,
    protocol_config: Option<Value>,
    protocol_common_config: Option<Value>,
}

/// Reads a v1alpha2 `deviceProfile.json` into v1beta1 Devices and DeviceModels (namespace
/// `default`). A device's `protocol.configData` is the protocol's `protocolCommonConfig` with
/// its `protocolConfig` merged over it; cycles keep their values (nanoseconds are recognised
/// when the cycles are read).
pub fn load_device_profile(path: &Path) -> Result<Vec<DeviceWithModel>, SourceError> {
    let text = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_owned(),
        source,
    })?;
    let fail = |message: String| SourceError::Profile {
        path: path.to_owned(),
        message,
    };
    let profile: Profile = wire::decode(&text).map_err(|e| fail(e.to_string()))?;
    let models: BTreeMap<&str, &ProfileModel> = profile
        .device_models
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    let protocols: BTreeMap<&str, &ProfileProtocol> = profile
        .protocols
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let mut out = Vec::new();
    for instance in &profile.device_instances {
        let name = if instance.id.is_empty() {
            &instance.name
        } else {
            &instance.id
        };
        let protocol = protocols.get(instance.protocol.as_str()).ok_or_else(|| {
            fail(format!(
                "deviceInstances {name:?}: protocol {:?} is not in protocols",
                instance.protocol
            ))
        })?;
        let model = models.get(instance.model.as_str()).ok_or_else(|| {
            fail(format!(
                "deviceInstances {name:?}: model {:?} is not in deviceModels",
                instance.model
            ))
        })?;
        let config = protocol_config_data(protocol);
        let properties: Vec<Value> = instance
            .property_visitors
            .iter()
            .map(|v| {
                json!({
                    "name": v.property_name,
                    "collectCycle": v.collect_cycle,
                    "reportCycle": v.report_cycle,
                    "visitors": {
                        "protocolName": if v.protocol.is_empty() { &protocol.protocol } else { &v.protocol },
                        "configData": v.visitor_config.clone().filter(Value::is_object).unwrap_or_else(|| json!({})),
                    },
                })
            })
            .collect();
        let device = json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "deviceModelRef": {"name": model.name},
                "protocol": {"protocolName": protocol.protocol, "configData": config},
                "properties": properties,
            },
        });
        let model_properties: Vec<Value> = model
            .properties
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "type": p.data_type.to_uppercase(),
                    "accessMode": p.access_mode.clone().unwrap_or_else(|| "ReadWrite".into()),
                    "minimum": p.minimum.as_ref().map(scalar_text),
                    "maximum": p.maximum.as_ref().map(scalar_text),
                    "unit": p.unit,
                })
            })
            .collect();
        let model_json = json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": model.name, "namespace": "default"},
            "spec": {"protocol": protocol.protocol, "properties": model_properties},
        });
        let device: Device = serde_json::from_value(strip_nulls(device))
            .map_err(|e| fail(format!("deviceInstances {name:?}: {e}")))?;
        let model: DeviceModel = serde_json::from_value(strip_nulls(model_json))
            .map_err(|e| fail(format!("deviceModels {:?}: {e}", model.name)))?;
        out.push((device, Some(model)));
    }
    Ok(out)
}

/// `protocol.configData` of a profile protocol, flattened as `edgetwin convert` flattens
/// v1alpha2 objects: `protocolCommonConfig` with its `com`, `tcp` and `customizedValues` blocks
/// opened up, then `protocolConfig` over it.
fn protocol_config_data(protocol: &ProfileProtocol) -> Value {
    let mut config = serde_json::Map::new();
    if let Some(Value::Object(common)) = &protocol.protocol_common_config {
        for (key, value) in common {
            match value {
                Value::Object(inner)
                    if matches!(key.as_str(), "com" | "tcp" | "customizedValues") =>
                {
                    config.extend(inner.clone());
                }
                value => {
                    config.insert(key.clone(), value.clone());
                }
            }
        }
    }
    if let Some(Value::Object(own)) = &protocol.protocol_config {
        config.extend(own.clone());
    }
    Value::Object(config)
}

/// A number or string limit as the v1beta1 model writes it (a string).
fn scalar_text(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// Drops `null` members, which the model types read as "absent" only when the key is missing.
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PROFILE: &str = r#"{
      "deviceInstances": [{
        "id": "meter-01", "name": "meter", "protocol": "sim-proto", "model": "meter-model",
        "propertyVisitors": [
          {"propertyName": "count", "protocol": "sim", "CollectCycle": 2000000000,
           "visitorConfig": {"register": "count"}},
          {"propertyName": "limit", "protocol": "sim", "reportCycle": 500,
           "visitorConfig": {"register": "limit"}}
        ]
      }],
      "deviceModels": [{
        "name": "meter-model",
        "properties": [
          {"name": "count", "dataType": "int", "accessMode": "ReadOnly", "minimum": 0, "maximum": 1000},
          {"name": "limit", "dataType": "float", "accessMode": "ReadWrite"}
        ]
      }],
      "protocols": [{
        "name": "sim-proto", "protocol": "sim",
        "protocolConfig": {"latencyMs": 1},
        "protocolCommonConfig": {"latencyMs": 9, "com": {"baudRate": 9600}}
      }]
    }"#;

    #[test]
    fn a_device_profile_becomes_v1beta1_devices_and_models() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deviceProfile.json");
        std::fs::write(&path, PROFILE).expect("written");
        let devices = load_device_profile(&path).expect("reads");
        assert_eq!(devices.len(), 1);
        let (device, model) = &devices[0];
        assert_eq!(device.name(), "meter-01");
        assert_eq!(device.namespace(), "default");
        assert_eq!(device.protocol_name(), Some("sim"));
        let config = device
            .spec
            .protocol
            .as_ref()
            .and_then(|p| p.config_data.clone())
            .expect("config");
        // As `edgetwin convert` does: `com` opened up, `protocolConfig` over the common block.
        assert_eq!(
            Value::Object(config),
            json!({"latencyMs": 1, "baudRate": 9600})
        );
        let count = device.property("count").expect("count");
        assert_eq!(count.collect_cycle(), Some(Duration::from_secs(2)));
        let model = model.as_ref().expect("model");
        let resolved = crate::config::resolve(device, Some(model)).expect("resolves");
        assert!(!resolved.properties[0].writable);
        assert!(resolved.properties[1].writable);
    }

    #[test]
    fn spec_messages_decode_what_the_agent_encodes_and_name_a_bad_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deviceProfile.json");
        std::fs::write(&path, PROFILE).expect("written");
        let (device, model) = load_device_profile(&path)
            .expect("reads")
            .pop()
            .expect("one device");
        let message = DeviceSpecMessage {
            device: device.clone(),
            model: model.clone(),
        };
        let payload = wire::encode(&message).expect("encodes");
        assert_eq!(
            decode_spec_message(&payload).expect("decodes"),
            (device, model)
        );

        let err = decode_spec_message(br#"{"model": null}"#).expect_err("no device");
        assert_eq!(err, "not a spec message: missing field `device`");
        let err = decode_spec_message(b"{").expect_err("not JSON");
        assert!(err.starts_with("not a JSON spec message: EOF"), "{err}");
    }

    #[test]
    fn profile_errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deviceProfile.json");
        std::fs::write(
            &path,
            PROFILE.replace("\"model\": \"meter-model\"", "\"model\": \"x\""),
        )
        .expect("written");
        let err = load_device_profile(&path).expect_err("model missing");
        assert!(
            err.to_string()
                .ends_with("deviceProfile.json: deviceInstances \"meter-01\": model \"x\" is not in deviceModels"),
            "{err}"
        );
        let missing = load_device_profile(&dir.path().join("nope.json")).expect_err("no file");
        assert!(matches!(missing, SourceError::Io { .. }));
    }

    #[test]
    fn kubeedge_fixture_profiles_load() {
        let Some(dir) =
            edgetwin_testkit::fixtures::kubeedge_dir("deviceprofile", "kubeedge_fixture_profiles")
        else {
            return;
        };
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).expect("fixture dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let devices = load_device_profile(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!devices.is_empty(), "{}", path.display());
                for (device, model) in &devices {
                    crate::config::resolve(device, model.as_ref())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                loaded += 1;
            }
        }
        assert_eq!(loaded, 4, "every fixture profile was read");
    }

    #[cfg(feature = "yaml")]
    #[test]
    fn devices_are_paired_with_their_model_by_namespace() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("all.yaml"),
            r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: lamp-model, namespace: plant}
spec:
  properties:
    - {name: power, type: BOOLEAN}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: lamp, namespace: plant}
spec:
  deviceModelRef: {name: lamp-model}
  protocol: {protocolName: sim}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: lamp, namespace: other}
spec:
  deviceModelRef: {name: lamp-model}
  protocol: {protocolName: sim}
"#,
        )
        .expect("written");
        let devices = load_directory(dir.path()).expect("loads");
        assert_eq!(devices.len(), 2);
        let plant = devices
            .iter()
            .find(|(d, _)| d.namespace() == "plant")
            .expect("plant");
        assert!(plant.1.is_some());
        let other = devices
            .iter()
            .find(|(d, _)| d.namespace() == "other")
            .expect("other");
        assert!(
            other.1.is_none(),
            "a model of another namespace does not count"
        );
    }
}
