//! Handlers for the mappers' requests over MQTT: `twin/update`, `twin/get`, `state/update` and
//! `membership/get` (and the refused `twin/cloud_updated`).
//!
//! Every request that KubeEdge answers gets an answer, including the bad ones (`{code, reason}`
//! with KubeEdge's codes: 400 bad request, 404 unknown device; and 503 when the outbox is full,
//! 500 when the store fails). Requests that cannot be answered — a topic that names no device and
//! event — are logged as warnings and counted. Nothing is dropped silently.

use crate::edge::bus::Inbound;
use crate::edge::devices::{IdForm, Unresolved, listed_device};
use crate::edge::inbound::{Request, Unserved, classify};
use crate::edge::metrics::Reject;
use crate::edge::store::{Batch, DeviceKey, NewEntry, OutboxKind, StoreError};
use edgetwin_model::twin::{TwinContext, TwinError, get_device_not_found};
use edgetwin_model::wire::codec::{WireError, decode_with_limit, event_id_of};
use edgetwin_model::wire::payload::{
    BaseMessage, DeviceMsg, DeviceStatus, DeviceTwinUpdate, DeviceUpdate, ErrorResult, JsonField,
    MembershipGetResult,
};
use edgetwin_model::wire::topic::{DeviceEvent, DeviceId, NodeEvent, TopicError};

use super::to_mappers::{Publications, answer_base, device_topic, node_topic};
use super::{State, context, persist};

/// The device states a mapper may report (KubeEdge's, matched case-insensitively).
pub const DEVICE_STATES: [&str; 6] = [
    "online",
    "offline",
    "ok",
    "unknown",
    "unhealthy",
    "disconnected",
];

/// Code of the answer when the outbox is full: retry later.
const SERVICE_UNAVAILABLE: i64 = 503;

/// Where a request's answer goes: the result kind (for metrics) and the reply topic.
#[derive(Clone, Copy)]
struct ReplyTo<'a> {
    kind: &'static str,
    topic: &'a str,
}

impl<'a> ReplyTo<'a> {
    fn new(kind: &'static str, topic: &'a str) -> ReplyTo<'a> {
        ReplyTo { kind, topic }
    }
}

impl State {
    /// Handles one inbound publish inside `batch`.
    pub(super) fn handle_message(
        &mut self,
        batch: &mut Batch<'_>,
        inbound: &Inbound,
        now_ms: i64,
        out: &mut Publications,
    ) {
        let request = match classify(&inbound.topic, &self.options.node) {
            Ok(request) => request,
            Err(unserved) => {
                let reason = match &unserved {
                    Unserved::Invalid(TopicError::UnknownEvent { .. })
                    | Unserved::NotARequest(_) => Reject::UnknownTopic,
                    Unserved::Invalid(_) | Unserved::OtherNode { .. } => Reject::BadTopic,
                };
                self.metrics.reject(reason);
                tracing::warn!(topic = %inbound.topic, error = %unserved, "inbound message ignored: nobody to answer");
                return;
            }
        };
        self.metrics.message_in(request.kind());
        let payload = &inbound.payload[..];
        match request {
            Request::TwinUpdate(id) => self.twin_update(batch, &id, payload, now_ms, out),
            Request::TwinGet(id) => self.twin_get(&id, payload, now_ms, out),
            Request::StateUpdate(id) => self.state_update(batch, &id, payload, now_ms, out),
            Request::MembershipGet => self.membership_get(payload, now_ms, out),
            Request::CloudUpdated(id) => {
                self.metrics.reject(Reject::ForgedCloudUpdate);
                tracing::warn!(
                    device = %id,
                    "twin/cloud_updated over MQTT ignored: desired values from the cloud only come \
                     through the cloud tunnel (any local client could forge this topic)"
                );
            }
        }
    }

    /// Decodes a payload; on failure answers 400 on `reply` and counts the reject.
    fn decode<T: for<'a> serde::Deserialize<'a>>(
        &self,
        payload: &[u8],
        reply: ReplyTo<'_>,
        now_ms: i64,
        out: &mut Publications,
    ) -> Option<T> {
        let ReplyTo { kind, topic: reply } = reply;
        match decode_with_limit::<T>(payload, self.options.max_payload_bytes) {
            Ok(value) => Some(value),
            Err(error) => {
                self.metrics.reject(reject_of(&error));
                tracing::warn!(topic = %reply, %error, "bad request payload");
                let request = BaseMessage {
                    event_id: payload_event_id(payload, self.options.max_payload_bytes),
                    timestamp: None,
                };
                out.answer(
                    kind,
                    reply.to_owned(),
                    &request,
                    &ErrorResult::bad_payload(answer_base(&request, now_ms), &error),
                    now_ms,
                );
                None
            }
        }
    }

    /// Resolves a topic id; on failure answers on `reply` (404, or 400 for an ambiguous name).
    fn resolve(
        &self,
        id: &DeviceId,
        request: &BaseMessage,
        not_found: impl FnOnce() -> ErrorResult,
        reply: ReplyTo<'_>,
        now_ms: i64,
        out: &mut Publications,
    ) -> Option<DeviceKey> {
        let ReplyTo { kind, topic: reply } = reply;
        match self.devices.resolve(id) {
            Ok(key) => Some(key),
            Err(Unresolved::NotFound) => {
                self.metrics.reject(Reject::UnknownDevice);
                tracing::warn!(device = %id, "request for a device this node does not have");
                out.answer(kind, reply.to_owned(), request, &not_found(), now_ms);
                None
            }
            Err(Unresolved::Ambiguous(keys)) => {
                self.metrics.reject(Reject::UnknownDevice);
                let candidates: Vec<String> = keys.iter().map(ToString::to_string).collect();
                out.error(
                    kind,
                    reply.to_owned(),
                    request,
                    ErrorResult::BAD_REQUEST,
                    format!(
                        "device name {:?} is used in several namespaces on this node ({}): address it as {{namespace}}/{{name}}",
                        id.name(),
                        candidates.join(", ")
                    ),
                    now_ms,
                );
                None
            }
        }
    }

    fn twin_update(
        &mut self,
        batch: &mut Batch<'_>,
        id: &DeviceId,
        payload: &[u8],
        now_ms: i64,
        out: &mut Publications,
    ) {
        const KIND: &str = "update_result";
        let reply = device_topic(id, DeviceEvent::TwinUpdateResult);
        let Some(update) =
            self.decode::<DeviceTwinUpdate>(payload, ReplyTo::new(KIND, &reply), now_ms, out)
        else {
            return;
        };
        let request = update.base();
        let not_found = || TwinError::DeviceNotFound.to_result(&request, now_ms);
        let Some(key) = self.resolve(
            id,
            &request,
            not_found,
            ReplyTo::new(KIND, &reply),
            now_ms,
            out,
        ) else {
            return;
        };
        let Some(entry) = self.devices.get_mut(&key) else {
            return;
        };
        let _span =
            tracing::debug_span!("twin_update", device = %key, event_id = ?request.event_id)
                .entered();
        entry.id_form = IdForm::of(id);
        let event_id = uuid::Uuid::new_v4().to_string();
        let ctx = context(
            entry.model.as_deref().map(|m| &m.schema),
            now_ms,
            &event_id,
            self.options.max_value_bytes,
        );
        let undo = entry.twin.save_for_edge_update(&update);
        let effects = entry.twin.edge_update(&ctx, &update);
        if !effects.changed.is_empty() || effects.sync.is_some() {
            let written = batch.scope().and_then(|mut scope| {
                persist(&mut scope, entry, &effects, now_ms)?;
                scope.commit()
            });
            if let Err(error) = written {
                entry.twin.undo_edge_update(undo);
                let (code, reject) = match &error {
                    StoreError::OutboxFull { .. } => (SERVICE_UNAVAILABLE, Reject::OutboxFull),
                    _ => (ErrorResult::INTERNAL_ERROR, Reject::StoreError),
                };
                self.metrics.reject(reject);
                tracing::warn!(%error, "twin update not applied");
                out.error(KIND, reply, &request, code, error.to_string(), now_ms);
                return;
            }
        }
        if let Some(result) = &effects.result {
            if matches!(result, edgetwin_model::wire::payload::TwinReply::Err(_)) {
                self.metrics.reject(Reject::Refused);
            }
            out.answer(KIND, reply, &request, result, now_ms);
        }
        out.effects(&self.options.node, entry, &effects, &ctx);
    }

    fn twin_get(&mut self, id: &DeviceId, payload: &[u8], now_ms: i64, out: &mut Publications) {
        const KIND: &str = "get_result";
        let reply = device_topic(id, DeviceEvent::TwinGetResult);
        let Some(request) =
            self.decode::<BaseMessage>(payload, ReplyTo::new(KIND, &reply), now_ms, out)
        else {
            return;
        };
        let device_id = id.to_string();
        let not_found = || get_device_not_found(&device_id, &request, now_ms);
        let Some(key) = self.resolve(
            id,
            &request,
            not_found,
            ReplyTo::new(KIND, &reply),
            now_ms,
            out,
        ) else {
            return;
        };
        let Some(entry) = self.devices.get_mut(&key) else {
            return;
        };
        entry.id_form = IdForm::of(id);
        let result = entry.twin.get(&TwinContext::new(now_ms), &request);
        out.answer(KIND, reply, &request, &result, now_ms);
    }

    fn state_update(
        &mut self,
        batch: &mut Batch<'_>,
        id: &DeviceId,
        payload: &[u8],
        now_ms: i64,
        out: &mut Publications,
    ) {
        const KIND: &str = "state_result";
        let reply = device_topic(id, DeviceEvent::StateUpdateResult);
        let Some(update) =
            self.decode::<DeviceUpdate>(payload, ReplyTo::new(KIND, &reply), now_ms, out)
        else {
            return;
        };
        let request = update.base();
        let not_found = || {
            ErrorResult::new(
                answer_base(&request, now_ms),
                ErrorResult::NOT_FOUND,
                format!("device {id} not found on this node"),
            )
        };
        let Some(key) = self.resolve(
            id,
            &request,
            not_found,
            ReplyTo::new(KIND, &reply),
            now_ms,
            out,
        ) else {
            return;
        };
        let Some(state) = update
            .state
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|state| DEVICE_STATES.contains(&state.as_str()))
        else {
            self.metrics.reject(Reject::BadState);
            let reason = match &update.state {
                None => "the request has no state".to_owned(),
                Some(state) => format!("unknown device state {state:?}"),
            };
            tracing::warn!(device = %key, %reason, "state update refused");
            out.error(
                KIND,
                reply,
                &request,
                ErrorResult::BAD_REQUEST,
                format!(
                    "{reason}: use one of {} (any letter case)",
                    DEVICE_STATES.join(", ")
                ),
                now_ms,
            );
            return;
        };
        let Some(entry) = self.devices.get_mut(&key) else {
            return;
        };
        entry.id_form = IdForm::of(id);
        let last_online = (state == "online")
            .then(|| rfc3339(now_ms))
            .or_else(|| entry.last_online.clone());
        let changed = entry.state.as_deref() != Some(state.as_str());
        let status = DeviceStatus {
            name: Some(key.name.clone()),
            state: Some(state.clone()),
            // Both spellings: KubeEdge ≤ 1.17 reads `last_online`, ≥ 1.18 `lastOnlineTime`.
            last_online: last_online.clone(),
            last_online_time: last_online.clone(),
        };
        let written = batch.scope().and_then(|mut scope| {
            scope.set_device_state(&key, &state, last_online.as_deref())?;
            if changed {
                let cloud = DeviceMsg {
                    event_id: Some(uuid::Uuid::new_v4().to_string()),
                    timestamp: Some(now_ms),
                    device: DeviceStatus {
                        last_online: None,
                        ..status.clone()
                    },
                };
                let payload =
                    serde_json::to_string(&cloud).map_err(|source| StoreError::Encode {
                        what: "outbox state",
                        source,
                    })?;
                scope.queue(NewEntry {
                    kind: OutboxKind::State,
                    device: &key,
                    property: None,
                    payload: &payload,
                    now_ms,
                })?;
            }
            scope.commit()
        });
        if let Err(error) = written {
            let (code, reject) = match &error {
                StoreError::OutboxFull { .. } => (SERVICE_UNAVAILABLE, Reject::OutboxFull),
                _ => (ErrorResult::INTERNAL_ERROR, Reject::StoreError),
            };
            self.metrics.reject(reject);
            out.error(KIND, reply, &request, code, error.to_string(), now_ms);
            return;
        }
        tracing::debug!(device = %key, %state, changed, "device state");
        entry.state = Some(state);
        entry.last_online = last_online;
        let answer = DeviceMsg {
            event_id: Some(request.event_id.clone().unwrap_or_default()),
            timestamp: Some(now_ms),
            device: status,
        };
        out.answer(KIND, reply, &request, &answer, now_ms);
    }

    fn membership_get(&mut self, payload: &[u8], now_ms: i64, out: &mut Publications) {
        let request =
            match decode_with_limit::<BaseMessage>(payload, self.options.max_payload_bytes) {
                Ok(request) => request,
                Err(error) => {
                    // KubeEdge does not answer a membership/get it cannot read: it has no error shape.
                    self.metrics.reject(reject_of(&error));
                    tracing::warn!(%error, "membership/get with a bad payload ignored");
                    return;
                }
            };
        let result = MembershipGetResult {
            event_id: Some(request.event_id.clone().unwrap_or_default()),
            timestamp: Some(now_ms),
            devices: JsonField::Value(
                self.devices
                    .iter()
                    .map(|entry| listed_device(&entry.device))
                    .collect(),
            ),
        };
        let reply = node_topic(&self.options.node, NodeEvent::MembershipGetResult);
        out.answer("membership_get_result", reply, &request, &result, now_ms);
    }
}

/// The reject reason of a payload error.
fn reject_of(error: &WireError) -> Reject {
    match error {
        WireError::TooLarge { .. } => Reject::TooLarge,
        WireError::Empty | WireError::Malformed { .. } => Reject::MalformedJson,
        WireError::Shape { .. } | WireError::Encode(_) => Reject::WrongShape,
    }
}

/// The `event_id` of a payload that did not decode, so the error answer can carry it (not for
/// oversize payloads, which are not parsed at all).
fn payload_event_id(payload: &[u8], limit: usize) -> Option<String> {
    (payload.len() <= limit)
        .then(|| event_id_of(payload))
        .flatten()
}

/// `2026-11-28T17:47:52Z`, the form KubeEdge writes `last_online` in.
fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_online_is_written_like_kubeedge() {
        assert_eq!(rfc3339(1_795_888_072_189), "2026-11-28T17:47:52Z");
    }

    #[test]
    fn payload_errors_map_to_reject_reasons() {
        assert_eq!(
            reject_of(&WireError::TooLarge { size: 2, limit: 1 }),
            Reject::TooLarge
        );
        assert_eq!(reject_of(&WireError::Empty), Reject::MalformedJson);
    }
}
