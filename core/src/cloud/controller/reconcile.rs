//! What a node is sent (pure): the membership content for some of its devices, or all of them.
//!
//! **Reconcile.** When a node connects, and every reconcile interval, the controller sends the
//! node its *complete* membership: every device assigned to it (spec with desired values, as
//! [`edge_view`] gives it) and the models they use. The edge applies it with compare-before-act:
//! an unchanged device costs nothing, a device the edge lacks is added, a desired value the edge
//! missed (its cloud revision is older than the spec's `generation`) is applied, and a device
//! the node no longer has is removed. This repairs any drift after crashes, restores or lost
//! messages, without the cloud having to keep a per-node copy of the edge's twin versions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::cloudlink::{DeviceRef, MembershipContent, edge_view};
use crate::model::{Device, DeviceModel};

/// The membership content listing `devices` (with the models they use) and `removed`.
/// `complete`: the devices are the node's whole list.
pub fn membership_content<'a>(
    devices: impl IntoIterator<Item = &'a Device>,
    models: &BTreeMap<DeviceRef, Arc<DeviceModel>>,
    removed: Vec<DeviceRef>,
    complete: bool,
) -> MembershipContent {
    let devices: Vec<Device> = devices.into_iter().map(edge_view).collect();
    let used: BTreeSet<DeviceRef> = devices
        .iter()
        .filter_map(|device| {
            Some(DeviceRef {
                namespace: device.namespace().to_owned(),
                name: device.spec.device_model_ref.as_ref()?.name.clone(),
            })
        })
        .collect();
    let models = used
        .iter()
        .filter_map(|key| models.get(key))
        .map(|model| model.as_ref().clone())
        .collect();
    MembershipContent {
        models,
        devices,
        removed,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Arc<DeviceModel> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "DeviceModel",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {}
            }))
            .expect("model"),
        )
    }

    #[test]
    fn lists_the_models_the_devices_use_and_strips_status_and_resource_version() {
        let mut device: Device = serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "a", "namespace": "default", "generation": 3, "resourceVersion": "17"},
            "spec": {"deviceModelRef": {"name": "lamp"}, "nodeName": "n1"},
            "status": {"state": "online"}
        }))
        .expect("device");
        let models: BTreeMap<DeviceRef, Arc<DeviceModel>> = ["lamp", "fan"]
            .into_iter()
            .map(|n| {
                (
                    DeviceRef {
                        namespace: "default".into(),
                        name: n.into(),
                    },
                    model(n),
                )
            })
            .collect();
        let content = membership_content([&device], &models, Vec::new(), true);
        assert_eq!(content.models.len(), 1);
        assert_eq!(content.models[0].name(), "lamp");
        assert!(content.complete);
        device.status = None;
        device.metadata.resource_version = None;
        assert_eq!(content.devices, [device]);
    }
}
