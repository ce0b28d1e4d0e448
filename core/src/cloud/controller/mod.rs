//! The device controller: keeps every edge node's devices in step with the registry, and the
//! registry's status in step with what the nodes report.
//!
//! - Desired path: registry watch → [`membership::Assignments`] (which node, did the spec
//!   change) → [`reconcile::membership_content`] → `Hub::send` (persistent per-node outbox) →
//!   the edge agent applies the Device's desired values as a versioned cloud update. The spec's
//!   desired values also set each property's condition to Pending ([`status`]).
//! - Reported path: `Hub` → [`ControllerInbox::apply`] → [`status::StatusTracker`] (reported,
//!   observedDesired, state, condition transitions) → [`coalesce::Coalescer`] → one
//!   `Registry::patch_status` per device per flush interval, except that a patch settling a
//!   desired change (Verified, Failed) is written at once. A written Failed or ReadFailed
//!   condition is also recorded as a Warning event (`ActuationFailed`, `ReadFailed`).
//! - Reconcile: the edge's version summary (on connect and every reconcile interval) →
//!   [`reconcile::plan`] → only the drifted devices are resent, see [`reconcile`].
//!
//! Conflict policy (the twin engine's, `edgetwin_model::twin`): the cloud's desired value wins over a
//! value written at the edge unless the device's policy says the edge wins; a newer spec
//! generation always outranks an older one.

pub mod coalesce;
pub mod desired;
pub mod membership;
pub mod reconcile;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cloud::registry::{DeviceEvent, Registry, RegistryEvent};
use crate::tunnel::inbox::{ApplyError, Delivery, Inbox};
use crate::tunnel::isolation;
use crate::tunnel::server::Hub;
use crate::tunnel::{NodeName, ResumePoint, Seq};
use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::limits;
use edgetwin_model::wire::cloud_edge::{
    self, CLOUD_SOURCE, DeviceRef, EdgeMessage, MembershipContent, SummaryContent,
    membership_resource,
};
use edgetwin_model::wire::topic::DeviceId;

use coalesce::Coalescer;
use membership::{Assignments, NodeUpdate};
use status::StatusTracker;

/// The largest membership content in one tunnel message: what is left of a tunnel message after
/// the frame and the envelope around the content.
const MEMBERSHIP_BUDGET: usize =
    limits::MAX_TUNNEL_MESSAGE_BYTES - limits::TUNNEL_FRAME_OVERHEAD_BYTES;

/// How the controller behaves.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Status writes per device are coalesced to at most one per this interval.
    pub status_interval: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            status_interval: Duration::from_secs(1),
        }
    }
}

/// The controller's counters (rendered by the cloud's metrics endpoint).
#[derive(Debug, Default)]
pub struct ControllerMetrics {
    /// Membership messages sent to nodes.
    pub membership_sent: AtomicU64,
    /// Twin syncs received from nodes.
    pub twin_received: AtomicU64,
    /// Device state messages received from nodes.
    pub state_received: AtomicU64,
    /// Messages from nodes that could not be read.
    pub rejected: AtomicU64,
    /// Status patches written to the registry.
    pub status_writes: AtomicU64,
    /// Status patches that failed (retried at the next flush).
    pub status_write_failures: AtomicU64,
    /// Sends to the hub that failed.
    pub send_failures: AtomicU64,
    /// Version summaries received from nodes.
    pub summaries_received: AtomicU64,
    /// Devices resent because a node's summary showed them drifted or missing.
    pub reconcile_resent: AtomicU64,
    /// Devices a node's summary listed that the node must not have (removal sent).
    pub reconcile_removed: AtomicU64,
}

impl ControllerMetrics {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// State shared by the controller task, the hub's inbox calls and the isolation check.
struct Shared {
    assignments: RwLock<Assignments>,
    inner: Mutex<Inner>,
    summaries: mpsc::UnboundedSender<(NodeName, SummaryContent)>,
    /// Notified when a status patch is due (see [`coalesce`]).
    status_due: Notify,
    metrics: Arc<ControllerMetrics>,
}

#[derive(Default)]
struct Inner {
    devices: BTreeMap<DeviceRef, Arc<Device>>,
    models: BTreeMap<DeviceRef, Arc<DeviceModel>>,
    tracker: StatusTracker,
    coalescer: Coalescer,
    /// Last applied message per node link. In memory: the controller's effects (registry status)
    /// are idempotent, so after a restart the edge resending unacknowledged messages is harmless.
    resume: HashMap<NodeName, ResumePoint>,
    /// Per node, the sequence number of the last message that carried each device (added,
    /// changed or removed) to it: the reconcile does not resend what is still on its way.
    sent: HashMap<NodeName, HashMap<DeviceRef, Seq>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn assignments(&self) -> std::sync::RwLockReadGuard<'_, Assignments> {
        self.assignments
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn assignments_mut(&self) -> std::sync::RwLockWriteGuard<'_, Assignments> {
        self.assignments
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The controller, before it runs: hand [`Controller::inbox`] and [`Controller::membership`]
/// to the hub, then [`Controller::run`] with it.
pub struct Controller {
    shared: Arc<Shared>,
    summaries: mpsc::UnboundedReceiver<(NodeName, SummaryContent)>,
    registry: Arc<dyn Registry>,
    config: ControllerConfig,
}

/// The hub's view of the controller's membership table (the isolation check).
struct MembershipView(Arc<Shared>);

impl isolation::Membership for MembershipView {
    fn is_assigned(&self, node: &NodeName, device: &DeviceId) -> bool {
        let key = DeviceRef {
            namespace: device.namespace().unwrap_or_default().to_owned(),
            name: device.name().to_owned(),
        };
        self.0.assignments().is_assigned(node.as_str(), &key)
    }
}

/// Applies the nodes' messages to the controller's state (the hub's inbox).
pub struct ControllerInbox(Arc<Shared>);

impl Inbox for ControllerInbox {
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        let point = self.0.lock().resume.get(node).copied();
        Box::pin(async move { Ok(point) })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        self.handle(&delivery);
        self.0
            .lock()
            .resume
            .insert(delivery.node.clone(), delivery.resume_point());
        Box::pin(async { Ok(()) })
    }
}

impl ControllerInbox {
    fn handle(&self, delivery: &Delivery) {
        let metrics = &self.0.metrics;
        let message = match cloud_edge::parse_edge_message(&delivery.message) {
            Ok(message) => message,
            Err(error) => {
                ControllerMetrics::bump(&metrics.rejected);
                tracing::warn!(node = %delivery.node, %error, "message from the edge ignored");
                return;
            }
        };
        let now = jiff::Timestamp::now();
        let mut inner = self.0.lock();
        let due = match message {
            EdgeMessage::Twin { device, content } => {
                ControllerMetrics::bump(&metrics.twin_received);
                inner
                    .tracker
                    .edge_twin(&device, &content, now)
                    .is_some_and(|patch| inner.coalescer.add(device, &patch))
            }
            EdgeMessage::State { device, content } => {
                ControllerMetrics::bump(&metrics.state_received);
                let patch = StatusTracker::edge_state(&content);
                inner.coalescer.add(device, &patch)
            }
            EdgeMessage::Summary(content) => {
                ControllerMetrics::bump(&metrics.summaries_received);
                // The controller task reconciles (it owns the sends).
                let _ = self.0.summaries.send((delivery.node.clone(), content));
                false
            }
        };
        if due {
            edgetwin_hoptrace::mark("controller.status.due");
            self.0.status_due.notify_one();
        }
    }
}

impl Controller {
    /// A controller over `registry`.
    pub fn new(registry: Arc<dyn Registry>, config: ControllerConfig) -> Controller {
        let (summaries, summaries_rx) = mpsc::unbounded_channel();
        Controller {
            shared: Arc::new(Shared {
                assignments: RwLock::new(Assignments::default()),
                inner: Mutex::new(Inner::default()),
                summaries,
                status_due: Notify::new(),
                metrics: Arc::new(ControllerMetrics::default()),
            }),
            summaries: summaries_rx,
            registry,
            config,
        }
    }

    /// The inbox to give the hub.
    pub fn inbox(&self) -> Arc<dyn Inbox> {
        Arc::new(ControllerInbox(Arc::clone(&self.shared)))
    }

    /// The membership table to give the hub (isolation).
    pub fn membership(&self) -> Arc<dyn isolation::Membership> {
        Arc::new(MembershipView(Arc::clone(&self.shared)))
    }

    /// The controller's counters.
    pub fn metrics(&self) -> Arc<ControllerMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Runs until `stop`; the last pending status patches are written before it returns.
    pub async fn run(mut self, hub: Arc<Hub>, stop: CancellationToken) {
        let mut watch = self.registry.watch();
        let mut flush = tokio::time::interval(self.config.status_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut synced = false;
        // Summaries that arrived before the registry's initial sync: the latest per node.
        let mut waiting: BTreeMap<NodeName, SummaryContent> = BTreeMap::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = watch.next() => {
                    let Some(event) = event else {
                        tracing::error!("the registry watch ended; the controller stops");
                        break;
                    };
                    if event == RegistryEvent::Synced {
                        synced = true;
                        tracing::info!(devices = self.shared.lock().devices.len(), "registry synced");
                        for (node, summary) in std::mem::take(&mut waiting) {
                            self.reconcile(&hub, &node, &summary).await;
                        }
                    } else {
                        edgetwin_hoptrace::mark("controller.event");
                        self.registry_event(&hub, event, synced).await;
                    }
                }
                Some((node, summary)) = self.summaries.recv() => {
                    if synced {
                        self.reconcile(&hub, &node, &summary).await;
                    } else {
                        waiting.insert(node, summary);
                    }
                }
                () = self.shared.status_due.notified() => {
                    let due = self.shared.lock().coalescer.drain_due();
                    self.write_status(due).await;
                }
                _ = flush.tick() => self.flush().await,
            }
        }
        self.flush().await;
    }

    async fn registry_event(&self, hub: &Hub, event: RegistryEvent, synced: bool) {
        let now = jiff::Timestamp::now();
        let updates = match event {
            RegistryEvent::Applied(device) => {
                let key = DeviceRef::of(&device);
                let updates = self.shared.assignments_mut().apply(&device);
                let mut inner = self.shared.lock();
                if let Some(patch) = inner.tracker.observe_device(&device, now)
                    && inner.coalescer.add(key.clone(), &patch)
                {
                    // A desired value the device already reports: Verified at once.
                    self.shared.status_due.notify_one();
                }
                inner.devices.insert(key, device);
                updates
            }
            RegistryEvent::Deleted(device) => {
                let key = DeviceRef::of(&device);
                let update = self.shared.assignments_mut().remove(&key);
                let mut inner = self.shared.lock();
                inner.devices.remove(&key);
                inner.tracker.forget(&key);
                inner.coalescer.forget(&key);
                update.into_iter().collect()
            }
            RegistryEvent::ModelApplied(model) => {
                let key = DeviceRef {
                    namespace: model.namespace().to_owned(),
                    name: model.name().to_owned(),
                };
                let previous = self.shared.lock().models.insert(key.clone(), model.clone());
                if previous.is_some_and(|p| p.spec == model.spec) {
                    Vec::new()
                } else {
                    self.shared.assignments().using_model(&key)
                }
            }
            RegistryEvent::ModelDeleted(model) => {
                let key = DeviceRef {
                    namespace: model.namespace().to_owned(),
                    name: model.name().to_owned(),
                };
                self.shared.lock().models.remove(&key);
                Vec::new()
            }
            RegistryEvent::Synced => Vec::new(),
        };
        // Before the initial sync nothing is sent: the summaries the nodes sent meanwhile are
        // reconciled once it is done.
        if synced {
            self.send_updates(hub, updates).await;
        }
    }

    async fn send_updates(&self, hub: &Hub, updates: Vec<(String, NodeUpdate)>) {
        let mut per_node: BTreeMap<String, (Vec<DeviceRef>, Vec<DeviceRef>)> = BTreeMap::new();
        for (node, update) in updates {
            let entry = per_node.entry(node).or_default();
            match update {
                NodeUpdate::Upsert(key) => entry.0.push(key),
                NodeUpdate::Remove(key) => entry.1.push(key),
            }
        }
        for (node, (upserts, removed)) in per_node {
            let content = {
                let inner = self.shared.lock();
                let devices = upserts
                    .iter()
                    .filter_map(|k| inner.devices.get(k).map(AsRef::as_ref));
                reconcile::membership_content(devices, &inner.models, removed)
            };
            match NodeName::new(&node) {
                Ok(node) => self.send(hub, &node, &content).await,
                Err(error) => {
                    tracing::warn!(%node, %error, "device assigned to an invalid node name")
                }
            }
        }
    }

    /// Resends to `node` what its version summary shows drifted, missing or extra.
    async fn reconcile(&self, hub: &Hub, node: &NodeName, summary: &SummaryContent) {
        let (plan, content) = {
            let assignments = self.shared.assignments();
            let mut inner = self.shared.lock();
            let inner = &mut *inner;
            let assigned: Vec<(&DeviceRef, String)> = assignments
                .devices_of(node.as_str())
                .filter_map(|key| Some((key, cloud_edge::expected_digest(inner.devices.get(key)?))))
                .collect();
            let sent = inner.sent.entry(node.clone()).or_default();
            let plan = reconcile::plan(summary, assigned, sent);
            // What the edge no longer holds and the node does not have needs no record.
            sent.retain(|device, _| {
                assignments.is_assigned(node.as_str(), device)
                    || summary
                        .devices
                        .contains_key(&cloud_edge::summary_key(device))
            });
            let devices = plan
                .resend
                .iter()
                .filter_map(|key| inner.devices.get(key).map(AsRef::as_ref));
            let content =
                reconcile::membership_content(devices, &inner.models, plan.remove.clone());
            (plan, content)
        };
        for key in &plan.malformed {
            ControllerMetrics::bump(&self.shared.metrics.rejected);
            tracing::warn!(%node, key, "version summary names no device ({{namespace}}/{{name}})");
        }
        tracing::debug!(
            %node,
            devices = summary.devices.len(),
            resend = plan.resend.len(),
            remove = plan.remove.len(),
            in_flight = plan.in_flight,
            "version summary compared"
        );
        if plan.resend.is_empty() && plan.remove.is_empty() {
            return;
        }
        tracing::info!(%node, resend = plan.resend.len(), remove = plan.remove.len(), "node drifted; resending what differs");
        let metrics = &self.shared.metrics;
        metrics
            .reconcile_resent
            .fetch_add(plan.resend.len() as u64, Ordering::Relaxed);
        metrics
            .reconcile_removed
            .fetch_add(plan.remove.len() as u64, Ordering::Relaxed);
        self.send(hub, node, &content).await;
    }

    /// Sends a membership update, split into messages that fit the tunnel; a device that does
    /// not fit even alone gets a Warning event naming the limit instead.
    async fn send(&self, hub: &Hub, node: &NodeName, content: &MembershipContent) {
        let split = reconcile::split_to_fit(content.clone(), MEMBERSHIP_BUDGET);
        for (device, size) in split.too_large {
            ControllerMetrics::bump(&self.shared.metrics.send_failures);
            let message = format!(
                "not sent to node {node}: the Device and its model are {size} bytes as JSON, more than a tunnel message holds ({} bytes): make it smaller (at most {} bytes each)",
                MEMBERSHIP_BUDGET,
                limits::MAX_OBJECT_BYTES
            );
            tracing::warn!(%node, %device, size, "a device too large for the tunnel is not sent");
            let stored = self.shared.lock().devices.get(&device).cloned();
            if let Some(stored) = stored {
                let event = DeviceEvent::warning("TooLarge", message);
                if let Err(error) = self.registry.record_event(&stored, &event).await {
                    tracing::warn!(%device, %error, "cannot record an event");
                }
            }
        }
        for message in &split.messages {
            self.send_one(hub, node, message).await;
        }
    }

    async fn send_one(&self, hub: &Hub, node: &NodeName, content: &MembershipContent) {
        let metrics = &self.shared.metrics;
        let value = match serde_json::to_value(content) {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%node, %error, "cannot encode a membership update");
                return;
            }
        };
        let message = cloud_edge::envelope(
            uuid::Uuid::new_v4().to_string(),
            jiff::Timestamp::now().as_millisecond(),
            CLOUD_SOURCE,
            membership_resource(node.as_str()),
            value,
        );
        match hub.send(node, message).await {
            Ok(seq) => {
                edgetwin_hoptrace::mark("controller.hub.appended");
                ControllerMetrics::bump(&metrics.membership_sent);
                let mut inner = self.shared.lock();
                let sent = inner.sent.entry(node.clone()).or_default();
                let carried = content.devices.iter().map(DeviceRef::of);
                for device in carried.chain(content.removed.iter().cloned()) {
                    sent.insert(device, seq);
                }
            }
            Err(error) => {
                ControllerMetrics::bump(&metrics.send_failures);
                tracing::warn!(%node, %error, "membership update not queued");
            }
        }
    }

    /// Writes every pending status patch: one write per device.
    async fn flush(&self) {
        let pending = self.shared.lock().coalescer.drain();
        self.write_status(pending).await;
    }

    /// Writes status patches, one per device; a failed write is retried at the next flush.
    async fn write_status(&self, pending: Vec<(DeviceRef, edgetwin_model::devices::DeviceStatus)>) {
        let metrics = &self.shared.metrics;
        for (key, patch) in pending {
            let events = condition_events(&patch);
            edgetwin_hoptrace::mark("controller.status.write");
            match self
                .registry
                .patch_status(&key.namespace, &key.name, &patch)
                .await
            {
                Ok(device) => {
                    edgetwin_hoptrace::mark("controller.status.committed");
                    ControllerMetrics::bump(&metrics.status_writes);
                    for event in events {
                        if let Err(error) = self.registry.record_event(&device, &event).await {
                            tracing::warn!(device = %key, %error, "cannot record an event");
                        }
                    }
                }
                Err(crate::cloud::registry::RegistryError::NotFound { .. }) => {
                    tracing::debug!(device = %key, "status for a deleted device dropped");
                }
                Err(error) => {
                    ControllerMetrics::bump(&metrics.status_write_failures);
                    tracing::warn!(device = %key, %error, "status write failed; retried at the next flush");
                    self.shared.lock().coalescer.retry(key, patch);
                }
            }
        }
    }
}

/// The events a status patch records: a Warning `ActuationFailed` for each property that turns
/// Failed, a Warning `ReadFailed` for each that turns ReadFailed.
fn condition_events(patch: &edgetwin_model::devices::DeviceStatus) -> Vec<DeviceEvent> {
    use edgetwin_model::devices::ConditionType;
    patch
        .twins
        .iter()
        .filter_map(|twin| {
            let condition = twin.condition.as_ref()?;
            let message = format!(
                "property {}: {}",
                twin.property_name,
                condition.message.as_deref().unwrap_or_default()
            );
            match condition.kind {
                ConditionType::Failed => Some(DeviceEvent::warning("ActuationFailed", message)),
                ConditionType::ReadFailed => {
                    Some(DeviceEvent::warning("ReadFailed", message).with_action("Read"))
                }
                _ => None,
            }
        })
        .collect()
}
