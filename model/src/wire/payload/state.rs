//! Device state payloads: `…/state/update` and `…/state/update/result`.

use serde::{Deserialize, Serialize};

use super::{AttributeMap, JsonField, kubeedge_message};

kubeedge_message! {
    /// `$hw/events/device/{id}/state/update` (mapper → edge): KubeEdge's `DeviceUpdate`.
    ///
    /// Producers differ: the led-raspberrypi example sends `{"state":"online"}`, mappers-go adds
    /// `"attributes":null`, the DMI server writes `"State"` (a Go field without a json tag). All
    /// decode, and each round-trips as sent.
    pub struct DeviceUpdate {
        /// The new connection state (`"online"`, `"offline"`, `"OK"`, …).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub state: Option<String>,
        /// Attribute changes (rarely sent).
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub attributes: JsonField<AttributeMap>,
        /// edgetwin: why the device is `offline` or `unhealthy`, for humans. KubeEdge ignores
        /// the key, as it ignores every unknown key.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }
}

kubeedge_message! {
    /// `$hw/events/device/{id}/state/update/result` (edge → mapper): KubeEdge's `DeviceMsg`.
    pub struct DeviceMsg {
        /// The device's state after the update.
        pub device: DeviceStatus,
    }
}

/// The device inside a [`DeviceMsg`]. KubeEdge up to 1.17 writes `last_online`, 1.18 and later
/// `lastOnlineTime`; both are read, and each is written back only if it was set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceStatus {
    /// The device name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The connection state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the device was last online (KubeEdge ≤ 1.17 key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_online: Option<String>,
    /// When the device was last online (KubeEdge ≥ 1.18 key).
    #[serde(rename = "lastOnlineTime", skip_serializing_if = "Option::is_none")]
    pub last_online_time: Option<String>,
}

impl DeviceStatus {
    /// When the device was last online, whichever key carried it (the newer one wins).
    pub fn last_seen(&self) -> Option<&str> {
        self.last_online_time
            .as_deref()
            .or(self.last_online.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};

    #[test]
    fn every_producer_shape_of_a_state_update_decodes() {
        let shapes = [
            r#"{"state":"online"}"#,
            r#"{"event_id":"","timestamp":1,"state":"OK","attributes":null}"#,
            r#"{"event_id":"","timestamp":1,"State":"online"}"#,
        ];
        for json in shapes {
            let update: DeviceUpdate = decode(json.as_bytes()).expect("decodes");
            assert!(update.state.is_some(), "{json}");
        }
        let dmi: DeviceUpdate = decode(shapes[2].as_bytes()).expect("decodes");
        assert_eq!(
            encode(&dmi).expect("encodes"),
            br#"{"event_id":"","timestamp":1,"state":"online"}"#,
            "written with KubeEdge's canonical key"
        );
    }

    #[test]
    fn both_last_online_spellings_are_read() {
        let old: DeviceMsg =
            decode(br#"{"device":{"name":"a","last_online":"t1"}}"#).expect("v1.15");
        assert_eq!(old.device.last_seen(), Some("t1"));
        let new: DeviceMsg =
            decode(br#"{"device":{"name":"a","lastOnlineTime":"t2"}}"#).expect("v1.18");
        assert_eq!(new.device.last_seen(), Some("t2"));
        assert_eq!(
            encode(&new).expect("encodes"),
            br#"{"device":{"name":"a","lastOnlineTime":"t2"}}"#
        );
    }
}
