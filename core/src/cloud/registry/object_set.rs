//! A set of Devices and DeviceModels by key: the local cache of the Kubernetes backend (its
//! reflector store) and, per watch stream, what the consumer has been told — so that a fresh
//! listing can be turned into exactly the events that bring the consumer up to date.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::RegistryEvent;
use edgetwin_model::devices::{DEVICE_KIND, DEVICE_MODEL_KIND, Device, DeviceModel};

/// Device or DeviceModel. Models sort first, so a listing sends models before the devices that
/// refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A DeviceModel.
    DeviceModel,
    /// A Device.
    Device,
}

impl Kind {
    /// `Device` or `DeviceModel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Device => DEVICE_KIND,
            Kind::DeviceModel => DEVICE_MODEL_KIND,
        }
    }

    /// The plural resource name in API paths: `devices` or `devicemodels`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Device => "devices",
            Kind::DeviceModel => "devicemodels",
        }
    }
}

/// Identifies an object: its kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Device or DeviceModel.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// A Device or a DeviceModel, shared.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    Device(Arc<Device>),
    Model(Arc<DeviceModel>),
}

impl Object {
    pub fn key(&self) -> ObjectKey {
        let (kind, namespace, name) = match self {
            Object::Device(d) => (Kind::Device, d.namespace(), d.name()),
            Object::Model(m) => (Kind::DeviceModel, m.namespace(), m.name()),
        };
        ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn resource_version(&self) -> Option<&str> {
        match self {
            Object::Device(d) => d.metadata.resource_version.as_deref(),
            Object::Model(m) => m.metadata.resource_version.as_deref(),
        }
    }

    pub fn applied(&self) -> RegistryEvent {
        match self {
            Object::Device(d) => RegistryEvent::Applied(Arc::clone(d)),
            Object::Model(m) => RegistryEvent::ModelApplied(Arc::clone(m)),
        }
    }

    pub fn deleted(&self) -> RegistryEvent {
        match self {
            Object::Device(d) => RegistryEvent::Deleted(Arc::clone(d)),
            Object::Model(m) => RegistryEvent::ModelDeleted(Arc::clone(m)),
        }
    }

    /// The object an event is about, and whether the event deletes it.
    pub fn of_event(event: &RegistryEvent) -> Option<(Object, bool)> {
        match event {
            RegistryEvent::Applied(d) => Some((Object::Device(Arc::clone(d)), false)),
            RegistryEvent::Deleted(d) => Some((Object::Device(Arc::clone(d)), true)),
            RegistryEvent::ModelApplied(m) => Some((Object::Model(Arc::clone(m)), false)),
            RegistryEvent::ModelDeleted(m) => Some((Object::Model(Arc::clone(m)), true)),
            RegistryEvent::Synced => None,
        }
    }
}

/// Objects by key.
#[derive(Debug, Default)]
pub(crate) struct ObjectSet {
    objects: BTreeMap<ObjectKey, Object>,
}

impl ObjectSet {
    /// Applies an event: `Applied` inserts or replaces, `Deleted` removes.
    pub fn record(&mut self, event: &RegistryEvent) {
        if let Some((object, deleted)) = Object::of_event(event) {
            if deleted {
                self.objects.remove(&object.key());
            } else {
                self.objects.insert(object.key(), object);
            }
        }
    }

    /// Replaces the objects of `kinds` with a fresh, complete listing of those kinds and returns
    /// the events that turn the old content into the new: `Applied` for new objects and objects
    /// whose `resourceVersion` changed, `Deleted` (with the last known state) for objects that
    /// are gone.
    pub fn resync(
        &mut self,
        kinds: &[Kind],
        fresh: impl IntoIterator<Item = Object>,
    ) -> Vec<RegistryEvent> {
        let fresh: BTreeMap<ObjectKey, Object> = fresh.into_iter().map(|o| (o.key(), o)).collect();
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|key| kinds.contains(&key.kind) && !fresh.contains_key(key))
            .cloned()
            .collect();
        let mut events = Vec::new();
        for key in gone {
            if let Some(object) = self.objects.remove(&key) {
                events.push(object.deleted());
            }
        }
        for (key, object) in fresh {
            let unchanged = self
                .objects
                .get(&key)
                .is_some_and(|old| old.resource_version() == object.resource_version());
            if !unchanged {
                events.push(object.applied());
                self.objects.insert(key, object);
            }
        }
        events
    }

    /// Every object, models first, each kind ordered by namespace and name.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// The objects of a kind, in one namespace or all, ordered by namespace and name.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub fn of_kind<'a>(
        &'a self,
        kind: Kind,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects
            .iter()
            .filter(move |(key, _)| {
                key.kind == kind && namespace.is_none_or(|ns| key.namespace == ns)
            })
            .map(|(_, object)| object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::devices::{DeviceModelSpec, DeviceSpec};

    fn device(name: &str, rv: &str) -> Object {
        let mut device = Device::new(name, DeviceSpec::default());
        device.metadata.resource_version = Some(rv.into());
        Object::Device(Arc::new(device))
    }

    fn model(name: &str, rv: &str) -> Object {
        let mut model = DeviceModel::new(name, DeviceModelSpec::default());
        model.metadata.resource_version = Some(rv.into());
        Object::Model(Arc::new(model))
    }

    fn names(events: &[RegistryEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                RegistryEvent::Applied(d) => {
                    format!("applied {}@{:?}", d.name(), d.metadata.resource_version)
                }
                RegistryEvent::Deleted(d) => format!("deleted {}", d.name()),
                RegistryEvent::ModelApplied(m) => format!("model applied {}", m.name()),
                RegistryEvent::ModelDeleted(m) => format!("model deleted {}", m.name()),
                RegistryEvent::Synced => "synced".into(),
            })
            .collect()
    }

    #[test]
    fn resync_sends_only_what_changed_and_what_vanished() {
        let mut set = ObjectSet::default();
        for object in [device("a", "1"), device("b", "2"), model("m", "3")] {
            set.record(&object.applied());
        }
        let events = set.resync(
            &[Kind::Device, Kind::DeviceModel],
            [device("a", "1"), device("b", "5"), device("c", "6")],
        );
        assert_eq!(
            names(&events),
            [
                "model deleted m",
                "applied b@Some(\"5\")",
                "applied c@Some(\"6\")"
            ]
        );
        let left: Vec<_> = set.of_kind(Kind::Device, None).map(Object::key).collect();
        assert_eq!(left.len(), 3);
        assert!(set.of_kind(Kind::DeviceModel, None).next().is_none());
    }

    #[test]
    fn resync_of_one_kind_leaves_the_other_alone() {
        let mut set = ObjectSet::default();
        set.record(&device("a", "1").applied());
        set.record(&model("m", "2").applied());
        let events = set.resync(&[Kind::DeviceModel], []);
        assert_eq!(names(&events), ["model deleted m"]);
        assert_eq!(
            names(&set.objects().map(Object::applied).collect::<Vec<_>>()),
            ["applied a@Some(\"1\")"]
        );
    }

    #[test]
    fn objects_list_models_before_devices_and_deleted_events_remove() {
        let mut set = ObjectSet::default();
        set.record(&device("a", "1").applied());
        set.record(&model("m", "2").applied());
        assert_eq!(
            names(&set.objects().map(Object::applied).collect::<Vec<_>>()),
            ["model applied m", "applied a@Some(\"1\")"]
        );
        set.record(&device("a", "3").deleted());
        assert_eq!(
            names(&set.objects().map(Object::applied).collect::<Vec<_>>()),
            ["model applied m"]
        );
    }
}
