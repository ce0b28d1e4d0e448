//! Which devices each node serves (pure): the table the tunnel's isolation check reads, and the
//! per-node updates a registry change causes.

use std::collections::{BTreeMap, BTreeSet};

use edgetwin_model::devices::Device;
use edgetwin_model::wire::cloud_edge::DeviceRef;

/// What a node must be told about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeUpdate {
    /// Send the device (new on the node, or its spec changed).
    Upsert(DeviceRef),
    /// The device left the node.
    Remove(DeviceRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    node: Option<String>,
    generation: Option<i64>,
    model: Option<DeviceRef>,
}

/// The device → node table, and its inverse.
#[derive(Debug, Default)]
pub struct Assignments {
    devices: BTreeMap<DeviceRef, Placement>,
    nodes: BTreeMap<String, BTreeSet<DeviceRef>>,
}

impl Assignments {
    /// Records a created or changed Device; returns the updates per node. A change of status or
    /// metadata only (same `generation`, same node) needs none.
    pub fn apply(&mut self, device: &Device) -> Vec<(String, NodeUpdate)> {
        let key = DeviceRef::of(device);
        let placement = Placement {
            node: device.node_name().map(str::to_owned),
            generation: device.generation(),
            model: device
                .spec
                .device_model_ref
                .as_ref()
                .map(|model| DeviceRef {
                    namespace: device.namespace().to_owned(),
                    name: model.name.clone(),
                }),
        };
        let previous = self.devices.insert(key.clone(), placement.clone());
        let old_node = previous.as_ref().and_then(|p| p.node.clone());
        let mut updates = Vec::new();
        if previous.as_ref() == Some(&placement) {
            return updates;
        }
        if old_node != placement.node
            && let Some(old) = old_node
        {
            self.unlink(&old, &key);
            updates.push((old, NodeUpdate::Remove(key.clone())));
        }
        if let Some(node) = placement.node {
            self.nodes
                .entry(node.clone())
                .or_default()
                .insert(key.clone());
            updates.push((node, NodeUpdate::Upsert(key)));
        }
        updates
    }

    /// Forgets a deleted Device; returns the node that must remove it.
    pub fn remove(&mut self, key: &DeviceRef) -> Option<(String, NodeUpdate)> {
        let node = self.devices.remove(key)?.node?;
        self.unlink(&node, key);
        Some((node, NodeUpdate::Remove(key.clone())))
    }

    fn unlink(&mut self, node: &str, key: &DeviceRef) {
        if let Some(set) = self.nodes.get_mut(node) {
            set.remove(key);
            if set.is_empty() {
                self.nodes.remove(node);
            }
        }
    }

    /// The node a device is assigned to.
    pub fn node_of(&self, key: &DeviceRef) -> Option<&str> {
        self.devices.get(key)?.node.as_deref()
    }

    /// Whether `key` is assigned to `node`.
    pub fn is_assigned(&self, node: &str, key: &DeviceRef) -> bool {
        self.node_of(key) == Some(node)
    }

    /// The devices of a node, ordered.
    pub fn devices_of(&self, node: &str) -> impl Iterator<Item = &DeviceRef> {
        self.nodes.get(node).into_iter().flatten()
    }

    /// Every node that has at least one device.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    /// The devices (with their nodes) that use the model `model`: they are sent again when it
    /// changes, so their node gets the new model.
    pub fn using_model(&self, model: &DeviceRef) -> Vec<(String, NodeUpdate)> {
        self.devices
            .iter()
            .filter(|(_, p)| p.model.as_ref() == Some(model))
            .filter_map(|(key, p)| Some((p.node.clone()?, NodeUpdate::Upsert(key.clone()))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::devices::Device;

    pub(crate) fn device(name: &str, node: Option<&str>, generation: i64) -> Device {
        let mut device: Device = serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": name, "namespace": "default", "generation": generation},
            "spec": {"deviceModelRef": {"name": "lamp-model"}}
        }))
        .expect("device");
        device.spec.node_name = node.map(str::to_owned);
        device
    }

    fn key(name: &str) -> DeviceRef {
        DeviceRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn create_change_move_and_delete_tell_the_right_nodes() {
        let mut table = Assignments::default();
        assert_eq!(
            table.apply(&device("a", Some("n1"), 1)),
            [("n1".to_owned(), NodeUpdate::Upsert(key("a")))]
        );
        // A status write (same generation) tells nobody.
        assert!(table.apply(&device("a", Some("n1"), 1)).is_empty());
        assert_eq!(
            table.apply(&device("a", Some("n1"), 2)),
            [("n1".to_owned(), NodeUpdate::Upsert(key("a")))]
        );
        assert_eq!(
            table.apply(&device("a", Some("n2"), 3)),
            [
                ("n1".to_owned(), NodeUpdate::Remove(key("a"))),
                ("n2".to_owned(), NodeUpdate::Upsert(key("a")))
            ]
        );
        assert!(table.is_assigned("n2", &key("a")));
        assert!(!table.is_assigned("n1", &key("a")));
        assert_eq!(table.devices_of("n1").count(), 0);
        assert_eq!(
            table.remove(&key("a")),
            Some(("n2".to_owned(), NodeUpdate::Remove(key("a"))))
        );
        assert_eq!(table.remove(&key("a")), None);
        assert_eq!(table.nodes().count(), 0);
    }

    #[test]
    fn unassigned_devices_belong_to_no_node() {
        let mut table = Assignments::default();
        assert!(table.apply(&device("a", None, 1)).is_empty());
        assert_eq!(table.remove(&key("a")), None);
    }

    #[test]
    fn a_model_change_resends_its_devices() {
        let mut table = Assignments::default();
        table.apply(&device("a", Some("n1"), 1));
        table.apply(&device("b", Some("n2"), 1));
        table.apply(&device("c", None, 1));
        let updates = table.using_model(&key("lamp-model"));
        assert_eq!(
            updates,
            [
                ("n1".to_owned(), NodeUpdate::Upsert(key("a"))),
                ("n2".to_owned(), NodeUpdate::Upsert(key("b")))
            ]
        );
    }
}
