//! [`Effects`]: what an operation asks the caller to persist and publish, and the builder the
//! operations fill while they change the twin.

use std::collections::{BTreeMap, BTreeSet};

use crate::wire::payload::{
    BaseMessage, DeviceTwinDelta, DeviceTwinDocument, DeviceTwinResult, DeviceTwinUpdate,
    JsonField, MembershipUpdate, TwinDoc, TwinMap, TwinReply,
};

use super::context::TwinContext;
use super::error::{RejectReason, Rejection, TwinError, reply_to};
use super::state::{DeviceTwin, Half, PropertyTwin};

/// Everything one operation produced. The caller persists `changed` (and `sync`, in the
/// outbox) in one transaction, then publishes `result`, `document`, `delta` and `membership`
/// in that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// The answer on `…/twin/update/result` (edge updates only): the changed properties, or
    /// `{code, reason}` when the update was refused as a whole.
    pub result: Option<TwinReply>,
    /// `…/twin/update/document`: `last`/`current` of every property whose visible state changed.
    pub document: Option<DeviceTwinDocument>,
    /// `…/twin/update/delta`: the whole device, sent when something changed and some desired
    /// value differs from the reported one.
    pub delta: Option<DeviceTwinDelta>,
    /// The cloud-bound sync (beehive `device/{id}/twin/edge_updated` content): edge writes with
    /// their versions, and the edge's current state of every half a cloud update could not set.
    pub sync: Option<DeviceTwinUpdate>,
    /// `$hw/events/node/{node}/membership/updated` (membership operations only).
    pub membership: Option<MembershipUpdate>,
    /// Properties whose persisted state (values, versions, flags) changed.
    pub changed: BTreeSet<String>,
    /// Parts of a cloud update that were not applied, and why.
    pub rejections: Vec<Rejection>,
}

impl Effects {
    /// The effects of an edge update refused as a whole: only the `{code, reason}` result.
    pub fn refused(error: &TwinError, request: &BaseMessage, now_ms: i64) -> Self {
        Effects {
            result: Some(TwinReply::Err(error.to_result(request, now_ms))),
            ..Effects::default()
        }
    }

    /// Whether the operation changed nothing and has nothing to send.
    pub fn is_empty(&self) -> bool {
        *self == Effects::default()
    }
}

/// Which parts of a property a cloud-bound sync entry shows.
#[derive(Debug, Default)]
struct SyncPart {
    /// Halves written with their value (or `{}`) and version.
    halves: BTreeSet<Half>,
    /// The whole property: every present half and both versions.
    whole: bool,
}

/// One property an operation touched.
#[derive(Debug)]
struct Change {
    name: String,
    before: Option<PropertyTwin>,
}

/// Collects what an operation did, then renders the messages from the twin's final state.
pub(super) struct EffectsBuilder<'a> {
    ctx: &'a TwinContext<'a>,
    request: BaseMessage,
    changes: Vec<Change>,
    /// `Some` for edge updates: property → halves to show (an empty set for a deletion).
    result: Option<BTreeMap<String, BTreeSet<Half>>>,
    sync: BTreeMap<String, SyncPart>,
    rejections: Vec<Rejection>,
}

impl<'a> EffectsBuilder<'a> {
    /// A builder for an operation answering `request`; `answers` is true for edge updates,
    /// which publish a result.
    pub fn new(ctx: &'a TwinContext<'a>, request: BaseMessage, answers: bool) -> Self {
        EffectsBuilder {
            ctx,
            request,
            changes: Vec::new(),
            result: answers.then(BTreeMap::new),
            sync: BTreeMap::new(),
            rejections: Vec::new(),
        }
    }

    /// Records that `name` was set to a new state; `before` is its state before the operation.
    pub fn changed(&mut self, name: &str, before: Option<PropertyTwin>) {
        self.changes.push(Change {
            name: name.to_owned(),
            before,
        });
    }

    /// Adds halves of `name` to the result (edge updates).
    pub fn answer(&mut self, name: &str, halves: &[Half]) {
        if let Some(result) = &mut self.result {
            result
                .entry(name.to_owned())
                .or_default()
                .extend(halves.iter().copied());
        }
    }

    /// Adds halves of `name` to the cloud-bound sync.
    pub fn sync_halves(&mut self, name: &str, halves: &[Half]) {
        let part = self.sync.entry(name.to_owned()).or_default();
        part.halves.extend(halves.iter().copied());
    }

    /// Adds the whole of `name` (both versions) to the cloud-bound sync.
    pub fn sync_whole(&mut self, name: &str) {
        self.sync.entry(name.to_owned()).or_default().whole = true;
    }

    /// Records a refused part of a cloud update.
    pub fn reject(&mut self, name: &str, half: Option<Half>, reason: RejectReason) {
        self.rejections.push(Rejection {
            property: name.to_owned(),
            half,
            reason,
        });
    }

    /// Renders the effects from the twin's final state.
    pub fn finish(self, twin: &DeviceTwin) -> Effects {
        let now_ms = self.ctx.now_ms;
        let answer_base = || reply_to(&self.request, now_ms);
        let own_base = || BaseMessage {
            event_id: Some(self.ctx.event_id.to_owned()),
            timestamp: Some(now_ms),
        };

        let mut changed = BTreeSet::new();
        let mut document = BTreeMap::new();
        for change in &self.changes {
            let after = twin.properties.get(&change.name);
            if change.before.as_ref() != after {
                changed.insert(change.name.clone());
            }
            let last = change.before.as_ref().and_then(PropertyTwin::snapshot);
            let current = after.and_then(PropertyTwin::snapshot);
            if last != current {
                let doc = TwinDoc {
                    last: last.into(),
                    current: current.into(),
                };
                document.insert(change.name.clone(), Some(doc));
            }
        }

        let result = self.result.map(|parts| {
            let twin_map: TwinMap = parts
                .into_iter()
                .filter_map(|(name, halves)| {
                    let property = twin.properties.get(&name)?;
                    let halves: Vec<Half> = halves.into_iter().collect();
                    let shown = (!property.deleted).then(|| property.to_wire(&halves, &[]));
                    Some((name, shown))
                })
                .collect();
            let base = answer_base();
            TwinReply::Ok(DeviceTwinResult {
                event_id: base.event_id,
                timestamp: base.timestamp,
                twin: twin_map.into(),
            })
        });

        let sync_map: TwinMap = self
            .sync
            .into_iter()
            .filter_map(|(name, part)| {
                let property = twin.properties.get(&name)?;
                let mut halves = part.halves;
                if part.whole {
                    halves.extend(property.present_halves());
                }
                let values: Vec<Half> = halves.into_iter().collect();
                let versions: &[Half] = if part.whole { &Half::BOTH } else { &values };
                Some((name, Some(property.to_wire(&values, versions))))
            })
            .collect();
        let sync = (!sync_map.is_empty()).then(|| {
            let base = own_base();
            DeviceTwinUpdate {
                event_id: base.event_id,
                timestamp: base.timestamp,
                twin: sync_map.into(),
            }
        });

        let delta = if document.is_empty() || !self.ctx.builds_delta {
            None
        } else {
            twin.delta(self.ctx)
        };
        let document = (!document.is_empty()).then(|| {
            let base = answer_base();
            DeviceTwinDocument {
                event_id: base.event_id,
                timestamp: base.timestamp,
                twin: JsonField::Value(document),
            }
        });

        Effects {
            result,
            document,
            delta,
            sync,
            membership: None,
            changed,
            rejections: self.rejections,
        }
    }
}

impl DeviceTwin {
    /// The properties a delta shows in its `twin`: every live property with a desired value.
    pub(super) fn delta_properties(&self) -> impl Iterator<Item = (&String, &PropertyTwin)> {
        self.live_properties().filter(|(_, property)| {
            property
                .desired
                .as_ref()
                .is_some_and(|desired| !desired.value.is_empty())
        })
    }

    /// The `…/twin/update/delta` for the current state, if some desired value is still waiting
    /// to be reported: every live property with a desired value, and the waiting values.
    pub fn delta(&self, ctx: &TwinContext<'_>) -> Option<DeviceTwinDelta> {
        let pending: BTreeMap<String, String> = self
            .pending_desired()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        if pending.is_empty() {
            return None;
        }
        let twin: TwinMap = self
            .delta_properties()
            .map(|(name, property)| (name.clone(), property.snapshot()))
            .collect();
        Some(DeviceTwinDelta {
            event_id: Some(ctx.event_id.to_owned()),
            timestamp: Some(ctx.now_ms),
            twin: twin.into(),
            delta: pending.into(),
        })
    }
}
