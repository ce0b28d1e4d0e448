//! The messages the cloud's device controller and an edge agent exchange through the tunnel
//! (pure: no I/O). Both ends use this module, so the resource names and contents are defined once.
//!
//! | direction | `route.resource` | `route.operation` | content |
//! |---|---|---|---|
//! | cloud → edge | `node/{node}/membership` | `update` | [`MembershipContent`] |
//! | edge → cloud | `node/{node}/device/{ns}/{name}/twin/edge_updated` | `update` | [`TwinContent`] |
//! | edge → cloud | `node/{node}/device/{ns}/{name}/state` | `update` | KubeEdge's [`DeviceMsg`] |
//!
//! Desired values travel inside the Devices of a membership update: the edge applies them as a
//! versioned cloud update whose cloud revision is the Device's `metadata.generation` (see
//! [`edge_view`]), so a resend of the same spec is a no-op at the edge and a newer spec always
//! outranks an older one (the twin engine's version rules, `crate::twin`).

use serde::{Deserialize, Serialize};

use crate::model::{Device, DeviceModel};
use crate::wire::Envelope;
use crate::wire::payload::{DeviceMsg, MsgTwin};

/// The operation of every controller message.
pub const UPDATE: &str = "update";
/// `route.source` of the cloud's messages.
pub const CLOUD_SOURCE: &str = "devicecontroller";
/// `route.source` of the edge's messages.
pub const EDGE_SOURCE: &str = "twin";

/// A device's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl DeviceRef {
    /// The reference of a Device.
    pub fn of(device: &Device) -> DeviceRef {
        DeviceRef {
            namespace: device.namespace().to_owned(),
            name: device.name().to_owned(),
        }
    }
}

impl std::fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The content of a membership update (cloud → edge).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MembershipContent {
    /// The DeviceModels the listed devices use.
    pub models: Vec<DeviceModel>,
    /// Devices added to the node or changed (spec, desired values), as [`edge_view`] gives them.
    pub devices: Vec<Device>,
    /// Devices that left the node.
    pub removed: Vec<DeviceRef>,
    /// Whether `devices` and `models` are the node's complete lists (anything else is removed).
    pub complete: bool,
}

/// The content of a twin sync (edge → cloud): one property's halves with their versions, or
/// `twin: null` when the property was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinContent {
    /// The property.
    pub property: String,
    /// Its twin (KubeEdge's `MsgTwin`: `expected` = desired, `actual` = reported).
    pub twin: Option<MsgTwin>,
}

/// A message from an edge, decoded.
#[derive(Debug, Clone, PartialEq)]
// A message is decoded and handled at once, never stored in bulk: boxing the twin buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum EdgeMessage {
    /// A property's twin changed at the edge.
    Twin {
        /// The device.
        device: DeviceRef,
        /// The change.
        content: TwinContent,
    },
    /// The device's state changed at the edge.
    State {
        /// The device.
        device: DeviceRef,
        /// The new state.
        content: DeviceMsg,
    },
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message {msg_id:?} (resource {resource:?}): {reason}")]
pub struct LinkError {
    /// The message's id.
    pub msg_id: String,
    /// Its resource.
    pub resource: String,
    /// What is wrong.
    pub reason: String,
}

/// `node/{node}/membership`.
pub fn membership_resource(node: &str) -> String {
    format!("node/{node}/membership")
}

/// `node/{node}/device/{ns}/{name}/twin/edge_updated`.
pub fn twin_resource(node: &str, device: &DeviceRef) -> String {
    format!(
        "node/{node}/device/{}/{}/twin/edge_updated",
        device.namespace, device.name
    )
}

/// `node/{node}/device/{ns}/{name}/state`.
pub fn state_resource(node: &str, device: &DeviceRef) -> String {
    format!(
        "node/{node}/device/{}/{}/state",
        device.namespace, device.name
    )
}

/// An `update` envelope from `source` with a JSON content.
pub fn envelope(
    msg_id: String,
    timestamp_ms: i64,
    source: &str,
    resource: String,
    content: serde_json::Value,
) -> Envelope {
    let mut message = Envelope::default();
    message.header.msg_id = msg_id;
    message.header.timestamp = timestamp_ms;
    message.route.source = Some(source.to_owned());
    message.route.group = Some("twin".to_owned());
    message.route.operation = Some(UPDATE.to_owned());
    message.route.resource = Some(resource);
    message.content = content;
    message
}

/// A Device as the edge gets it: spec and identifying metadata, without status and without
/// `resourceVersion`, so that its desired values are versioned by `metadata.generation` (which
/// changes with the spec only) and a resend of an unchanged spec is identical.
pub fn edge_view(device: &Device) -> Device {
    let mut view = device.clone();
    view.metadata.resource_version = None;
    view.metadata.creation_timestamp = None;
    view.status = None;
    view
}

/// Reads a cloud → edge message: the membership content, or why not.
pub fn parse_membership(message: &Envelope) -> Result<MembershipContent, LinkError> {
    let resource = message.route.resource.clone().unwrap_or_default();
    let error = |reason: String| LinkError {
        msg_id: message.header.msg_id.clone(),
        resource: resource.clone(),
        reason,
    };
    if !resource.ends_with("/membership") {
        return Err(error("not a membership resource".into()));
    }
    serde_json::from_value(message.content.clone()).map_err(|e| error(e.to_string()))
}

/// Reads an edge → cloud message.
pub fn parse_edge_message(message: &Envelope) -> Result<EdgeMessage, LinkError> {
    let resource = message.route.resource.clone().unwrap_or_default();
    let error = |reason: String| LinkError {
        msg_id: message.header.msg_id.clone(),
        resource: resource.clone(),
        reason,
    };
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        ["node", _, "device", namespace, name, "twin", "edge_updated"] => {
            let device = DeviceRef {
                namespace: (*namespace).to_owned(),
                name: (*name).to_owned(),
            };
            let content = serde_json::from_value(message.content.clone())
                .map_err(|e| error(format!("twin content: {e}")))?;
            Ok(EdgeMessage::Twin { device, content })
        }
        ["node", _, "device", namespace, name, "state"] => {
            let device = DeviceRef {
                namespace: (*namespace).to_owned(),
                name: (*name).to_owned(),
            };
            let content = message
                .content_as::<DeviceMsg>()
                .map_err(|e| error(format!("state content: {e}")))?;
            Ok(EdgeMessage::State { device, content })
        }
        _ => Err(error("unknown resource".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload::TwinValue;

    fn device_ref() -> DeviceRef {
        DeviceRef {
            namespace: "default".into(),
            name: "lamp".into(),
        }
    }

    #[test]
    fn twin_messages_round_trip() {
        let content = TwinContent {
            property: "power".into(),
            twin: Some(MsgTwin {
                actual: Some(TwinValue::at("on".to_owned(), 5)),
                ..MsgTwin::default()
            }),
        };
        let message = envelope(
            "m1".into(),
            5,
            EDGE_SOURCE,
            twin_resource("n1", &device_ref()),
            serde_json::to_value(&content).expect("encode"),
        );
        let parsed = parse_edge_message(&message).expect("parse");
        assert_eq!(
            parsed,
            EdgeMessage::Twin {
                device: device_ref(),
                content
            }
        );
    }

    #[test]
    fn unknown_and_malformed_messages_are_named() {
        let message = envelope(
            "m2".into(),
            5,
            EDGE_SOURCE,
            "node/n1/device/default/lamp/other".into(),
            serde_json::Value::Null,
        );
        let error = parse_edge_message(&message).expect_err("unknown");
        assert_eq!(error.reason, "unknown resource");
        let message = envelope(
            "m3".into(),
            5,
            EDGE_SOURCE,
            twin_resource("n1", &device_ref()),
            serde_json::json!({"property": 3}),
        );
        let error = parse_edge_message(&message).expect_err("malformed");
        assert!(error.reason.starts_with("twin content:"), "{error}");
        assert_eq!(error.msg_id, "m3");
    }

    #[test]
    fn membership_round_trips() {
        let content = MembershipContent {
            removed: vec![device_ref()],
            complete: true,
            ..MembershipContent::default()
        };
        let message = envelope(
            "m4".into(),
            1,
            CLOUD_SOURCE,
            membership_resource("n1"),
            serde_json::to_value(&content).expect("encode"),
        );
        assert_eq!(parse_membership(&message).expect("parse"), content);
    }
}
