//! The messages the cloud's device controller and an edge agent exchange through the tunnel
//! (pure: no I/O). Both ends use this module, so the resource names and contents are defined once.
//!
//! | direction | `route.resource` | `route.operation` | content |
//! |---|---|---|---|
//! | cloud → edge | `node/{node}/membership` | `update` | [`MembershipContent`] |
//! | edge → cloud | `node/{node}/device/{ns}/{name}/twin/edge_updated` | `update` | [`TwinContent`] |
//! | edge → cloud | `node/{node}/device/{ns}/{name}/state` | `update` | KubeEdge's [`DeviceMsg`] |
//! | edge → cloud | `node/{node}/twin/summary` | `update` | [`SummaryContent`] |
//!
//! Desired values travel inside the Devices of a membership update: the edge applies them as a
//! versioned cloud update whose cloud revision is the Device's `metadata.generation` (see
//! [`edge_view`] and [`desired_cloud_version`]), so a resend of the same spec is a no-op at the
//! edge and a newer spec always outranks an older one (the twin engine's version rules,
//! `crate::twin`). When the edge accepts a desired value it echoes it (with its version) in a
//! twin sync's `expected` half: that is the cloud's `observedDesired` and the Applied condition.
//!
//! **Version summary.** On every connection and every reconcile interval the edge sends one
//! [`SummaryContent`]: per device a 16-hex-digit [`desired_digest`] of the spec generation it
//! holds and the cloud version and value of each desired value it holds. The controller computes the same
//! digest from the registry's Device ([`expected_digest`]) and resends only the devices whose
//! digests differ (and removes the devices the node should not have), so an in-sync node costs
//! one small message per interval and zero resends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::devices::{Device, DeviceModel};
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

/// The content of a version summary (edge → cloud): what the edge holds, compactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SummaryContent {
    /// The sequence number of the last cloud message the edge had applied when it made the
    /// summary (none: nothing applied since the agent started). The cloud does not resend a
    /// device whose last update is newer: that update is still on its way.
    pub applied: Option<u64>,
    /// `{namespace}/{name}` of every device the edge serves → its [`desired_digest`].
    pub devices: BTreeMap<String, String>,
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
    /// The edge's version summary (reconcile).
    Summary(SummaryContent),
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

/// `node/{node}/twin/summary`.
pub fn summary_resource(node: &str) -> String {
    format!("node/{node}/twin/summary")
}

/// The key of a device in a [`SummaryContent`]: `{namespace}/{name}`.
pub fn summary_key(device: &DeviceRef) -> String {
    format!("{}/{}", device.namespace, device.name)
}

/// The device a [`SummaryContent`] key names, if it is well formed.
pub fn parse_summary_key(key: &str) -> Option<DeviceRef> {
    let (namespace, name) = key.split_once('/')?;
    (!name.is_empty() && !name.contains('/')).then(|| DeviceRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// The cloud revision of a device's desired values: its `resourceVersion` when numeric (what
/// KubeEdge uses), else its `generation`, else 1 (a local devices file has neither). The
/// controller sends [`edge_view`]s, which have no `resourceVersion`: the generation then.
pub fn desired_cloud_version(device: &Device) -> i64 {
    device
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<i64>().ok())
        .or(device.generation())
        .filter(|v| *v > 0)
        .unwrap_or(1)
}

/// The digest of a device's desired state: its spec `generation` and, per property that has a
/// desired value, the cloud version and the value held. 64-bit FNV-1a over
/// `g={generation};{name}={version}:{value bytes}:{value};…` (names in order), as 16 hex digits:
/// both ends compute it the same way, whatever their build. The value is part of it so that an
/// edge holding another value at the same version (written at the edge, restored from an old
/// backup) is noticed and repaired.
pub fn desired_digest<'a>(
    generation: Option<i64>,
    properties: impl IntoIterator<Item = (&'a str, u64, &'a str)>,
) -> String {
    let properties: BTreeMap<&str, (u64, &str)> = properties
        .into_iter()
        .map(|(name, version, value)| (name, (version, value)))
        .collect();
    let mut text = format!("g={};", generation.unwrap_or(0));
    for (name, (version, value)) in properties {
        text.push_str(&format!("{name}={version}:{}:{value};", value.len()));
    }
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("{hash:016x}")
}

/// The digest an edge holding `device` (as the controller sends it) reports once it has applied
/// it: every desired value of the spec at the device's [`desired_cloud_version`].
pub fn expected_digest(device: &Device) -> String {
    let version = u64::try_from(desired_cloud_version(&edge_view(device))).unwrap_or(0);
    desired_digest(
        device.generation(),
        device.spec.properties.iter().filter_map(|p| {
            let desired = p.desired.as_ref()?;
            Some((p.name.as_str(), version, desired.value.as_str()))
        }),
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
        ["node", _, "twin", "summary"] => serde_json::from_value(message.content.clone())
            .map(EdgeMessage::Summary)
            .map_err(|e| error(format!("summary content: {e}"))),
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

    #[test]
    fn summaries_round_trip_and_keys_name_devices() {
        let content = SummaryContent {
            applied: Some(7),
            devices: BTreeMap::from([(summary_key(&device_ref()), "00ff".to_owned())]),
        };
        let message = envelope(
            "m5".into(),
            1,
            EDGE_SOURCE,
            summary_resource("n1"),
            serde_json::to_value(&content).expect("encode"),
        );
        assert_eq!(
            parse_edge_message(&message).expect("parse"),
            EdgeMessage::Summary(content)
        );
        assert_eq!(parse_summary_key("default/lamp"), Some(device_ref()));
        for bad in ["lamp", "default/", "a/b/c"] {
            assert_eq!(parse_summary_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_digest_is_fixed_and_covers_generation_names_versions_and_values() {
        // Fixed values (64-bit FNV-1a of `g=0;` and of `g=1;a=1:2:on;`, checked independently):
        // edges and clouds of different builds must agree.
        assert_eq!(desired_digest(None, []), "0d0c3f712bbe39c8");
        assert_eq!(
            desired_digest(Some(1), [("a", 1, "on")]),
            fnv(b"g=1;a=1:2:on;")
        );
        let base = desired_digest(Some(2), [("power", 2, "on"), ("mode", 2, "eco")]);
        assert_eq!(
            base,
            desired_digest(Some(2), [("mode", 2, "eco"), ("power", 2, "on")]),
            "order-free"
        );
        for other in [
            desired_digest(Some(3), [("power", 2, "on"), ("mode", 2, "eco")]),
            desired_digest(Some(2), [("power", 1, "on"), ("mode", 2, "eco")]),
            desired_digest(Some(2), [("power", 2, "on")]),
            desired_digest(Some(2), [("power", 2, "on"), ("mood", 2, "eco")]),
            desired_digest(Some(2), [("power", 2, "off"), ("mode", 2, "eco")]),
        ] {
            assert_ne!(base, other);
        }
    }

    /// 64-bit FNV-1a, written out for the fixed value above.
    fn fnv(bytes: &[u8]) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    #[test]
    fn the_expected_digest_is_what_an_edge_holding_the_spec_reports() {
        let device: Device = serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "lamp", "namespace": "default", "generation": 4, "resourceVersion": "99"},
            "spec": {"properties": [
                {"name": "power", "desired": {"value": "on"}},
                {"name": "temp"}
            ]}
        }))
        .expect("device");
        // The edge gets the edge view (no resourceVersion): values at the generation.
        assert_eq!(desired_cloud_version(&edge_view(&device)), 4);
        assert_eq!(
            expected_digest(&device),
            desired_digest(Some(4), [("power", 4, "on")])
        );
    }
}
