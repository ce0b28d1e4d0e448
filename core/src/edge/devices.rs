//! The devices this node serves, in memory: each device's spec, model, twin (the engine state),
//! reported state, and how its mapper names it on MQTT.
//!
//! Also the conversions from the model's Device/DeviceModel to what other parts need: the engine's
//! property schemas, KubeEdge's membership device (with the desired twins), and the retained spec
//! message mappers built on the edgetwin SDK read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::edge::store::{DeviceKey, ObjectKey};
use edgetwin_model::devices::{AccessMode, Device, DeviceModel};
use edgetwin_model::twin::{DeviceSchema, DeviceTwin, PropertySchema};
use edgetwin_model::wire::cloud_edge::desired_cloud_version;
use edgetwin_model::wire::payload::{
    self as wire, Metadata, MsgTwin, TwinMap, TwinValue, TwinVersion,
};
use edgetwin_model::wire::topic::{DeviceId, LevelError};

/// How a device's mapper writes its id in topics; the agent answers in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdForm {
    /// `{namespace}/{name}` (KubeEdge ≥ 1.17; the default until the mapper speaks).
    #[default]
    Namespaced,
    /// `{name}` (KubeEdge ≤ 1.16).
    Named,
}

impl IdForm {
    /// The form `id` is written in.
    pub fn of(id: &DeviceId) -> IdForm {
        if id.namespace().is_some() {
            IdForm::Namespaced
        } else {
            IdForm::Named
        }
    }
}

/// A DeviceModel and the property checks derived from it, held once and shared by every device
/// of the model (a node typically has many devices of few models).
#[derive(Debug, PartialEq)]
pub struct ModelEntry {
    /// The DeviceModel.
    pub model: DeviceModel,
    /// Its property checks.
    pub schema: DeviceSchema,
}

impl ModelEntry {
    /// The model with its checks, ready to share.
    pub fn new(mut model: DeviceModel) -> Arc<ModelEntry> {
        model.spec.properties.shrink_to_fit();
        let schema = schema_of(&model);
        Arc::new(ModelEntry { model, schema })
    }
}

/// One device served by this node.
#[derive(Debug, Clone)]
pub struct DeviceEntry {
    /// `namespace/name`.
    pub key: DeviceKey,
    /// The Device as the cloud (or the local devices file) gave it.
    pub device: Device,
    /// Its DeviceModel and the property checks from it, when the model is known (without one,
    /// types come from the twin).
    pub model: Option<Arc<ModelEntry>>,
    /// The twin (engine state).
    pub twin: DeviceTwin,
    /// The last state the mapper reported.
    pub state: Option<String>,
    /// When the mapper last reported the device online (RFC 3339).
    pub last_online: Option<String>,
    /// How the mapper last addressed the device.
    pub id_form: IdForm,
    namespaced_id: DeviceId,
    named_id: DeviceId,
}

impl DeviceEntry {
    /// A device with an empty twin. Fails when its namespace or name cannot be a topic level
    /// (never for valid Kubernetes names).
    pub fn new(
        mut device: Device,
        model: Option<Arc<ModelEntry>>,
    ) -> Result<DeviceEntry, LevelError> {
        let key = device_key(&device);
        let namespaced_id = DeviceId::namespaced(&key.namespace, &key.name)?;
        let named_id = DeviceId::named(&key.name)?;
        // Held for the device's lifetime: no spare capacity left over from parsing.
        device.spec.properties.shrink_to_fit();
        device.spec.methods.shrink_to_fit();
        Ok(DeviceEntry {
            key,
            device,
            model,
            twin: DeviceTwin::default(),
            state: None,
            last_online: None,
            id_form: IdForm::default(),
            namespaced_id,
            named_id,
        })
    }

    /// The device id in `form`.
    pub fn id(&self, form: IdForm) -> &DeviceId {
        match form {
            IdForm::Namespaced => &self.namespaced_id,
            IdForm::Named => &self.named_id,
        }
    }

    /// Its DeviceModel, when known.
    pub fn model(&self) -> Option<&DeviceModel> {
        self.model.as_deref().map(|entry| &entry.model)
    }

    /// Property checks from the model (`None` without a model: types come from the twin).
    pub fn schema(&self) -> Option<&DeviceSchema> {
        self.model.as_deref().map(|entry| &entry.schema)
    }
}

/// Why a topic's device id does not name one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// No device with that id on this node.
    NotFound,
    /// A `{name}` id that several namespaces use.
    Ambiguous(Vec<DeviceKey>),
}

/// The node's devices with an index by name for `{name}` ids.
#[derive(Debug, Default)]
pub struct Devices {
    entries: BTreeMap<DeviceKey, DeviceEntry>,
    by_name: HashMap<String, Vec<DeviceKey>>,
}

impl Devices {
    /// The device a topic id names.
    pub fn resolve(&self, id: &DeviceId) -> Result<DeviceKey, Unresolved> {
        match id.namespace() {
            Some(namespace) => {
                let key = DeviceKey::new(namespace, id.name());
                if self.entries.contains_key(&key) {
                    Ok(key)
                } else {
                    Err(Unresolved::NotFound)
                }
            }
            None => match self.by_name.get(id.name()).map(Vec::as_slice) {
                None | Some([]) => Err(Unresolved::NotFound),
                Some([key]) => Ok(key.clone()),
                Some(keys) => Err(Unresolved::Ambiguous(keys.to_vec())),
            },
        }
    }

    /// A device by key.
    pub fn get(&self, key: &DeviceKey) -> Option<&DeviceEntry> {
        self.entries.get(key)
    }

    /// A device by key, to change it.
    pub fn get_mut(&mut self, key: &DeviceKey) -> Option<&mut DeviceEntry> {
        self.entries.get_mut(key)
    }

    /// Adds or replaces a device.
    pub fn insert(&mut self, entry: DeviceEntry) {
        let key = entry.key.clone();
        if self.entries.insert(key.clone(), entry).is_none() {
            self.by_name.entry(key.name.clone()).or_default().push(key);
        }
    }

    /// Removes a device.
    pub fn remove(&mut self, key: &DeviceKey) -> Option<DeviceEntry> {
        let entry = self.entries.remove(key)?;
        if let Some(keys) = self.by_name.get_mut(&key.name) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_name.remove(&key.name);
            }
        }
        Some(entry)
    }

    /// Every device, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = &DeviceEntry> {
        self.entries.values()
    }

    /// Every device, to change them.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut DeviceEntry> {
        self.entries.values_mut()
    }

    /// How many devices.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The key of a device.
pub fn device_key(device: &Device) -> DeviceKey {
    DeviceKey::new(device.namespace(), device.name())
}

/// The key of a device's model (same namespace), if it names one.
pub fn model_key(device: &Device) -> Option<ObjectKey> {
    device
        .model_name()
        .map(|model| ObjectKey::new(device.namespace(), model))
}

/// The engine's property checks from a DeviceModel. Properties with unusable limits (see
/// `DeviceModelSpec::problems`) are checked by type only.
pub fn schema_of(model: &DeviceModel) -> DeviceSchema {
    model
        .spec
        .properties
        .iter()
        .map(|property| {
            let limits = property.limits().unwrap_or_default();
            let mut schema = PropertySchema::new(property.property_type)
                .with_range(limits.minimum(), limits.maximum());
            if property.access_mode() == AccessMode::ReadOnly {
                schema = schema.read_only();
            }
            (property.name.clone(), schema)
        })
        .collect()
}

/// The desired twins of a device as the cloud sends them: one entry per property that has a
/// desired value, typed by the model (`string` without one), versioned `{desired_cloud_version, 0}`.
pub fn desired_twins(device: &Device, model: Option<&DeviceModel>, now_ms: i64) -> TwinMap {
    let version = desired_cloud_version(device);
    device
        .spec
        .properties
        .iter()
        .filter_map(|property| {
            let desired = property.desired.as_ref()?;
            let type_name = model
                .and_then(|m| m.property(&property.name))
                .map_or("string", |p| p.property_type.twin_type_name());
            let twin = MsgTwin {
                expected: Some(TwinValue::at(desired.value.clone(), now_ms)),
                optional: Some(false),
                metadata: Some(Metadata::of_type(type_name)),
                expected_version: Some(TwinVersion {
                    cloud: version,
                    edge: 0,
                }),
                ..MsgTwin::default()
            };
            Some((property.name.clone(), Some(twin)))
        })
        .collect()
}

/// A device as KubeEdge's membership messages carry it: id `{namespace}/{name}` (KubeEdge
/// ≥ 1.17), name, the `description` label, and the desired twins.
pub fn membership_device(
    device: &Device,
    model: Option<&DeviceModel>,
    now_ms: i64,
) -> wire::Device {
    wire::Device {
        id: Some(device_key(device).to_string()),
        name: Some(device.name().to_owned()),
        description: description(device),
        twin: Some(desired_twins(device, model, now_ms)),
        ..wire::Device::default()
    }
}

/// A device as `membership/get/result` lists it: id, name and description.
pub fn listed_device(device: &Device) -> wire::Device {
    wire::Device {
        id: Some(device_key(device).to_string()),
        name: Some(device.name().to_owned()),
        description: description(device),
        ..wire::Device::default()
    }
}

fn description(device: &Device) -> Option<String> {
    device
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get("description"))
        .cloned()
}

/// The retained message on `edgetwin/v1/node/{node}/device/{namespace}/{name}/spec`:
/// `{"device": <Device>, "model": <DeviceModel or null>}` with the full objects.
#[derive(Debug, Serialize)]
pub struct SpecMessage<'a> {
    /// The Device.
    pub device: &'a Device,
    /// Its DeviceModel, `null` when the node does not have it.
    pub model: Option<&'a DeviceModel>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::devices::{
        DeviceModelRef, DeviceModelSpec, DeviceProperty, DeviceSpec, ModelProperty, TwinProperty,
    };
    use edgetwin_model::value::PropertyType;

    fn light_model() -> DeviceModel {
        let mut model = DeviceModel::new(
            "light",
            DeviceModelSpec {
                properties: vec![
                    ModelProperty {
                        minimum: Some("0".into()),
                        maximum: Some("100".into()),
                        ..ModelProperty::new("level", PropertyType::Int)
                    },
                    ModelProperty {
                        access_mode: Some(AccessMode::ReadOnly),
                        ..ModelProperty::new("temperature", PropertyType::Float)
                    },
                ],
                ..DeviceModelSpec::default()
            },
        );
        model.metadata.namespace = Some("plant".into());
        model
    }

    fn lamp(namespace: &str) -> Device {
        let mut device = Device::new(
            "lamp",
            DeviceSpec {
                device_model_ref: Some(DeviceModelRef {
                    name: "light".into(),
                }),
                properties: vec![
                    DeviceProperty {
                        name: "level".into(),
                        desired: Some(TwinProperty::new("40")),
                        ..DeviceProperty::default()
                    },
                    DeviceProperty {
                        name: "temperature".into(),
                        ..DeviceProperty::default()
                    },
                ],
                ..DeviceSpec::default()
            },
        );
        device.metadata.namespace = Some(namespace.into());
        device
    }

    fn entry(device: Device) -> DeviceEntry {
        DeviceEntry::new(device, None).unwrap()
    }

    #[test]
    fn ids_resolve_in_both_forms_and_a_shared_name_is_ambiguous() {
        let mut devices = Devices::default();
        devices.insert(entry(lamp("plant")));
        let plant = DeviceKey::new("plant", "lamp");
        assert_eq!(
            devices.resolve(&DeviceId::named("lamp").unwrap()),
            Ok(plant.clone())
        );
        assert_eq!(
            devices.resolve(&DeviceId::namespaced("plant", "lamp").unwrap()),
            Ok(plant.clone())
        );
        assert_eq!(
            devices.resolve(&DeviceId::namespaced("office", "lamp").unwrap()),
            Err(Unresolved::NotFound)
        );
        devices.insert(entry(lamp("office")));
        assert!(matches!(
            devices.resolve(&DeviceId::named("lamp").unwrap()),
            Err(Unresolved::Ambiguous(keys)) if keys.len() == 2
        ));
        devices.remove(&DeviceKey::new("office", "lamp"));
        assert_eq!(
            devices.resolve(&DeviceId::named("lamp").unwrap()),
            Ok(plant.clone())
        );
        devices.remove(&plant);
        assert_eq!(
            devices.resolve(&DeviceId::named("lamp").unwrap()),
            Err(Unresolved::NotFound)
        );
        assert!(devices.is_empty());
    }

    #[test]
    fn a_name_that_cannot_be_a_topic_level_is_refused() {
        assert!(DeviceEntry::new(lamp("a+b"), None).is_err());
        let entry = DeviceEntry::new(lamp("plant"), Some(ModelEntry::new(light_model()))).unwrap();
        assert_eq!(entry.id(IdForm::Named).to_string(), "lamp");
        assert_eq!(entry.id(IdForm::Namespaced).to_string(), "plant/lamp");
        assert_eq!(entry.model(), Some(&light_model()));
        assert_eq!(entry.schema(), Some(&schema_of(&light_model())));
    }

    #[test]
    fn the_schema_carries_type_bounds_and_read_only() {
        let schema = schema_of(&light_model());
        assert_eq!(
            schema["level"],
            PropertySchema::new(PropertyType::Int).with_range(Some(0.0), Some(100.0))
        );
        assert_eq!(
            schema["temperature"],
            PropertySchema::new(PropertyType::Float).read_only()
        );
    }

    #[test]
    fn membership_lists_desired_twins_typed_by_the_model() {
        let model = light_model();
        let device = membership_device(&lamp("plant"), Some(&model), 7);
        assert_eq!(device.id.as_deref(), Some("plant/lamp"));
        let twins = device.twin.unwrap();
        assert_eq!(twins.len(), 1, "only properties with a desired value");
        let level = twins["level"].as_ref().unwrap();
        assert_eq!(level.expected, Some(TwinValue::at("40", 7)));
        assert_eq!(level.metadata, Some(Metadata::of_type("int")));
        assert_eq!(
            level.expected_version,
            Some(TwinVersion { cloud: 1, edge: 0 })
        );
        let untyped = desired_twins(&lamp("plant"), None, 7);
        assert_eq!(
            untyped["level"].as_ref().unwrap().metadata,
            Some(Metadata::of_type("string"))
        );
    }

    #[test]
    fn the_cloud_version_prefers_resource_version_then_generation() {
        let mut device = lamp("plant");
        assert_eq!(desired_cloud_version(&device), 1);
        device.metadata.generation = Some(4);
        assert_eq!(desired_cloud_version(&device), 4);
        device.metadata.resource_version = Some("123456".into());
        assert_eq!(desired_cloud_version(&device), 123_456);
    }
}
