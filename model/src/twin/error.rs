//! Why the engine refuses an update: [`TwinError`] for requests answered with KubeEdge's
//! `{code, reason}` result, [`Rejection`] for the per-property refusals of cloud updates.

use std::fmt;

use crate::value::PropertyType;
use crate::wire::payload::{BaseMessage, ErrorResult};

use super::state::{Half, TwinVersion};

/// Why an edge update (mapper `twin/update`) or a value from the cloud is refused.
///
/// Where KubeEdge has a reason text for the case, the message starts with it verbatim (e.g. `the
/// value is not int or integer`), so tools that match on KubeEdge's text keep working; the rest
/// names the property and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TwinError {
    /// The device is not known on this node (answered by the caller, which owns the device list).
    #[error("update rejected due to the device is not existed")]
    DeviceNotFound,
    /// The request has no `twin` map (missing or `null`).
    #[error("Update twin error, key:twin does not exist")]
    MissingTwin,
    /// A property name that is empty, longer than 128 bytes or holds control characters.
    #[error("the property name {} must be 1 to 128 bytes without control characters", Excerpt(.property))]
    InvalidName {
        /// The offending name.
        property: String,
    },
    /// The value does not parse as the property's type.
    #[error("{}: property {property:?} is {}, got {}", wrong_type_reason(*.value_type), .value_type.twin_type_name(), Excerpt(.value))]
    WrongType {
        /// The property.
        property: String,
        /// Its type.
        value_type: PropertyType,
        /// The refused value.
        value: String,
    },
    /// A new property whose `metadata.type` is not a type edgetwin knows.
    #[error("the value type is not allowed: property {property:?} has type {}", Excerpt(.type_name))]
    TypeNotAllowed {
        /// The property.
        property: String,
        /// The type the request gave.
        type_name: String,
    },
    /// The value is longer than the configured limit.
    #[error(
        "the value of property {property:?} is {size} bytes, more than the limit of {limit} bytes"
    )]
    ValueTooLarge {
        /// The property.
        property: String,
        /// The value's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A desired value below the model's minimum.
    #[error("the desired value {value} of property {property:?} is below the minimum {minimum}")]
    BelowMinimum {
        /// The property.
        property: String,
        /// The refused value.
        value: String,
        /// The model's minimum.
        minimum: f64,
    },
    /// A desired value above the model's maximum.
    #[error("the desired value {value} of property {property:?} is above the maximum {maximum}")]
    AboveMaximum {
        /// The property.
        property: String,
        /// The refused value.
        value: String,
        /// The model's maximum.
        maximum: f64,
    },
    /// A desired value for a property the model declares `ReadOnly`.
    #[error("property {property:?} is ReadOnly: it cannot take a desired value")]
    ReadOnly {
        /// The property.
        property: String,
    },
    /// A `null` (delete) for a property that is not optional.
    #[error("property {property:?} is not optional and cannot be deleted")]
    NotOptional {
        /// The property.
        property: String,
    },
    /// A `null` (delete) for a property that never existed.
    #[error("The request body is wrong: property {property:?} does not exist")]
    NoSuchProperty {
        /// The property.
        property: String,
    },
    /// A new property that the device's model does not define.
    #[error("property {property:?} is not defined in the device model")]
    NotInModel {
        /// The property.
        property: String,
    },
    /// An edge write of a desired value (`expected`, or a `null` that would delete it) for a
    /// property whose desired value comes from the cloud only (`desiredPolicy`).
    #[error(
        "property {property:?} takes its desired value from the cloud only (desiredPolicy \
         CloudWins): report with `actual`; the Device's owner can allow edge writes with \
         desiredPolicy: EdgeMayWrite"
    )]
    DesiredFromCloudOnly {
        /// The property.
        property: String,
    },
}

/// KubeEdge's reason text for a value of the wrong type (`dtcommon.ValidateValue`).
fn wrong_type_reason(value_type: PropertyType) -> &'static str {
    match value_type {
        PropertyType::Int => "the value is not int or integer",
        PropertyType::Float | PropertyType::Double => "the value is not float",
        PropertyType::Boolean => "the bool value must be true or false",
        PropertyType::String | PropertyType::Bytes | PropertyType::Stream => {
            "the value is not valid"
        }
    }
}

impl TwinError {
    /// The result code KubeEdge sends for this error: 404 for an unknown device, 400 otherwise
    /// (and edgetwin's 403 for a desired value the edge may not write).
    pub fn code(&self) -> i64 {
        match self {
            TwinError::DeviceNotFound => ErrorResult::NOT_FOUND,
            TwinError::DesiredFromCloudOnly { .. } => ErrorResult::FORBIDDEN,
            _ => ErrorResult::BAD_REQUEST,
        }
    }

    /// The `{code, reason}` result answering the request `request` at `now_ms`.
    pub fn to_result(&self, request: &BaseMessage, now_ms: i64) -> ErrorResult {
        ErrorResult::new(reply_to(request, now_ms), self.code(), self.to_string())
    }
}

/// The `twin/get/result` answer for a device this node does not have (KubeEdge's text).
pub fn get_device_not_found(device_id: &str, request: &BaseMessage, now_ms: i64) -> ErrorResult {
    ErrorResult::new(
        reply_to(request, now_ms),
        ErrorResult::NOT_FOUND,
        format!("Device {device_id} not found while getting twin"),
    )
}

/// The head of a reply to `request` sent at `now_ms`: the request's event id (empty when it had
/// none, as edgecore writes it) and the time.
pub(super) fn reply_to(request: &BaseMessage, now_ms: i64) -> BaseMessage {
    BaseMessage {
        event_id: Some(request.event_id.clone().unwrap_or_default()),
        timestamp: Some(now_ms),
    }
}

/// One property (or one half of it) of a cloud update that the engine did not apply. The
/// cloud-bound sync of the same [`Effects`](super::Effects) carries the edge's current state of
/// it, so the cloud can adopt that state and retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The property.
    pub property: String,
    /// The half the refusal is about; `None` for the property as a whole (e.g. a delete).
    pub half: Option<Half>,
    /// Why.
    pub reason: RejectReason,
}

/// Why a cloud update of a twin half was not applied.
#[derive(Debug, Clone, PartialEq)]
pub enum RejectReason {
    /// The cloud's revision is older than the one the edge holds: a stale or reordered message.
    StaleCloudVersion {
        /// The edge's version.
        current: TwinVersion,
        /// The message's version.
        incoming: TwinVersion,
    },
    /// The same cloud revision the edge already holds, but the edge has written the half since:
    /// a resend of a value the edge has overwritten.
    StaleEdgeVersion {
        /// The edge's version.
        current: TwinVersion,
        /// The message's version.
        incoming: TwinVersion,
    },
    /// A new cloud revision written without knowing the edge's latest write, and the device's
    /// conflict policy (or the reported-half rule) keeps the edge's value.
    EdgeWins {
        /// The edge's version.
        current: TwinVersion,
        /// The message's version.
        incoming: TwinVersion,
    },
    /// The message carries a value but no version for it (KubeEdge: "Version not allowed be nil
    /// while syncing").
    MissingVersion,
    /// A version counter is negative.
    InvalidVersion,
    /// The value itself is refused.
    Invalid(TwinError),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "property {:?}", self.property)?;
        if let Some(half) = self.half {
            write!(f, " ({})", half.wire_name())?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::StaleCloudVersion { current, incoming } => write!(
                f,
                "stale cloud version {incoming}, the edge holds {current}"
            ),
            RejectReason::StaleEdgeVersion { current, incoming } => write!(
                f,
                "version {incoming} misses edge writes, the edge holds {current}"
            ),
            RejectReason::EdgeWins { current, incoming } => write!(
                f,
                "conflict: version {incoming} misses edge writes and the edge's value wins, the edge holds {current}"
            ),
            RejectReason::MissingVersion => f.write_str("a value without a version"),
            RejectReason::InvalidVersion => f.write_str("a negative version counter"),
            RejectReason::Invalid(error) => error.fmt(f),
        }
    }
}

impl RejectReason {
    /// A short stable label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::StaleCloudVersion { .. } => "stale_cloud_version",
            RejectReason::StaleEdgeVersion { .. } => "stale_edge_version",
            RejectReason::EdgeWins { .. } => "edge_wins",
            RejectReason::MissingVersion => "missing_version",
            RejectReason::InvalidVersion => "invalid_version",
            RejectReason::Invalid(_) => "invalid_value",
        }
    }
}

impl fmt::Display for TwinVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{cloud: {}, edge: {}}}", self.cloud, self.edge)
    }
}

/// A value shown in a message: quoted, and cut after 40 characters so that a 64 KiB value does
/// not end up in a log line.
struct Excerpt<'a>(&'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 40;
        match self.0.char_indices().nth(MAX_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_type_reasons_start_with_kubeedge_text() {
        let error = TwinError::WrongType {
            property: "count".into(),
            value_type: PropertyType::Int,
            value: "abc".into(),
        };
        assert_eq!(
            error.to_string(),
            r#"the value is not int or integer: property "count" is int, got "abc""#
        );
        let error = TwinError::WrongType {
            property: "on".into(),
            value_type: PropertyType::Boolean,
            value: "yes".into(),
        };
        assert!(
            error
                .to_string()
                .starts_with("the bool value must be true or false")
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let error = TwinError::WrongType {
            property: "n".into(),
            value_type: PropertyType::Int,
            value: "x".repeat(1000),
        };
        let message = error.to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.ends_with("… (1000 bytes)"), "{message}");
    }

    #[test]
    fn results_carry_code_reason_and_the_request_event_id() {
        let request = BaseMessage {
            event_id: Some("ev-1".into()),
            timestamp: Some(1),
        };
        let result = TwinError::DeviceNotFound.to_result(&request, 99);
        assert_eq!(result.code, Some(404));
        assert_eq!(result.event_id.as_deref(), Some("ev-1"));
        assert_eq!(result.timestamp, Some(99));
        assert_eq!(
            result.reason.as_deref(),
            Some("update rejected due to the device is not existed")
        );
        let anonymous = TwinError::MissingTwin.to_result(&BaseMessage::default(), 5);
        assert_eq!(anonymous.code, Some(400));
        assert_eq!(anonymous.event_id.as_deref(), Some(""));
        let get = get_device_not_found("lamp", &request, 7);
        assert_eq!(
            get.reason.as_deref(),
            Some("Device lamp not found while getting twin")
        );
    }

    #[test]
    fn rejections_read_well_and_have_labels() {
        let rejection = Rejection {
            property: "red".into(),
            half: Some(Half::Desired),
            reason: RejectReason::StaleCloudVersion {
                current: TwinVersion::new(5, 0),
                incoming: TwinVersion::new(4, 0),
            },
        };
        assert_eq!(
            rejection.to_string(),
            r#"property "red" (expected): stale cloud version {cloud: 4, edge: 0}, the edge holds {cloud: 5, edge: 0}"#
        );
        assert_eq!(rejection.reason.label(), "stale_cloud_version");
    }
}
