//! Device and DeviceModel as kube-rs custom resources.
//!
//! The model crate keeps its types free of kube-rs (the edge agent and the mappers must not link
//! it), so the Kubernetes side wraps them here: `#[derive(CustomResource)]` on a transparent
//! newtype of each spec gives [`KubeDevice`] and [`KubeDeviceModel`] (`kube::Resource`, the CRD
//! with its names, printer columns and status subresource) with exactly the spec's JSON and
//! schema. They are converted to the model's types where they enter (the watch, a status
//! write's answer) and built from them only for object references.

use edgetwin_model::devices::{
    Device, DeviceModel, DeviceModelSpec, DeviceModelStatus, DeviceSpec, DeviceStatus, ObjectMeta,
    Time,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as k8s;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a device: which model it is, which node serves it, how to reach it and
/// which properties to collect, report and actuate.
// Each `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "devices.kubeedge.io",
    version = "v1beta1",
    kind = "Device",
    root = "KubeDevice",
    namespaced,
    status = "DeviceStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "dev",
    category = "kubeedge",
    doc = "Device is one device instance (KubeEdge devices.kubeedge.io/v1beta1, with edgetwin's status additions).",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".spec.deviceModelRef.name"
    ),
    printcolumn(
        name = "Protocol",
        type_ = "string",
        json_path = ".spec.protocol.protocolName"
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct KubeDeviceSpec(pub DeviceSpec);

/// The model of a kind of device: its properties with their types, limits and access modes, and
/// the protocol its devices speak.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "devices.kubeedge.io",
    version = "v1beta1",
    kind = "DeviceModel",
    root = "KubeDeviceModel",
    namespaced,
    status = "DeviceModelStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "dm",
    category = "kubeedge",
    doc = "DeviceModel is the blueprint of a kind of device (KubeEdge devices.kubeedge.io/v1beta1).",
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct KubeDeviceModelSpec(pub DeviceModelSpec);

impl From<KubeDevice> for Device {
    fn from(object: KubeDevice) -> Self {
        Device {
            metadata: object_meta(object.metadata),
            spec: object.spec.0,
            status: object.status,
        }
    }
}

impl From<&Device> for KubeDevice {
    fn from(device: &Device) -> Self {
        KubeDevice {
            metadata: kube_object_meta(&device.metadata),
            spec: KubeDeviceSpec(device.spec.clone()),
            status: device.status.clone(),
        }
    }
}

impl From<KubeDeviceModel> for DeviceModel {
    fn from(object: KubeDeviceModel) -> Self {
        DeviceModel {
            metadata: object_meta(object.metadata),
            spec: object.spec.0,
            status: object.status,
        }
    }
}

/// The part of Kubernetes' metadata the model keeps.
fn object_meta(meta: k8s::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        annotations: meta.annotations,
        creation_timestamp: meta.creation_timestamp.map(|t| Time(t.0)),
        generation: meta.generation,
        labels: meta.labels,
        name: meta.name,
        namespace: meta.namespace,
        resource_version: meta.resource_version,
        uid: meta.uid,
    }
}

/// Kubernetes' metadata from the model's.
fn kube_object_meta(meta: &ObjectMeta) -> k8s::ObjectMeta {
    k8s::ObjectMeta {
        annotations: meta.annotations.clone(),
        creation_timestamp: meta.creation_timestamp.as_ref().map(|t| k8s::Time(t.0)),
        generation: meta.generation,
        labels: meta.labels.clone(),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        resource_version: meta.resource_version.clone(),
        uid: meta.uid.clone(),
        ..k8s::ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_kubernetes_device_converts_with_its_metadata_spec_and_status() {
        let object: KubeDevice = serde_json::from_value(json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {
                "name": "lamp", "namespace": "plant", "uid": "u-1", "generation": 4,
                "resourceVersion": "77", "labels": {"a": "b"},
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "managedFields": [{"manager": "kubectl"}], "finalizers": ["x"]
            },
            "spec": {"nodeName": "edge-1", "deviceModelRef": {"name": "led"}},
            "status": {"state": "online"}
        }))
        .expect("a Kubernetes Device");
        let device = Device::from(object.clone());
        assert_eq!(device.name(), "lamp");
        assert_eq!(device.namespace(), "plant");
        assert_eq!(device.generation(), Some(4));
        assert_eq!(device.metadata.resource_version.as_deref(), Some("77"));
        assert_eq!(device.spec.node_name.as_deref(), Some("edge-1"));
        assert_eq!(
            device.status.as_ref().and_then(|s| s.state.as_deref()),
            Some("online")
        );
        // The model's JSON is the Kubernetes object's, less the server-only metadata.
        let mut expected = serde_json::to_value(&object).expect("serializes");
        let meta = expected["metadata"].as_object_mut().expect("metadata");
        meta.remove("managedFields");
        meta.remove("finalizers");
        assert_eq!(serde_json::to_value(&device).expect("serializes"), expected);
        assert_eq!(
            KubeDevice::from(&device).metadata.uid.as_deref(),
            Some("u-1")
        );
    }
}
