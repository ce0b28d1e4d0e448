//! The frames of the tunnel protocol: one JSON object per WebSocket text message.
//!
//! ```text
//! {"hello":{"version":1,"node":"edge-1","stream":81,"resume":{"stream":7,"seq":42},"window":64}}
//! {"msg":{"seq":43,"prev":42,"message":{"header":{…},"route":{…},"content":…}}}
//! {"ack":{"through":43,"received":45}}
//! ```
//! Once both hellos are exchanged, an idle side repeats its ack as heartbeat (before that, a
//! WebSocket ping). See `docs/tunnel.md`.

use serde::{Deserialize, Serialize};

use super::session::{Ack, ResumePoint, Seq, StreamId};
use edgetwin_model::wire::Envelope;

/// The protocol version this code speaks, announced in the hello.
pub const PROTOCOL_VERSION: u32 = 1;

/// The path prefix edge nodes connect to; the node name follows.
pub const TUNNEL_PATH: &str = "/tunnel/v1/nodes/";

/// The WebSocket subprotocol both sides ask for during the upgrade.
pub const SUBPROTOCOL: &str = "edgetwin.tunnel.v1";

/// The first frame each side sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The edge node of this link (the cloud repeats the authenticated name).
    pub node: String,
    /// The sender's outbox stream.
    pub stream: StreamId,
    /// How far the sender has applied the receiver's stream (`null`: nothing recorded).
    pub resume: Option<ResumePoint>,
    /// At most this many unacknowledged messages may be sent to the sender.
    pub window: u32,
}

/// One protocol frame.
// Frames only live while being encoded or decoded; boxing the message would cost an allocation
// per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    /// Opens the session; see [`Hello`].
    Hello(Hello),
    /// A data message of the sender's stream.
    Msg {
        /// Its sequence number.
        seq: Seq,
        /// The sequence number of the message sent before it on this link (or the resume
        /// point): nothing the receiver still needs lies between `prev` and `seq`.
        prev: Seq,
        /// The message.
        message: Envelope,
    },
    /// How far the sender of the ack has applied and received the other side's stream.
    Ack(Ack),
}

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed tunnel frame: {0}")]
pub struct FrameError(#[from] serde_json::Error);

impl Frame {
    /// The frame as JSON text.
    pub fn encode(&self) -> Result<String, FrameError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses a frame.
    pub fn decode(text: &str) -> Result<Frame, FrameError> {
        Ok(serde_json::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shape_and_round_trip() {
        let hello = Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            node: "edge-1".into(),
            stream: StreamId(81),
            resume: Some(ResumePoint {
                stream: StreamId(7),
                seq: 42,
            }),
            window: 64,
        });
        let text = hello.encode().expect("encode");
        assert_eq!(
            text,
            r#"{"hello":{"version":1,"node":"edge-1","stream":81,"resume":{"stream":7,"seq":42},"window":64}}"#
        );
        assert_eq!(Frame::decode(&text).expect("decode"), hello);

        let ack = Frame::Ack(Ack {
            through: 43,
            received: 45,
        });
        let text = ack.encode().expect("encode");
        assert_eq!(text, r#"{"ack":{"through":43,"received":45}}"#);
        assert_eq!(Frame::decode(&text).expect("decode"), ack);

        let mut message = Envelope::default();
        message.header.msg_id = "m-1".into();
        message.route.resource = Some("device/default/lamp/twin/edge_updated".into());
        let msg = Frame::Msg {
            seq: 43,
            prev: 42,
            message,
        };
        let text = msg.encode().expect("encode");
        assert!(
            text.starts_with(r#"{"msg":{"seq":43,"prev":42,"message":{"header":{"msg_id":"m-1""#),
            "{text}"
        );
        assert_eq!(Frame::decode(&text).expect("decode"), msg);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "{}",
            r#"{"nope":{}}"#,
            r#"{"ack":{"through":-1,"received":0}}"#,
            r#"{"ack":{"through":1}}"#,
            "[1]",
        ] {
            let error = Frame::decode(text).expect_err(text);
            assert!(
                error.to_string().starts_with("malformed tunnel frame"),
                "{error}"
            );
        }
    }
}
