//! The cloud side's changes: membership (devices added, changed, removed, with their models) and
//! versioned twin updates. A local devices file goes through the same path as the cloud would.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::edge::devices::{
    DeviceEntry, ModelEntry, desired_twins, device_key, membership_device, model_key,
};
use crate::edge::store::{Batch, DeviceKey, NewEntry, ObjectKey, OutboxKind, StoreError};
use edgetwin_model::devices::Device;
use edgetwin_model::twin::{DeviceTwin, TwinContext};
use edgetwin_model::wire::cloud_edge::{DeviceRef, SummaryContent, desired_digest, summary_key};
use edgetwin_model::wire::payload::{DeviceTwinUpdate, JsonField};

use super::to_cloud;
use super::to_mappers::Publications;
use super::{
    CloudUpdateOutcome, Membership, MembershipOutcome, ServiceError, State, context, persist,
};

impl State {
    /// Applies a membership change in `batch`.
    pub(super) fn membership(
        &mut self,
        batch: &mut Batch<'_>,
        membership: Membership,
        now_ms: i64,
        out: &mut Publications,
    ) -> Result<MembershipOutcome, ServiceError> {
        let mut outcome = MembershipOutcome::default();
        let mut changed_models = BTreeSet::new();
        let listed_models: BTreeSet<ObjectKey> = membership
            .models
            .iter()
            .map(|model| ObjectKey::new(model.namespace(), model.name()))
            .collect();
        for model in membership.models {
            let key = ObjectKey::new(model.namespace(), model.name());
            if self.models.get(&key).map(|m| &m.model) != Some(&model) {
                let mut scope = batch.scope()?;
                scope.put_model(&key, &model)?;
                scope.commit()?;
                changed_models.insert(key.clone());
                self.models.insert(key, ModelEntry::new(model));
            }
        }
        let mut listed = BTreeSet::new();
        for device in membership.devices {
            let key = device_key(&device);
            if let Some(node) = device.node_name()
                && node != self.options.node.as_str()
            {
                tracing::warn!(device = %key, node, "device belongs to another node; skipped");
                outcome
                    .skipped
                    .push((key, format!("it belongs to node {node:?}")));
                continue;
            }
            listed.insert(key.clone());
            match self.devices.get(&key) {
                None => {
                    if let Err(reason) = self.add_device(batch, device, now_ms, out)? {
                        outcome.skipped.push((key, reason));
                    } else {
                        outcome.added.push(key);
                    }
                }
                Some(_) => {
                    if self.update_device(batch, &key, device, now_ms, out)? {
                        outcome.updated.push(key);
                    }
                }
            }
        }
        // Devices whose model changed get the new schema and spec.
        let refreshed: Vec<DeviceKey> = self
            .devices
            .iter()
            .filter(|entry| model_key(&entry.device).is_some_and(|k| changed_models.contains(&k)))
            .map(|entry| entry.key.clone())
            .filter(|key| !outcome.added.contains(key) && !outcome.updated.contains(key))
            .collect();
        for key in refreshed {
            if let Some(entry) = self.devices.get_mut(&key) {
                entry.model = model_key(&entry.device).and_then(|k| self.models.get(&k).cloned());
                out.spec(&self.options.node, entry);
                outcome.updated.push(key);
            }
        }
        let mut removed: Vec<DeviceKey> = membership.removed;
        if membership.complete {
            removed.extend(
                self.devices
                    .iter()
                    .map(|entry| entry.key.clone())
                    .filter(|key| !listed.contains(key)),
            );
        }
        for key in removed {
            if self.remove_device(batch, &key, now_ms, out)? {
                outcome.removed.push(key);
            }
        }
        if membership.complete {
            let stale: Vec<ObjectKey> = self
                .models
                .keys()
                .filter(|key| !listed_models.contains(key))
                .cloned()
                .collect();
            for key in stale {
                let mut scope = batch.scope()?;
                scope.delete_model(&key)?;
                scope.commit()?;
                self.models.remove(&key);
                tracing::info!(model = %key, "device model removed");
            }
        }
        tracing::info!(
            added = outcome.added.len(),
            updated = outcome.updated.len(),
            removed = outcome.removed.len(),
            skipped = outcome.skipped.len(),
            "membership applied"
        );
        Ok(outcome)
    }

    /// A new device: stored, its desired twins applied to an empty twin, announced.
    fn add_device(
        &mut self,
        batch: &mut Batch<'_>,
        device: Device,
        now_ms: i64,
        out: &mut Publications,
    ) -> Result<Result<(), String>, ServiceError> {
        let model = self.model_of(&device);
        let announced = membership_device(&device, model.as_deref().map(|m| &m.model), now_ms);
        let mut entry = match DeviceEntry::new(device, model) {
            Ok(entry) => entry,
            Err(error) => return Ok(Err(error.to_string())),
        };
        let event_id = uuid::Uuid::new_v4().to_string();
        let model = entry.model.clone();
        let ctx = context(
            model.as_deref().map(|m| &m.schema),
            now_ms,
            &event_id,
            self.options.max_value_bytes,
        );
        let (twin, effects) = DeviceTwin::add_device(&ctx, &announced);
        entry.twin = twin;
        let mut scope = batch.scope()?;
        scope.put_device(&entry.key, &entry.device)?;
        persist(&mut scope, &entry, &effects, now_ms)?;
        to_cloud::queue_accepted(&mut scope, &entry, &effects, now_ms)?;
        scope.commit()?;
        for rejection in &effects.rejections {
            tracing::warn!(device = %entry.key, property = %rejection.property, reason = ?rejection.reason, "desired value of a new device refused");
        }
        tracing::info!(device = %entry.key, "device added");
        out.effects(&self.options.node, &entry, &effects, &ctx);
        out.spec(&self.options.node, &entry);
        self.devices.insert(entry);
        Ok(Ok(()))
    }

    /// A device the node has: new spec stored, desired values applied as a cloud update.
    /// Returns whether anything changed.
    fn update_device(
        &mut self,
        batch: &mut Batch<'_>,
        key: &DeviceKey,
        device: Device,
        now_ms: i64,
        out: &mut Publications,
    ) -> Result<bool, ServiceError> {
        let model = self.model_of(&device);
        let Some(entry) = self.devices.get_mut(key) else {
            return Ok(false);
        };
        let spec_changed = entry.device != device || entry.model != model;
        let update = DeviceTwinUpdate {
            event_id: Some(String::new()),
            timestamp: Some(now_ms),
            twin: JsonField::Value(desired_twins(
                &device,
                model.as_deref().map(|m| &m.model),
                now_ms,
            )),
        };
        entry.device = device;
        entry.model = model;
        let event_id = uuid::Uuid::new_v4().to_string();
        let ctx = context(
            entry.model.as_deref().map(|m| &m.schema),
            now_ms,
            &event_id,
            self.options.max_value_bytes,
        );
        let effects = entry.twin.cloud_update(&ctx, &update);
        let mut scope = batch.scope()?;
        if spec_changed {
            scope.put_device(key, &entry.device)?;
        }
        persist(&mut scope, entry, &effects, now_ms)?;
        to_cloud::queue_accepted(&mut scope, entry, &effects, now_ms)?;
        scope.commit()?;
        out.effects(&self.options.node, entry, &effects, &ctx);
        if spec_changed {
            out.spec(&self.options.node, entry);
        }
        Ok(spec_changed || !effects.changed.is_empty())
    }

    /// A device leaves the node: its rows go, the mappers are told, its retained spec is cleared.
    fn remove_device(
        &mut self,
        batch: &mut Batch<'_>,
        key: &DeviceKey,
        now_ms: i64,
        out: &mut Publications,
    ) -> Result<bool, ServiceError> {
        if self.devices.get(key).is_none() {
            return Ok(false);
        }
        let mut scope = batch.scope()?;
        scope.delete_device(key)?;
        scope.commit()?;
        let Some(entry) = self.devices.remove(key) else {
            return Ok(false);
        };
        let event_id = uuid::Uuid::new_v4().to_string();
        let ctx = TwinContext::new(now_ms).with_event_id(&event_id);
        let effects = DeviceTwin::remove_device(&ctx, &key.to_string());
        out.effects(&self.options.node, &entry, &effects, &ctx);
        out.spec_removed(&self.options.node, key);
        tracing::info!(device = %key, "device removed");
        Ok(true)
    }

    /// Applies a versioned twin update from the cloud.
    pub(super) fn cloud_update(
        &mut self,
        batch: &mut Batch<'_>,
        key: &DeviceKey,
        update: &DeviceTwinUpdate,
        now_ms: i64,
        out: &mut Publications,
    ) -> Result<CloudUpdateOutcome, ServiceError> {
        let Some(entry) = self.devices.get_mut(key) else {
            return Err(ServiceError::UnknownDevice(key.clone()));
        };
        let _span =
            tracing::debug_span!("cloud_update", device = %key, event_id = ?update.event_id)
                .entered();
        let event_id = uuid::Uuid::new_v4().to_string();
        let ctx = context(
            entry.model.as_deref().map(|m| &m.schema),
            now_ms,
            &event_id,
            self.options.max_value_bytes,
        );
        let effects = entry.twin.cloud_update(&ctx, update);
        let mut scope = batch.scope()?;
        persist(&mut scope, entry, &effects, now_ms)?;
        to_cloud::queue_accepted(&mut scope, entry, &effects, now_ms)?;
        scope.commit()?;
        for rejection in &effects.rejections {
            tracing::info!(device = %key, property = %rejection.property, reason = ?rejection.reason, "cloud update refused");
        }
        out.effects(&self.options.node, entry, &effects, &ctx);
        Ok(CloudUpdateOutcome {
            changed: effects.changed.iter().cloned().collect(),
            rejections: effects.rejections,
        })
    }

    /// Queues the node's version summary (see `cloud_edge::SummaryContent`) in `batch`.
    pub(super) fn queue_summary(
        &self,
        batch: &mut Batch<'_>,
        applied: Option<u64>,
        now_ms: i64,
    ) -> Result<(), ServiceError> {
        let content = SummaryContent {
            applied,
            devices: self
                .devices
                .iter()
                .map(|entry| {
                    let device = DeviceRef {
                        namespace: entry.key.namespace.clone(),
                        name: entry.key.name.clone(),
                    };
                    (summary_key(&device), digest(entry))
                })
                .collect(),
        };
        let payload = serde_json::to_string(&content).map_err(|source| StoreError::Encode {
            what: "version summary",
            source,
        })?;
        let mut scope = batch.scope()?;
        let queued = scope.queue(NewEntry {
            kind: OutboxKind::Summary,
            device: &ObjectKey::new("", ""),
            property: None,
            payload: &payload,
            now_ms,
        });
        match queued {
            Ok(_) => {
                scope.commit()?;
                tracing::debug!(
                    devices = content.devices.len(),
                    ?applied,
                    "version summary queued"
                );
            }
            // Nothing was written; the summary is a repair aid, the next interval tries again.
            Err(StoreError::OutboxFull { capacity }) => {
                tracing::warn!(
                    capacity,
                    "the cloud outbox is full: version summary left out"
                );
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    fn model_of(&self, device: &Device) -> Option<Arc<ModelEntry>> {
        let key = model_key(device)?;
        let model = self.models.get(&key).cloned();
        if model.is_none() {
            tracing::warn!(device = %device_key(device), model = %key, "device model not on this node: values are typed by the twin");
        }
        model
    }
}

/// The digest of what the edge holds of a device: the generation of its stored spec and the
/// cloud version of each desired value the spec lists (0 when the twin lacks the property).
fn digest(entry: &DeviceEntry) -> String {
    desired_digest(
        entry.device.generation(),
        entry
            .device
            .spec
            .properties
            .iter()
            .filter(|p| p.desired.is_some())
            .map(|p| {
                let version = entry
                    .twin
                    .property(&p.name)
                    .map_or(0, |twin| twin.desired_version.cloud);
                (p.name.as_str(), version)
            }),
    )
}
