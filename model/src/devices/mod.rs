//! `devices.kubeedge.io/v1beta1` Device and DeviceModel: KubeEdge's types, read unchanged.
//!
//! The types cover every field of KubeEdge's v1beta1 CRDs (v1.23) and add, optionally, what
//! edgetwin needs: `status.observedGeneration`, one actuation `condition` per twin and a
//! per-property `pipeline`. `Device` and `DeviceModel` are plain serde types with KubeEdge's JSON
//! shape (`apiVersion`, `kind`, `metadata`, `spec`, `status`); [`ObjectMeta`] holds the part of
//! Kubernetes' object metadata edgetwin reads and writes. The Kubernetes backend (in
//! `edgetwin-core`) wraps them for kube-rs and generates the CRDs from their schemas.
//!
//! - [`load`] parses KubeEdge YAML text (one or many documents) into [`Manifest`]s; reading
//!   files is the caller's business,
//! - [`convert`] turns v1alpha2 Devices and DeviceModels into v1beta1,
//! - [`cycle`] reads `collectCycle` / `reportCycle`.

pub mod convert;
pub mod cycle;
pub mod device;
pub mod device_model;
pub mod load;
mod load_error;
pub mod meta;
pub mod protocol;
pub mod push_method;
mod root;
pub mod schema;
pub mod status;
mod yaml;

pub use device::{
    DesiredPolicy, Device, DeviceMethod, DeviceModelRef, DeviceProperty, DeviceSpec, ModelMismatch,
    StateReport,
};
pub use device_model::{
    AccessMode, DeviceModel, DeviceModelSpec, DeviceModelStatus, ModelError, ModelProperty,
};
pub use load::{Document, LoadError, Manifest};
pub use meta::{ObjectMeta, Time};
pub use protocol::{ProtocolConfig, VisitorConfig};
pub use push_method::PushMethod;
pub use schema::ConfigData;
pub use status::{ConditionType, DeviceStatus, PropertyCondition, Twin, TwinProperty};

/// The API group of Device and DeviceModel.
pub const GROUP: &str = "devices.kubeedge.io";
/// The API version these types implement.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` of Device and DeviceModel objects.
pub const API_VERSION: &str = "devices.kubeedge.io/v1beta1";
/// `kind` of a Device.
pub const DEVICE_KIND: &str = "Device";
/// `kind` of a DeviceModel.
pub const DEVICE_MODEL_KIND: &str = "DeviceModel";
