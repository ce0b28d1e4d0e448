//! Failure replies (`{code, reason}`) and the reply type of the twin result topics.

use serde::{Deserialize, Deserializer, Serialize};

use super::{BaseMessage, DeviceTwinResult, JsonField, TwinMap, kubeedge_message};
use crate::wire::codec::WireError;

kubeedge_message! {
    /// A failure reply, KubeEdge's `dttype.Result`, sent on `…/twin/update/result`,
    /// `…/twin/get/result` and `…/state/update/result`. `code` and `reason` are `omitempty`.
    pub struct ErrorResult {
        /// An HTTP-like status code ([`ErrorResult::BAD_REQUEST`], …).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<i64>,
        /// Why the request failed, for humans.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }
}

impl ErrorResult {
    /// The request is malformed or breaks a rule.
    pub const BAD_REQUEST: i64 = 400;
    /// The device or property does not exist.
    pub const NOT_FOUND: i64 = 404;
    /// The request is understood but not allowed (edgetwin: a desired value the device takes
    /// from the cloud only).
    pub const FORBIDDEN: i64 = 403;
    /// The request conflicts with a newer version.
    pub const CONFLICT: i64 = 409;
    /// The edge failed to handle a valid request.
    pub const INTERNAL_ERROR: i64 = 500;

    /// A reply to the request identified by `base`.
    pub fn new(base: BaseMessage, code: i64, reason: impl Into<String>) -> Self {
        ErrorResult {
            event_id: base.event_id,
            timestamp: base.timestamp,
            code: Some(code),
            reason: Some(reason.into()),
        }
    }

    /// The `400` reply to a payload that did not decode; the reason is the error's message.
    pub fn bad_payload(base: BaseMessage, error: &WireError) -> Self {
        ErrorResult::new(base, ErrorResult::BAD_REQUEST, error.to_string())
    }
}

/// What arrives on `…/twin/update/result` and `…/twin/get/result`: the twin on success, or
/// `{code, reason}` on failure. A payload with a `code` key is a failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TwinReply {
    /// The request succeeded.
    Ok(DeviceTwinResult),
    /// The request failed.
    Err(ErrorResult),
}

/// Every key either reply can carry.
#[derive(Default, Deserialize)]
#[serde(default)]
struct AnyReply {
    event_id: Option<String>,
    timestamp: Option<i64>,
    twin: JsonField<TwinMap>,
    code: Option<i64>,
    reason: Option<String>,
}

impl<'de> Deserialize<'de> for TwinReply {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let reply = AnyReply::deserialize(deserializer)?;
        Ok(match reply.code {
            Some(code) => TwinReply::Err(ErrorResult {
                event_id: reply.event_id,
                timestamp: reply.timestamp,
                code: Some(code),
                reason: reply.reason,
            }),
            None => TwinReply::Ok(DeviceTwinResult {
                event_id: reply.event_id,
                timestamp: reply.timestamp,
                twin: reply.twin,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};

    #[test]
    fn error_result_shape() {
        let result = ErrorResult::new(
            BaseMessage {
                event_id: Some("e".into()),
                timestamp: Some(9),
            },
            ErrorResult::NOT_FOUND,
            "device lamp not found",
        );
        assert_eq!(
            encode(&result).expect("encodes"),
            br#"{"event_id":"e","timestamp":9,"code":404,"reason":"device lamp not found"}"#
        );
    }

    #[test]
    fn a_decode_error_becomes_a_400_reason_a_mapper_can_act_on() {
        let error = decode::<crate::wire::payload::DeviceTwinUpdate>(br#"{"twin":{"a":[]}}"#)
            .expect_err("a list is not a twin property");
        let result = ErrorResult::bad_payload(BaseMessage::default(), &error);
        assert_eq!(result.code, Some(400));
        let reason = result.reason.expect("reason");
        assert!(reason.contains("`twin.a`"), "{reason}");
    }

    #[test]
    fn twin_reply_tells_success_from_failure() {
        let ok: TwinReply =
            decode(br#"{"event_id":"1","timestamp":2,"twin":{"red":null}}"#).expect("decodes");
        match &ok {
            TwinReply::Ok(result) => assert_eq!(
                result.twin.value().map(|twin| twin.contains_key("red")),
                Some(true)
            ),
            TwinReply::Err(error) => panic!("unexpected failure {error:?}"),
        }
        assert_eq!(
            encode(&ok).expect("encodes"),
            br#"{"event_id":"1","timestamp":2,"twin":{"red":null}}"#
        );

        let err: TwinReply =
            decode(br#"{"event_id":"1","Code":400,"reason":"bad"}"#).expect("decodes");
        match err {
            TwinReply::Err(error) => {
                assert_eq!(error.code, Some(400));
                assert_eq!(error.reason.as_deref(), Some("bad"));
            }
            TwinReply::Ok(result) => panic!("unexpected success {result:?}"),
        }
    }
}
