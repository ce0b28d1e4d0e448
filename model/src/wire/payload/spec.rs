//! The payload of edgetwin's device spec topic,
//! `edgetwin/v1/node/{node}/device/{namespace}/{name}/spec`.

use serde::{Deserialize, Serialize};

use crate::devices::{Device, DeviceModel};

/// A device's full spec and its model, published retained by the edge agent for the node's
/// mappers. An empty payload on the topic (not this type) means the device was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpecMessage {
    /// The Device object (its `spec.properties[].desired` values are informative: desired
    /// values reach the mapper as twin deltas).
    pub device: Device,
    /// The DeviceModel the device refers to, when the agent has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<DeviceModel>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{DeviceModelRef, DeviceSpec};
    use crate::wire::codec::{decode, encode};

    #[test]
    fn a_spec_message_round_trips_and_the_model_is_optional() {
        let device = Device::new(
            "lamp",
            DeviceSpec {
                device_model_ref: Some(DeviceModelRef { name: "led".into() }),
                ..DeviceSpec::default()
            },
        );
        let message = DeviceSpecMessage {
            device,
            model: None,
        };
        let bytes = encode(&message).expect("encodes");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(
            text.starts_with(
                r#"{"device":{"apiVersion":"devices.kubeedge.io/v1beta1","kind":"Device""#
            ),
            "{text}"
        );
        assert!(!text.contains("\"model\""));
        let back: DeviceSpecMessage = decode(&bytes).expect("decodes");
        assert_eq!(back, message);
    }
}
