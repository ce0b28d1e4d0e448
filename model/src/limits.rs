//! The size limits every side shares, in one place: the registry, the device controller, the
//! tunnel, the edge agent, the embedded broker and the mapper SDK all read them from here, so an
//! input accepted at one end always fits every hop after it.
//!
//! ```text
//!  registry request body  ≤ MAX_REQUEST_BODY_BYTES (3 MiB)      413 RequestEntityTooLarge
//!    a Device or model    ≤ MAX_OBJECT_BYTES (256 KiB as JSON)  422 Invalid
//!    a desired value      ≤ MAX_VALUE_BYTES (64 KiB)            422 Invalid
//!  tunnel message         ≤ MAX_TUNNEL_MESSAGE_BYTES (1 MiB)    ≥ one Device + its model
//!  MQTT packet            ≤ MAX_PACKET_BYTES (1 MiB + 64 KiB)   broker and every client alike
//!    an MQTT payload      ≤ MAX_PAYLOAD_BYTES (1 MiB)           agent: {code: 400, reason}
//!    a reported value     ≤ MAX_VALUE_BYTES (64 KiB)            agent: {code: 400, reason}
//! ```
//!
//! The chain holds by construction (checked below at compile time): a membership update with one
//! Device and its model fits a tunnel message; the retained spec message of one Device and its
//! model fits an MQTT payload; every payload the agent parses fits a packet, with room for the
//! topic, so a payload over the agent's limit still reaches it and gets an answer. The broker
//! and every MQTT client of ours (the agent's, the SDK's) use the same packet limit: a message the
//! broker accepted is never too large for a subscriber of ours. `docs/security.md` ("Limits")
//! lists where each limit is checked and what the error looks like.

/// The largest twin value, desired or reported, in bytes of UTF-8: 64 KiB.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The largest Device or DeviceModel, in bytes of compact JSON as the edge gets it (a Device
/// without its status): 256 KiB, Kubernetes' own limit on an object's annotations.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024;

/// The largest body the registry API reads: 3 MiB, as the Kubernetes API server.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The largest message on the cloud⇄edge tunnel (one WebSocket message, frame included): 1 MiB.
pub const MAX_TUNNEL_MESSAGE_BYTES: usize = 1024 * 1024;

/// Room in a tunnel message for the frame and envelope around a membership update's content.
pub const TUNNEL_FRAME_OVERHEAD_BYTES: usize = 4 * 1024;

/// The largest MQTT payload the edge agent and the mappers parse: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// The largest MQTT packet (its remaining length: variable header, topic and payload) that the
/// embedded broker accepts and every MQTT client of ours reads: a payload of
/// [`MAX_PAYLOAD_BYTES`] plus 64 KiB for the topic and the header.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 64 * 1024;

/// Room in an MQTT payload for what surrounds a Device and its model in the retained spec
/// message.
pub const SPEC_MESSAGE_OVERHEAD_BYTES: usize = 4 * 1024;

// The chain, checked when this crate compiles.
const _: () = {
    assert!(2 * MAX_OBJECT_BYTES + TUNNEL_FRAME_OVERHEAD_BYTES <= MAX_TUNNEL_MESSAGE_BYTES);
    assert!(2 * MAX_OBJECT_BYTES + SPEC_MESSAGE_OVERHEAD_BYTES <= MAX_PAYLOAD_BYTES);
    assert!(MAX_VALUE_BYTES < MAX_OBJECT_BYTES);
    assert!(MAX_PAYLOAD_BYTES < MAX_PACKET_BYTES);
    assert!(MAX_OBJECT_BYTES < MAX_REQUEST_BODY_BYTES);
};

/// An input over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {size} bytes, more than the limit of {limit} bytes ({})", human(*.limit))]
pub struct TooLarge {
    /// What was measured, e.g. `Device "lamp"` or `the desired value of "power"`.
    pub what: String,
    /// Its size in bytes.
    pub size: usize,
    /// The limit in bytes.
    pub limit: usize,
}

/// Checks `size` against `limit`.
pub fn check(what: impl FnOnce() -> String, size: usize, limit: usize) -> Result<(), TooLarge> {
    if size > limit {
        Err(TooLarge {
            what: what(),
            size,
            limit,
        })
    } else {
        Ok(())
    }
}

/// The size of `object` as compact JSON, without building the text.
pub fn json_size(object: &impl serde::Serialize) -> usize {
    let mut counter = ByteCounter(0);
    // Writing into a counter cannot fail; a type that refuses to serialize counts as empty.
    let _ = serde_json::to_writer(&mut counter, object);
    counter.0
}

/// A byte count such as `256 KiB` or `1 MiB` (exact: `1536 KiB`, never rounded).
pub fn human(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_size_is_the_length_of_the_compact_text() {
        let value = serde_json::json!({"a": [1, 2, "three"], "b": {"c": null}});
        assert_eq!(
            json_size(&value),
            serde_json::to_vec(&value).expect("json").len()
        );
    }

    #[test]
    fn too_large_names_what_the_size_and_the_limit() {
        assert_eq!(check(|| unreachable!(), 10, 10), Ok(()));
        let error = check(|| "Device \"lamp\"".into(), 300_000, MAX_OBJECT_BYTES).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Device \"lamp\" is 300000 bytes, more than the limit of 262144 bytes (256 KiB)"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(MAX_VALUE_BYTES), "64 KiB");
        assert_eq!(human(MAX_PAYLOAD_BYTES), "1 MiB");
        assert_eq!(human(MAX_PACKET_BYTES), "1088 KiB");
        assert_eq!(human(MAX_REQUEST_BODY_BYTES), "3 MiB");
        assert_eq!(human(1_572_864), "1536 KiB");
        assert_eq!(human(1000), "1000 B");
    }
}
