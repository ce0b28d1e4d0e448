//! The device record carried in membership payloads, and device attributes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Metadata, TwinMap};

/// Attributes by name. A `None` value is JSON `null`, which deletes the attribute.
pub type AttributeMap = BTreeMap<String, Option<MsgAttr>>;

/// A device attribute, KubeEdge's `MsgAttr`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MsgAttr {
    /// The value (always written, like Go).
    pub value: String,
    /// Whether the attribute is optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// `{"type": …}`: the attribute type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A device in membership payloads (`added_devices`, `removed_devices`, `devices`): KubeEdge's
/// `dttype.Device`. Every key is optional (`omitempty` in Go) and left out when absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Device {
    /// The device id: `{name}` up to KubeEdge 1.16, `{namespace}/{name}` since 1.17.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The Device resource name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Connection state as the mapper reported it (`"online"`, `"offline"`, `"OK"`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the device was last online, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_online: Option<String>,
    /// Device attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<AttributeMap>,
    /// Twin properties (versions are left out on `membership/updated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twin: Option<TwinMap>,
}
