//! The cloud↔edge envelope: KubeEdge beehive's `model.Message` as JSON.
//!
//! Between cloudcore and edgecore every DeviceTwin payload travels inside this envelope, e.g.
//! route `{source: "twin", group: "resource", operation: "update",
//! resource: "device/{id}/twin/edge_updated"}` with a [`DeviceTwinUpdate`] as content. The content
//! is any JSON; some messages (`membership/detail`) carry it as a JSON **string** holding JSON
//! text, which [`Envelope::content_as`] reads transparently.
//!
//! [`DeviceTwinUpdate`]: super::payload::DeviceTwinUpdate

use serde::{Deserialize, Serialize};

use super::codec::{self, WireError};

/// A beehive message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// Identity and timing.
    pub header: MessageHeader,
    /// Where the message goes and what it does (Go's field `Router`, key `route`; always written).
    pub route: MessageRoute,
    /// The payload: any JSON, or a string holding JSON text (see [`ContentForm`]).
    pub content: serde_json::Value,
}

/// Beehive's `MessageHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageHeader {
    /// The message UUID (always written).
    pub msg_id: String,
    /// For a response: the `msg_id` it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_msg_id: Option<String>,
    /// Milliseconds since the Unix epoch (always written).
    pub timestamp: i64,
    /// The resource version of the Kubernetes object in the content, if any.
    #[serde(rename = "resourceversion", skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Set when the sender waits for a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<bool>,
    /// The beehive context type (newer KubeEdge); empty means the channel context.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
}

/// Beehive's `MessageRoute`; every key is `omitempty`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageRoute {
    /// The sending module, e.g. `"twin"`, `"devicecontroller"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The receiving module, when addressed directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The receiving module group, e.g. `"resource"`, `"twin"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What to do: `"update"`, `"get"`, `"response"`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// What it applies to, e.g. `"node/{node}/membership"`, `"device/{id}/twin/edge_updated"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// How an envelope carries its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentForm {
    /// The content is the JSON value itself.
    Json,
    /// The content is a JSON string whose text is the JSON payload (how edgecore sends
    /// `membership/detail`).
    JsonText,
}

impl Envelope {
    /// How the content is carried: a string is taken to hold JSON text.
    pub fn content_form(&self) -> ContentForm {
        match self.content {
            serde_json::Value::String(_) => ContentForm::JsonText,
            _ => ContentForm::Json,
        }
    }

    /// Decodes the content into a payload type, whichever [`ContentForm`] it has, with Go key
    /// matching and field paths in errors (relative to the content).
    pub fn content_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, WireError> {
        match &self.content {
            serde_json::Value::String(text) => codec::decode(text.as_bytes()),
            value => codec::decode_value(value),
        }
    }

    /// Replaces the content with `payload`, carried in the given form.
    pub fn set_content<T: Serialize + ?Sized>(
        &mut self,
        payload: &T,
        form: ContentForm,
    ) -> Result<(), WireError> {
        self.content = match form {
            ContentForm::Json => serde_json::to_value(payload).map_err(WireError::Encode)?,
            ContentForm::JsonText => serde_json::Value::String(
                serde_json::to_string(payload).map_err(WireError::Encode)?,
            ),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};
    use crate::wire::payload::{MembershipDetailRequest, MembershipUpdate};

    #[test]
    fn header_route_and_object_content_round_trip() {
        let json = r#"{"header":{"msg_id":"m1","parent_msg_id":"m0","timestamp":5,"resourceversion":"42","sync":true},"route":{"source":"twin","group":"resource","operation":"update","resource":"node/n1/membership"},"content":{"added_devices":null}}"#;
        let envelope: Envelope = decode(json.as_bytes()).expect("decodes");
        assert_eq!(envelope.header.resource_version.as_deref(), Some("42"));
        assert_eq!(envelope.content_form(), ContentForm::Json);
        let update: MembershipUpdate = envelope.content_as().expect("content decodes");
        assert!(update.removed_devices.is_missing());
        assert_eq!(encode(&envelope).expect("encodes"), json.as_bytes());
    }

    #[test]
    fn string_content_holding_json_text_is_read_and_written_back_as_a_string() {
        let json = r#"{"header":{"msg_id":"m","timestamp":1},"route":{"resource":"membership/detail"},"content":"{\"event_type\":\"group_membership_event\",\"Group_ID\":\"edge-node1\"}"}"#;
        let mut envelope: Envelope = decode(json.as_bytes()).expect("decodes");
        assert_eq!(envelope.content_form(), ContentForm::JsonText);
        let request: MembershipDetailRequest = envelope.content_as().expect("content decodes");
        assert_eq!(request.group_id.as_deref(), Some("edge-node1"));

        envelope
            .set_content(&request, ContentForm::JsonText)
            .expect("sets");
        assert_eq!(
            envelope.content,
            r#"{"event_type":"group_membership_event","group_id":"edge-node1"}"#
        );
    }

    #[test]
    fn envelope_keys_fold_but_content_keys_are_left_to_the_payload_type() {
        let envelope: Envelope =
            decode(br#"{"Header":{"MSG_ID":"m"},"Route":{"Resource":"r"},"Content":{"Twin":{}}}"#)
                .expect("decodes");
        assert_eq!(envelope.header.msg_id, "m");
        assert_eq!(envelope.route.resource.as_deref(), Some("r"));
        assert_eq!(envelope.content, serde_json::json!({"Twin": {}}));
    }

    #[test]
    fn content_errors_carry_the_path_inside_the_content() {
        let envelope: Envelope =
            decode(br#"{"header":{},"route":{},"content":{"added_devices":{}}}"#).expect("decodes");
        let error = envelope
            .content_as::<MembershipUpdate>()
            .expect_err("an object is not a list");
        assert!(error.to_string().contains("at `added_devices`"), "{error}");
    }
}
