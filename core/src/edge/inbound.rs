//! What the agent listens to, and what each inbound topic asks for.
//!
//! The agent subscribes (QoS 1) to KubeEdge's DeviceTwin topics with both id forms, with a
//! wildcard last level for the twin topics (as edgecore does) so that a mapper using an unknown
//! twin event is noticed and logged instead of being silently unheard:
//!
//! - `$hw/events/device/+/twin/+` and `$hw/events/device/+/+/twin/+`
//! - `$hw/events/device/+/state/update` and `$hw/events/device/+/+/state/update`
//! - `$hw/events/node/{node}/membership/get`

use edgetwin_model::wire::topic::{
    DEVICE_PREFIX, DeviceEvent, DeviceId, NodeEvent, Topic, TopicError, TopicLevel,
};

/// The agent's subscription filters for `node`.
pub fn subscriptions(node: &TopicLevel) -> Vec<String> {
    vec![
        format!("{DEVICE_PREFIX}/+/twin/+"),
        format!("{DEVICE_PREFIX}/+/+/twin/+"),
        format!("{DEVICE_PREFIX}/+/state/update"),
        format!("{DEVICE_PREFIX}/+/+/state/update"),
        Topic::Node {
            node: node.clone(),
            event: NodeEvent::MembershipGet,
        }
        .to_string(),
    ]
}

/// What an inbound topic asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `…/twin/update`: a mapper reports (or sets desired) values.
    TwinUpdate(DeviceId),
    /// `…/twin/get`: a mapper asks for the twin.
    TwinGet(DeviceId),
    /// `…/state/update`: a mapper reports the device state.
    StateUpdate(DeviceId),
    /// `$hw/events/node/{node}/membership/get` for this node.
    MembershipGet,
    /// `…/twin/cloud_updated` from MQTT: refused, only the cloud tunnel may write desired values
    /// from the cloud (KubeEdge lets any local client forge it).
    CloudUpdated(DeviceId),
}

impl Request {
    /// The `kind` label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::TwinUpdate(_) => "twin_update",
            Request::TwinGet(_) => "twin_get",
            Request::StateUpdate(_) => "state_update",
            Request::MembershipGet => "membership_get",
            Request::CloudUpdated(_) => "twin_cloud_updated",
        }
    }
}

/// Why an inbound topic is not a request the agent serves. Nobody can be answered: the topic
/// does not name a device and event the agent knows, so these are logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unserved {
    /// The topic does not parse (empty level, wildcard, wrong number of levels, unknown event).
    #[error(transparent)]
    Invalid(#[from] TopicError),
    /// A known topic that mappers do not send to the agent (e.g. an agent's own result topic).
    #[error("topic `{}` is not a request to the agent", .0.escape_debug())]
    NotARequest(String),
    /// A membership request for another node.
    #[error("topic `{}` is for node {node:?}, this is {this:?}", .topic.escape_debug())]
    OtherNode {
        /// The topic.
        topic: String,
        /// The node it names.
        node: String,
        /// This node.
        this: String,
    },
}

/// Classifies an inbound topic.
pub fn classify(topic: &str, node: &TopicLevel) -> Result<Request, Unserved> {
    match Topic::parse(topic)? {
        Topic::Device { id, event } => match event {
            DeviceEvent::TwinUpdate => Ok(Request::TwinUpdate(id)),
            DeviceEvent::TwinGet => Ok(Request::TwinGet(id)),
            DeviceEvent::StateUpdate => Ok(Request::StateUpdate(id)),
            DeviceEvent::TwinCloudUpdated => Ok(Request::CloudUpdated(id)),
            _ => Err(Unserved::NotARequest(topic.to_owned())),
        },
        Topic::Node {
            node: named,
            event: NodeEvent::MembershipGet,
        } => {
            if &named == node {
                Ok(Request::MembershipGet)
            } else {
                Err(Unserved::OtherNode {
                    topic: topic.to_owned(),
                    node: named.as_str().to_owned(),
                    this: node.as_str().to_owned(),
                })
            }
        }
        _ => Err(Unserved::NotARequest(topic.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::wire::topic::{LevelProblem, filter_matches};

    fn node() -> TopicLevel {
        TopicLevel::new("edge-1").unwrap()
    }

    #[test]
    fn every_request_topic_in_both_id_forms_is_subscribed_and_classified() {
        let filters = subscriptions(&node());
        for (topic, expected) in [
            (
                "$hw/events/device/lamp/twin/update",
                Request::TwinUpdate(DeviceId::named("lamp").unwrap()),
            ),
            (
                "$hw/events/device/ns/lamp/twin/update",
                Request::TwinUpdate(DeviceId::namespaced("ns", "lamp").unwrap()),
            ),
            (
                "$hw/events/device/lamp/twin/get",
                Request::TwinGet(DeviceId::named("lamp").unwrap()),
            ),
            (
                "$hw/events/device/ns/lamp/twin/get",
                Request::TwinGet(DeviceId::namespaced("ns", "lamp").unwrap()),
            ),
            (
                "$hw/events/device/lamp/state/update",
                Request::StateUpdate(DeviceId::named("lamp").unwrap()),
            ),
            (
                "$hw/events/device/ns/lamp/state/update",
                Request::StateUpdate(DeviceId::namespaced("ns", "lamp").unwrap()),
            ),
            (
                "$hw/events/device/ns/lamp/twin/cloud_updated",
                Request::CloudUpdated(DeviceId::namespaced("ns", "lamp").unwrap()),
            ),
            (
                "$hw/events/node/edge-1/membership/get",
                Request::MembershipGet,
            ),
        ] {
            assert!(
                filters.iter().any(|f| filter_matches(f, topic)),
                "{topic} not subscribed"
            );
            assert_eq!(classify(topic, &node()), Ok(expected), "{topic}");
        }
    }

    #[test]
    fn the_agents_own_messages_do_not_come_back() {
        let filters = subscriptions(&node());
        for topic in [
            "$hw/events/device/lamp/twin/update/result",
            "$hw/events/device/ns/lamp/twin/update/delta",
            "$hw/events/device/ns/lamp/twin/update/document",
            "$hw/events/device/ns/lamp/twin/get/result",
            "$hw/events/device/ns/lamp/state/update/result",
            "$hw/events/node/edge-1/membership/updated",
            "$hw/events/node/edge-1/membership/get/result",
            "edgetwin/v1/node/edge-1/device/ns/lamp/spec",
        ] {
            assert!(
                !filters.iter().any(|f| filter_matches(f, topic)),
                "{topic} would loop back"
            );
        }
    }

    #[test]
    fn bad_topics_are_explained() {
        let empty = classify("$hw/events/device//twin/update", &node()).unwrap_err();
        assert!(
            matches!(
                &empty,
                Unserved::Invalid(TopicError::InvalidLevel { error, .. }) if error.problem == LevelProblem::Empty
            ),
            "{empty}"
        );
        let unknown = classify("$hw/events/device/lamp/twin/bogus", &node()).unwrap_err();
        assert!(
            matches!(unknown, Unserved::Invalid(TopicError::UnknownEvent { .. })),
            "{unknown}"
        );
        let other = classify("$hw/events/node/edge-2/membership/get", &node()).unwrap_err();
        assert!(other.to_string().contains("edge-2"), "{other}");
        let own = classify("$hw/events/device/lamp/twin/update/result", &node()).unwrap_err();
        assert!(matches!(own, Unserved::NotARequest(_)));
    }
}
