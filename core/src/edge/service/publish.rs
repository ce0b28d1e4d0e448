//! What a batch publishes once it is committed, in order.

use serde::Serialize;

use crate::edge::devices::{DeviceEntry, SpecMessage};
use crate::store::DeviceKey;
use crate::twin::Effects;
use crate::wire::payload::{BaseMessage, ErrorResult};
use crate::wire::topic::{DeviceEvent, DeviceId, NodeEvent, Topic, TopicLevel};

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The payload (JSON, or empty to clear a retained message).
    pub payload: Vec<u8>,
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
    /// The `kind` label for metrics.
    pub kind: &'static str,
}

/// The messages of a batch: what to publish after the commit, and the error answers to publish
/// instead if the commit fails.
#[derive(Debug, Default)]
pub struct Publications {
    /// Published in order after a successful commit.
    pub messages: Vec<Outgoing>,
    /// Published instead when the commit fails: a 500 answer to every request in the batch.
    pub on_failure: Vec<Outgoing>,
}

impl Publications {
    /// Queues `payload` as JSON on `topic`.
    pub fn push(&mut self, kind: &'static str, topic: String, payload: &impl Serialize) {
        if let Some(payload) = encode(&topic, payload) {
            self.messages.push(Outgoing {
                topic,
                payload,
                retain: false,
                kind,
            });
        }
    }

    /// Queues an answer to a request on `topic`, and its 500 replacement for a failed commit.
    pub fn answer(
        &mut self,
        kind: &'static str,
        topic: String,
        request: &BaseMessage,
        payload: &impl Serialize,
        now_ms: i64,
    ) {
        let failure = ErrorResult::new(
            answer_base(request, now_ms),
            ErrorResult::INTERNAL_ERROR,
            "the edge store failed to commit the batch; nothing was applied, retry",
        );
        if let Some(payload) = encode(&topic, &failure) {
            self.on_failure.push(Outgoing {
                topic: topic.clone(),
                payload,
                retain: false,
                kind,
            });
        }
        self.push(kind, topic, payload);
    }

    /// Queues an error answer `{code, reason}` to a request on `topic`.
    pub fn error(
        &mut self,
        kind: &'static str,
        topic: String,
        request: &BaseMessage,
        code: i64,
        reason: impl Into<String>,
        now_ms: i64,
    ) {
        let error = ErrorResult::new(answer_base(request, now_ms), code, reason);
        self.answer(kind, topic, request, &error, now_ms);
    }

    /// Queues the document, delta and membership messages of an engine operation on `entry`.
    pub fn effects(&mut self, node: &TopicLevel, entry: &DeviceEntry, effects: &Effects) {
        let id = entry.id(entry.id_form);
        if let Some(document) = &effects.document {
            self.push(
                "update_document",
                device_topic(id, DeviceEvent::TwinUpdateDocument),
                document,
            );
        }
        if let Some(delta) = &effects.delta {
            self.push(
                "update_delta",
                device_topic(id, DeviceEvent::TwinUpdateDelta),
                delta,
            );
        }
        if let Some(membership) = &effects.membership {
            self.push(
                "membership_updated",
                node_topic(node, NodeEvent::MembershipUpdated),
                membership,
            );
        }
    }

    /// Queues the retained spec message of a device.
    pub fn spec(&mut self, node: &TopicLevel, entry: &DeviceEntry) {
        let message = SpecMessage {
            device: &entry.device,
            model: entry.model(),
        };
        let Some(topic) = spec_topic(node, &entry.key) else {
            return;
        };
        if let Some(payload) = encode(&topic, &message) {
            self.messages.push(Outgoing {
                topic,
                payload,
                retain: true,
                kind: "device_spec",
            });
        }
    }

    /// Clears the retained spec message of a removed device (an empty retained payload).
    pub fn spec_removed(&mut self, node: &TopicLevel, key: &DeviceKey) {
        let Some(topic) = spec_topic(node, key) else {
            return;
        };
        self.messages.push(Outgoing {
            topic,
            payload: Vec::new(),
            retain: true,
            kind: "device_spec",
        });
    }
}

/// The base of an answer: the request's event id (empty when it had none) and now.
pub fn answer_base(request: &BaseMessage, now_ms: i64) -> BaseMessage {
    BaseMessage {
        event_id: Some(request.event_id.clone().unwrap_or_default()),
        timestamp: Some(now_ms),
    }
}

/// `$hw/events/device/{id}/{event}`.
pub fn device_topic(id: &DeviceId, event: DeviceEvent) -> String {
    Topic::Device {
        id: id.clone(),
        event,
    }
    .to_string()
}

/// `$hw/events/node/{node}/{event}`.
pub fn node_topic(node: &TopicLevel, event: NodeEvent) -> String {
    Topic::Node {
        node: node.clone(),
        event,
    }
    .to_string()
}

/// `edgetwin/v1/node/{node}/device/{namespace}/{name}/spec`; `None` (logged) for a key that
/// cannot be a topic (never for Kubernetes names).
pub fn spec_topic(node: &TopicLevel, key: &DeviceKey) -> Option<String> {
    let topic = TopicLevel::new(key.namespace.as_str())
        .and_then(|namespace| Ok((namespace, TopicLevel::new(key.name.as_str())?)))
        .map(|(namespace, name)| {
            Topic::DeviceSpec {
                node: node.clone(),
                namespace,
                name,
            }
            .to_string()
        });
    match topic {
        Ok(topic) => Some(topic),
        Err(error) => {
            tracing::error!(device = %key, %error, "no spec topic for this device");
            None
        }
    }
}

fn encode(topic: &str, payload: &impl Serialize) -> Option<Vec<u8>> {
    match serde_json::to_vec(payload) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(%topic, %error, "cannot encode a message; not published");
            None
        }
    }
}
