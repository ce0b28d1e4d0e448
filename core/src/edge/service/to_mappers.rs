//! What a batch publishes once it is committed, in order.

use serde::Serialize;

use crate::edge::devices::{DeviceEntry, SpecMessage};
use crate::edge::store::DeviceKey;
use edgetwin_model::twin::{Effects, TwinContext};
use edgetwin_model::wire::payload::{BaseMessage, ErrorResult};
use edgetwin_model::wire::topic::{DeviceEvent, DeviceId, NodeEvent, Topic, TopicLevel};

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
    /// The requests answered in `messages`, in order: each gets a 500 answer instead when the
    /// commit fails (encoded only then, see [`Publications::failure_answers`]).
    answered: Vec<Answered>,
}

/// A request answered by the batch.
#[derive(Debug)]
struct Answered {
    kind: &'static str,
    topic: String,
    /// The base of its answer (the request's event id, the batch's time).
    base: BaseMessage,
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

    /// Queues an answer to a request on `topic`, and remembers the request for its 500
    /// replacement should the commit fail.
    pub fn answer(
        &mut self,
        kind: &'static str,
        topic: String,
        request: &BaseMessage,
        payload: &impl Serialize,
        now_ms: i64,
    ) {
        self.answered.push(Answered {
            kind,
            topic: topic.clone(),
            base: answer_base(request, now_ms),
        });
        self.push(kind, topic, payload);
    }

    /// What to publish instead of `messages` when the batch's commit failed: a 500 answer to
    /// every request the batch answered, in order (no documents, deltas or specs).
    pub fn failure_answers(self) -> Vec<Outgoing> {
        self.answered
            .into_iter()
            .filter_map(|answered| {
                let failure = ErrorResult::new(
                    answered.base,
                    ErrorResult::INTERNAL_ERROR,
                    "the edge store failed to commit the batch; nothing was applied, retry",
                );
                let payload = encode(&answered.topic, &failure)?;
                Some(Outgoing {
                    topic: answered.topic,
                    payload,
                    retain: false,
                    kind: answered.kind,
                })
            })
            .collect()
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

    /// Queues the document, delta and membership messages of an engine operation on `entry`
    /// done in `ctx`. When `ctx` left the delta to the caller, it is written from the twin.
    pub fn effects(
        &mut self,
        node: &TopicLevel,
        entry: &DeviceEntry,
        effects: &Effects,
        ctx: &TwinContext<'_>,
    ) {
        let id = entry.id(entry.id_form);
        if let Some(document) = &effects.document {
            self.push(
                "update_document",
                device_topic(id, DeviceEvent::TwinUpdateDocument),
                document,
            );
        }
        let delta_topic = || device_topic(id, DeviceEvent::TwinUpdateDelta);
        if let Some(delta) = &effects.delta {
            self.push("update_delta", delta_topic(), delta);
        } else if !ctx.builds_delta
            && effects.document.is_some()
            && let Some(delta) = entry.twin.delta_view(ctx)
        {
            self.push("update_delta", delta_topic(), &delta);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(event_id: Option<&str>) -> BaseMessage {
        BaseMessage {
            event_id: event_id.map(str::to_owned),
            timestamp: Some(1),
        }
    }

    #[test]
    fn a_failed_commit_answers_every_request_with_500_in_order_and_publishes_nothing_else() {
        let mut out = Publications::default();
        let ok = serde_json::json!({"event_id": "a", "twin": {}});
        out.answer("update_result", "t/a".into(), &request(Some("a")), &ok, 7);
        out.push("update_document", "t/doc".into(), &ok);
        out.answer("get_result", "t/b".into(), &request(None), &ok, 7);
        assert_eq!(out.messages.len(), 3);

        let failed = out.failure_answers();
        let topics: Vec<&str> = failed.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["t/a", "t/b"]);
        assert_eq!(failed[1].kind, "get_result");
        let answers: Vec<serde_json::Value> = failed
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).expect("JSON"))
            .collect();
        assert_eq!(answers[0]["event_id"], "a");
        assert_eq!(answers[1]["event_id"], "");
        for answer in &answers {
            assert_eq!(answer["code"], 500);
            assert_eq!(answer["timestamp"], 7);
            assert!(
                answer["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("retry"))
            );
        }
    }
}
