//! `BaseMessage` (`event_id`, `timestamp`), the head of every DeviceTwin payload, and the
//! millisecond timestamps it carries.

use serde::{Deserialize, Serialize};

/// KubeEdge's `dttype.BaseMessage`: alone it is the body of `…/twin/get` and
/// `$hw/events/node/{node}/membership/get`; every other payload starts with the same two keys.
///
/// Go always writes both keys, but some mappers send neither (the led-raspberrypi example sends
/// `{"state":"online"}`), so each is `None` when absent and stays absent on output.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BaseMessage {
    /// Correlates a reply with its request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Milliseconds since the Unix epoch (see [`millis`] and [`from_millis`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

impl BaseMessage {
    /// A base message with both keys set, as KubeEdge builds its replies.
    pub fn new(event_id: impl Into<String>, time: jiff::Timestamp) -> Self {
        BaseMessage {
            event_id: Some(event_id.into()),
            timestamp: Some(millis(time)),
        }
    }
}

/// A point in time as the DeviceTwin wire carries it: milliseconds since the Unix epoch.
pub fn millis(time: jiff::Timestamp) -> i64 {
    time.as_millisecond()
}

/// The point in time of a wire timestamp (milliseconds since the Unix epoch); `None` when it is out
/// of range. Values are never guessed to be seconds or nanoseconds.
pub fn from_millis(millis: i64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_millisecond(millis).ok()
}

/// Declares a DeviceTwin payload struct that embeds `BaseMessage` the way Go does: `event_id` and
/// `timestamp` come first, inline, followed by the listed fields. Adds the serde derives, a
/// container `#[serde(default)]` (Go leaves absent keys at their zero value) and `base()`.
macro_rules! kubeedge_message {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                pub $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            /// Correlates a reply with its request; `None` when the key was absent.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub event_id: Option<String>,
            /// Milliseconds since the Unix epoch; `None` when the key was absent.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub timestamp: Option<i64>,
            $(
                $(#[$field_meta])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// The embedded `event_id` and `timestamp`.
            pub fn base(&self) -> $crate::wire::payload::BaseMessage {
                $crate::wire::payload::BaseMessage {
                    event_id: self.event_id.clone(),
                    timestamp: self.timestamp,
                }
            }
        }
    };
}

pub(crate) use kubeedge_message;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};

    #[test]
    fn timestamps_are_milliseconds() {
        let time = from_millis(1_795_888_072_185).expect("in range");
        assert_eq!(time.to_string(), "2026-11-28T17:47:52.185Z");
        assert_eq!(millis(time), 1_795_888_072_185);
        assert_eq!(from_millis(i64::MAX), None);
    }

    #[test]
    fn base_message_keeps_absent_keys_absent() {
        let base: BaseMessage = decode(br#"{"event_id":"1"}"#).expect("decodes");
        assert_eq!(base.event_id.as_deref(), Some("1"));
        assert_eq!(base.timestamp, None);
        assert_eq!(encode(&base).expect("encodes"), br#"{"event_id":"1"}"#);
    }

    #[test]
    fn new_sets_both_keys() {
        let time = from_millis(1_000).expect("in range");
        let base = BaseMessage::new("e", time);
        assert_eq!(
            encode(&base).expect("encodes"),
            br#"{"event_id":"e","timestamp":1000}"#
        );
    }
}
