//! edgetwin's pure core: what a device is, what travels on the wire and how a twin changes.
//!
//! - [`devices`]: KubeEdge's `devices.kubeedge.io/v1beta1` Device and DeviceModel, read
//!   unchanged, with YAML parsing and v1alpha2 conversion;
//! - [`value`]: typed property values ([`PropertyType`], [`Value`], [`Limits`]);
//! - [`pipeline`]: a property's data pipeline (scale, clamp, round, deadband, window, rate
//!   limit, map);
//! - [`wire`]: KubeEdge's DeviceTwin MQTT topics and JSON payloads, the cloud⇄edge envelope and
//!   the messages the device controller and an edge agent exchange;
//! - [`twin`]: the twin engine (desired/reported, versions, delta);
//! - [`merge_patch`]: JSON merge patch (RFC 7386), as the registry applies it;
//! - [`limits`]: the size limits every side shares (values, objects, payloads, packets, tunnel
//!   messages, request bodies);
//! - [`mac`]: HMAC and PBKDF2 over SHA-2 (sealed spec messages, broker password files).
//!
//! No I/O: no async runtime, files, sockets, clock or environment. Time and file contents are
//! inputs; the edge agent, the cloud and the mapper SDK do the I/O around it.

pub mod devices;
pub mod limits;
pub mod mac;
pub mod merge_patch;
pub mod pipeline;
pub mod twin;
pub mod value;
pub mod wire;

pub use devices::{
    API_VERSION, AccessMode, Device, DeviceModel, DeviceProperty, DeviceSpec, DeviceStatus,
    Manifest, ModelProperty, ObjectMeta,
};
pub use value::{Limits, PropertyType, Value, ValueError};
