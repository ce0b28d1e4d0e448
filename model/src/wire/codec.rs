//! Decoding and encoding wire payloads.
//!
//! [`decode`] rejects oversize payloads before parsing, matches struct keys the way Go does (exact
//! name first, then ignoring case; keys of maps are never folded, see [`payload`](super::payload))
//! and reports errors with the path of the offending field, worded so that they can go back to a
//! mapper as the `reason` of a `400` [`ErrorResult`].
//!
//! [`ErrorResult`]: super::payload::ErrorResult

use std::fmt;

use serde::{Deserialize, Serialize};

use super::go_json::GoCase;

/// The payload size [`decode`] accepts: [`crate::limits::MAX_PAYLOAD_BYTES`] (twin values are
/// bounded separately by the twin engine).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = crate::limits::MAX_PAYLOAD_BYTES;

/// Where in the JSON text an error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// Why a payload could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The payload is larger than the limit; it was not parsed.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The payload is empty or only whitespace.
    #[error("payload is empty, expected a JSON object")]
    Empty,
    /// The payload is not valid JSON.
    #[error("malformed JSON at {position}: {message}")]
    Malformed {
        /// Where the JSON breaks.
        position: Position,
        /// What is wrong, e.g. "expected `,` or `}`".
        message: String,
    },
    /// The payload is valid JSON but not the expected shape.
    #[error("invalid {type_name}{}: {message}{}", at_path(.path), at_position(.position))]
    Shape {
        /// The type being decoded, e.g. `DeviceTwinUpdate`.
        type_name: &'static str,
        /// Path of the offending field, e.g. `twin.red.actual.value`; empty for the whole payload.
        path: String,
        /// What is wrong, e.g. "invalid type: integer `5`, expected a string".
        message: String,
        /// Where in the text, when decoding from text.
        position: Option<Position>,
    },
    /// The value could not be written as JSON.
    #[error("cannot encode payload: {0}")]
    Encode(#[source] serde_json::Error),
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at `{path}`")
    }
}

fn at_position(position: &Option<Position>) -> String {
    position.map_or_else(String::new, |position| format!(" ({position})"))
}

/// Decodes a payload of at most [`DEFAULT_MAX_PAYLOAD_BYTES`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    decode_with_limit(bytes, DEFAULT_MAX_PAYLOAD_BYTES)
}

/// Decodes a payload of at most `limit` bytes; larger payloads are rejected without parsing.
pub fn decode_with_limit<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    limit: usize,
) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(WireError::Empty);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(GoCase(&mut deserializer)).map_err(with_path::<T>)?;
    deserializer
        .end()
        .map_err(|error| json_error::<T>(String::new(), &error))?;
    Ok(value)
}

/// Decodes an already parsed JSON value (e.g. an [`Envelope`](super::Envelope)'s content) with the
/// same Go key matching and error paths as [`decode`].
pub fn decode_value<'a, T: Deserialize<'a>>(value: &'a serde_json::Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(GoCase(value)).map_err(with_path::<T>)
}

/// Encodes a payload as compact JSON.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    serde_json::to_vec(value).map_err(WireError::Encode)
}

/// The `event_id` of a payload that may not decode as a whole, so that an error reply can still
/// carry it. `None` when the payload is not a JSON object or has no string `event_id`.
pub fn event_id_of(bytes: &[u8]) -> Option<String> {
    /// Only the key wanted, so that a bad value elsewhere does not hide it.
    #[derive(Deserialize)]
    struct EventId {
        event_id: Option<String>,
    }
    decode::<EventId>(bytes).ok()?.event_id
}

fn with_path<T>(error: serde_path_to_error::Error<serde_json::Error>) -> WireError {
    let path = error.path().to_string();
    // serde_path_to_error writes the root as ".".
    let path = if path == "." { String::new() } else { path };
    json_error::<T>(path, error.inner())
}

fn json_error<T>(path: String, error: &serde_json::Error) -> WireError {
    use serde_json::error::Category;
    let (message, position) = split_position(error);
    match (error.classify(), position) {
        (Category::Syntax | Category::Eof, Some(position)) => {
            WireError::Malformed { position, message }
        }
        _ => WireError::Shape {
            type_name: short_type_name::<T>(),
            path,
            message,
            position,
        },
    }
}

/// serde_json appends " at line L column C" to its messages; keep the two apart.
fn split_position(error: &serde_json::Error) -> (String, Option<Position>) {
    let text = error.to_string();
    if error.line() == 0 {
        return (text, None);
    }
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    let position = Position {
        line: error.line(),
        column: error.column(),
    };
    (message, Some(position))
}

/// `edgetwin_core::wire::payload::twin::DeviceTwinUpdate` → `DeviceTwinUpdate`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::wire::payload::{BaseMessage, DeviceTwinUpdate, MembershipUpdate};

    #[test]
    fn oversize_payloads_are_rejected_before_parsing() {
        // Not JSON at all: a parse would fail differently, so this proves no parse happened.
        let payload = vec![b'x'; 65];
        let error = decode_with_limit::<BaseMessage>(&payload, 64).expect_err("too large");
        assert!(matches!(
            error,
            WireError::TooLarge {
                size: 65,
                limit: 64
            }
        ));
        assert_eq!(
            error.to_string(),
            "payload of 65 bytes exceeds the limit of 64 bytes"
        );
        assert!(decode_with_limit::<BaseMessage>(b"{}", 2).is_ok());
    }

    #[test]
    fn empty_payloads_are_named_as_such() {
        for payload in [&b""[..], b"  \n"] {
            let error = decode::<BaseMessage>(payload).expect_err("empty");
            assert!(matches!(error, WireError::Empty), "{error:?}");
        }
    }

    #[test]
    fn malformed_json_reports_the_position() {
        let error = decode::<DeviceTwinUpdate>(b"{\"twin\": {\n  \"red\": }").expect_err("bad");
        match &error {
            WireError::Malformed { position, message } => {
                assert_eq!(
                    *position,
                    Position {
                        line: 2,
                        column: 10
                    }
                );
                assert_eq!(message, "expected value");
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "malformed JSON at line 2 column 10: expected value"
        );

        let error = decode::<BaseMessage>(b"{\"event_id\":\"1\"").expect_err("truncated");
        assert!(matches!(error, WireError::Malformed { .. }), "{error:?}");

        let error = decode::<BaseMessage>(b"{} {}").expect_err("trailing data");
        assert!(error.to_string().contains("trailing characters"), "{error}");
    }

    #[test]
    fn wrong_shapes_name_the_type_the_field_path_and_the_position() {
        let error = decode::<MembershipUpdate>(br#"{"added_devices":[{"id":"a"},{"id":7}]}"#)
            .expect_err("id must be a string");
        match &error {
            WireError::Shape {
                type_name, path, ..
            } => {
                assert_eq!(*type_name, "MembershipUpdate");
                assert_eq!(path, "added_devices[1].id");
            }
            other => panic!("expected Shape, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            "invalid MembershipUpdate at `added_devices[1].id`: invalid type: integer `7`, \
             expected a string (line 1 column 36)"
        );

        let error = decode::<DeviceTwinUpdate>(b"[1,2]").expect_err("not an object");
        assert_eq!(
            error.to_string(),
            "invalid DeviceTwinUpdate: invalid type: sequence, expected struct DeviceTwinUpdate \
             (line 1 column 1)"
        );
    }

    #[test]
    fn wrong_shapes_in_a_json_value_have_a_path_but_no_position() {
        let value = serde_json::json!({"twin": {"red": {"optional": "yes"}}});
        let error = decode_value::<DeviceTwinUpdate>(&value).expect_err("not a bool");
        match error {
            WireError::Shape { path, position, .. } => {
                assert_eq!(path, "twin.red.optional");
                assert_eq!(position, None);
            }
            other => panic!("expected Shape, got {other:?}"),
        }
    }

    #[test]
    fn event_id_survives_a_payload_that_does_not_decode() {
        let payload =
            br#"{"Event_ID":"e-7","timestamp":"now","twin":{"red":{"actual":{"value":1}}}}"#;
        assert!(decode::<DeviceTwinUpdate>(payload).is_err());
        assert_eq!(event_id_of(payload).as_deref(), Some("e-7"));
        assert_eq!(event_id_of(b"not json"), None);
    }

    /// Arbitrary JSON whose keys are often KubeEdge keys, in any case.
    fn kubeedge_like_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let key = prop_oneof![
            prop::sample::select(vec![
                "event_id",
                "timestamp",
                "twin",
                "expected",
                "actual",
                "value",
                "metadata",
                "type",
                "optional",
                "expected_version",
                "actual_version",
                "cloud",
                "edge",
                "delta",
                "last",
                "current",
                "added_devices",
                "removed_devices",
                "devices",
                "id",
                "name",
                "state",
                "attributes",
                "header",
                "msg_id",
                "route",
                "content",
                "State",
                "TWIN",
                "Event_ID",
                "Metadata",
                "Timestamp",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z_]{1,6}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9 ]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Whatever decodes re-encodes to JSON that decodes to the same value.
    fn assert_stable<T>(text: &[u8]) -> Result<(), TestCaseError>
    where
        T: serde::de::DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
    {
        if let Ok(first) = decode::<T>(text) {
            let encoded = encode(&first).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let second: T = decode(&encoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(first, second);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_json_either_fails_cleanly_or_round_trips(value in kubeedge_like_json()) {
            let text = serde_json::to_vec(&value).expect("a Value encodes");
            assert_stable::<DeviceTwinUpdate>(&text)?;
            assert_stable::<crate::wire::payload::DeviceTwinDocument>(&text)?;
            assert_stable::<MembershipUpdate>(&text)?;
            assert_stable::<crate::wire::payload::DeviceUpdate>(&text)?;
            assert_stable::<crate::wire::payload::TwinReply>(&text)?;
            assert_stable::<crate::wire::Envelope>(&text)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode::<DeviceTwinUpdate>(&bytes);
            let _ = decode::<crate::wire::Envelope>(&bytes);
        }
    }

    #[test]
    fn non_utf8_text_is_malformed_not_a_panic() {
        let error = decode::<BaseMessage>(b"{\"event_id\":\"\xff\"}").expect_err("bad utf-8");
        assert!(matches!(error, WireError::Malformed { .. }), "{error:?}");
    }
}
