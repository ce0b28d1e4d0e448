//! Membership payloads: which devices belong to an edge node.

use serde::{Deserialize, Serialize};

use super::{Device, JsonField, kubeedge_message};

kubeedge_message! {
    /// `$hw/events/node/{node}/membership/updated` (edge → mapper) and the content of the beehive
    /// `node/{node}/membership` update (cloud → edge): KubeEdge's `MembershipUpdate`.
    ///
    /// Go writes a nil list as `null`; hand-written payloads leave the key out. Both stay as sent.
    pub struct MembershipUpdate {
        /// Devices that joined the node, with their twins.
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub added_devices: JsonField<Vec<Device>>,
        /// Devices that left the node (often only `id`).
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub removed_devices: JsonField<Vec<Device>>,
    }
}

kubeedge_message! {
    /// `$hw/events/node/{node}/membership/get/result` (edge → mapper): KubeEdge's
    /// `MembershipGetResult`. The cloud's answer to a [`MembershipDetailRequest`]
    /// (`MembershipDetail`) has the same shape.
    pub struct MembershipGetResult {
        /// Every device of the node (without twins).
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub devices: JsonField<Vec<Device>>,
    }
}

/// The edge's request for the full device list of its node after (re)connecting: the content of
/// the beehive `membership/detail` `get` message, which edgecore sends as a JSON **string**
/// (KubeEdge's `GetDetailNode`; every key `omitempty`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MembershipDetailRequest {
    /// `"group_membership_event"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Correlates the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// `"detail"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};

    #[test]
    fn membership_lists_keep_missing_null_and_values_apart() {
        let json = r#"{"event_id":"m","timestamp":3,"added_devices":null,"removed_devices":[{"id":"ns/lamp"}]}"#;
        let update: MembershipUpdate = decode(json.as_bytes()).expect("decodes");
        assert_eq!(update.added_devices, JsonField::Null);
        let removed = update.removed_devices.value().expect("removed");
        assert_eq!(removed[0].id.as_deref(), Some("ns/lamp"));
        assert_eq!(encode(&update).expect("encodes"), json.as_bytes());

        let hand_written = r#"{"added_devices":[{"id":"a","name":"a","state":"online"}]}"#;
        let update: MembershipUpdate = decode(hand_written.as_bytes()).expect("decodes");
        assert!(update.removed_devices.is_missing());
        assert_eq!(update.event_id, None);
        assert_eq!(encode(&update).expect("encodes"), hand_written.as_bytes());
    }

    #[test]
    fn device_fields_fold_and_unknown_ones_are_dropped() {
        let json = r#"{"devices":[{"ID":"a","Name":"b","Power_Status":"ON","Attributes":{"Vendor":{"value":"acme"}}}]}"#;
        let result: MembershipGetResult = decode(json.as_bytes()).expect("decodes");
        let device = &result.devices.value().expect("devices")[0];
        assert_eq!(device.id.as_deref(), Some("a"));
        assert_eq!(device.name.as_deref(), Some("b"));
        let attributes = device.attributes.as_ref().expect("attributes");
        assert_eq!(
            attributes["Vendor"].as_ref().map(|a| a.value.as_str()),
            Some("acme")
        );
        assert_eq!(
            encode(&result).expect("encodes"),
            br#"{"devices":[{"id":"a","name":"b","attributes":{"Vendor":{"value":"acme"}}}]}"#
        );
    }
}
