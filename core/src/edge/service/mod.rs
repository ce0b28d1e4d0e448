//! The twin service: one task that owns the node's devices, their twins (the engine state) and
//! the store, and serves both the mappers (over the bus) and the cloud side (over a
//! [`ServiceHandle`]).
//!
//! **Batches.** The task takes the next inbound message and whatever else is already queued (up
//! to `batch_max`), applies each through the twin engine inside its own store savepoint, commits
//! **one** transaction for the batch, and only then publishes the answers, documents and deltas
//! in order and acknowledges the QoS 1 publishes to the broker. A crash before the commit loses
//! nothing: the broker redelivers the unacknowledged publishes. An event whose writes fail (e.g.
//! the outbox is full) is undone alone and answered with an error; if the commit itself fails,
//! the in-memory state is reloaded from the store and every request of the batch is answered 500.
//!
//! **Cloud side.** Cloud twin updates and membership changes, and the outbox reads of the (next
//! issue's) hub client, arrive as commands on the same task, so they are ordered with the mapper
//! traffic and need no locks. The contract of [`ServiceHandle`] for the cloud tunnel:
//!
//! - [`ServiceHandle::apply_membership`] stores models and devices and creates/removes twins in
//!   one transaction, then announces them (`membership/updated`, retained spec messages). With
//!   `complete: true` the lists are the node's whole state (devices and models not listed are
//!   removed): send that after a (re)connection; send deltas otherwise. Applying the same
//!   membership twice changes nothing. Devices of another node are skipped, not an error.
//! - [`ServiceHandle::apply_cloud_update`] applies a versioned KubeEdge `DeviceTwinUpdate`
//!   (cloud versions in `expected_version` / `actual_version`) through the engine's version rule;
//!   refused parts come back in [`CloudUpdateOutcome::rejections`] and the edge's state of them is
//!   queued in the outbox, so the cloud converges. An unknown device is
//!   [`ServiceError::UnknownDevice`] (nothing is written).
//! - The outbox: [`ServiceHandle::outbox_peek`] returns entries in `seq` order after a given
//!   `seq` (so a sender can have several pages in flight); [`ServiceHandle::outbox_ack`] removes
//!   every entry with `seq <=` the acknowledged one. An entry is at most one per (kind, device,
//!   property): a newer change replaces it and moves it to the tail with a new `seq`, so an ack
//!   never removes content the cloud has not been sent. `OutboxKind::Twin` payloads are the
//!   property's KubeEdge `MsgTwin` JSON as `twin/edge_updated` carries it, with every half the
//!   property holds (values, versions, metadata; see `outbound`), also when the edge accepted a
//!   desired value from the cloud; `OutboxKind::State` payloads are a KubeEdge device state
//!   message (`DeviceMsg`).
//!   Entries survive restarts (they are written in the transaction of the change).
//! - [`ServiceHandle::version_summary`] gives every property's desired and reported versions;
//!   [`ServiceHandle::queue_summary`] queues their digest for the cloud's reconcile (an
//!   `OutboxKind::Summary` entry holding a `cloud_edge::SummaryContent`).
//!
//! Every call is answered after its transaction is committed; [`ServiceError::Stopped`] means the
//! agent is shutting down.

mod from_cloud;
mod from_mappers;
mod to_cloud;
pub mod to_mappers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rumqttc::QoS;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::edge::bus::{AckToken, Bus, BusEvent, BusEvents, Message};
use crate::edge::devices::{DeviceEntry, Devices, ModelEntry, model_key};
use crate::edge::metrics::Metrics;
use crate::edge::store::{Batch, DeviceKey, ObjectKey, OutboxEntry, Scope, Store, StoreError};
use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::twin::{
    DeviceSchema, DeviceTwin, Effects, PropertySummary, PropertyTwin, Rejection, TwinContext,
};
use edgetwin_model::wire::payload::DeviceTwinUpdate;
use edgetwin_model::wire::topic::TopicLevel;

use to_mappers::Publications;

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// This node's name (membership topics).
    pub node: TopicLevel,
    /// QoS of the messages the service publishes.
    pub qos: QoS,
    /// Largest inbound payload parsed.
    pub max_payload_bytes: usize,
    /// Largest twin value.
    pub max_value_bytes: usize,
    /// Most inbound messages per transaction.
    pub batch_max: usize,
}

/// Errors of the service API.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such device on this node.
    #[error("no device {0} on this node")]
    UnknownDevice(DeviceKey),
    /// The service task has stopped.
    #[error("the twin service has stopped")]
    Stopped,
}

/// A membership change, as the cloud sends it (or a local devices file stands in for it).
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// Device models to store (added or changed).
    pub models: Vec<DeviceModel>,
    /// Devices added to the node or changed.
    pub devices: Vec<Device>,
    /// Devices removed from the node.
    pub removed: Vec<DeviceKey>,
    /// Whether `devices` and `models` are the node's complete lists: any other device or model
    /// is removed.
    pub complete: bool,
}

/// What a membership change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipOutcome {
    /// Devices new on the node.
    pub added: Vec<DeviceKey>,
    /// Devices whose spec or desired values changed.
    pub updated: Vec<DeviceKey>,
    /// Devices removed from the node.
    pub removed: Vec<DeviceKey>,
    /// Devices not taken, and why (another node's device, an invalid name, …).
    pub skipped: Vec<(DeviceKey, String)>,
}

/// What a cloud twin update did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloudUpdateOutcome {
    /// Properties whose state changed.
    pub changed: Vec<String>,
    /// Parts that were not applied; the outbox carries the edge's state of them back.
    pub rejections: Vec<Rejection>,
}

/// The versions of every property of every device, for the cloud's reconcile.
pub type VersionSummary = BTreeMap<DeviceKey, BTreeMap<String, PropertySummary>>;

type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

enum Command {
    Membership(Membership, Reply<MembershipOutcome>),
    CloudUpdate(DeviceKey, DeviceTwinUpdate, Reply<CloudUpdateOutcome>),
    OutboxPeek(u64, usize, Reply<Vec<OutboxEntry>>),
    OutboxAck(u64, Reply<u64>),
    Summary(Reply<VersionSummary>),
    QueueSummary(Option<u64>, Reply<()>),
    Twin(DeviceKey, Reply<Option<DeviceTwin>>),
    DeviceState(DeviceKey, Reply<Option<(Option<String>, Option<String>)>>),
    Shutdown(oneshot::Sender<()>),
}

/// The API of a running service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceHandle {
    commands: mpsc::Sender<Command>,
    outbox_last_seq: watch::Receiver<u64>,
}

impl ServiceHandle {
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| ServiceError::Stopped)?;
        answer.await.map_err(|_| ServiceError::Stopped)?
    }

    /// Applies a membership change (devices added, changed, removed), as the cloud would.
    pub async fn apply_membership(
        &self,
        membership: Membership,
    ) -> Result<MembershipOutcome, ServiceError> {
        self.call(|reply| Command::Membership(membership, reply))
            .await
    }

    /// Applies a versioned twin update from the cloud to one device.
    pub async fn apply_cloud_update(
        &self,
        device: DeviceKey,
        update: DeviceTwinUpdate,
    ) -> Result<CloudUpdateOutcome, ServiceError> {
        self.call(|reply| Command::CloudUpdate(device, update, reply))
            .await
    }

    /// Up to `limit` outbox entries in order, after sequence number `after` (0: from the start).
    pub async fn outbox_peek(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, ServiceError> {
        self.call(|reply| Command::OutboxPeek(after, limit, reply))
            .await
    }

    /// The highest outbox sequence number committed so far; it changes right after each commit
    /// that queued something, so a sender waits on it instead of polling the outbox.
    pub fn outbox_appended(&self) -> watch::Receiver<u64> {
        self.outbox_last_seq.clone()
    }

    /// Removes the outbox entries up to `up_to` (the cloud acknowledged them).
    pub async fn outbox_ack(&self, up_to: u64) -> Result<u64, ServiceError> {
        self.call(|reply| Command::OutboxAck(up_to, reply)).await
    }

    /// The versions of every property of every device.
    pub async fn version_summary(&self) -> Result<VersionSummary, ServiceError> {
        self.call(Command::Summary).await
    }

    /// Queues the node's version summary for the cloud (replacing an unsent one). `applied`: the
    /// last cloud message the edge has applied (see `cloud_edge::SummaryContent::applied`).
    pub async fn queue_summary(&self, applied: Option<u64>) -> Result<(), ServiceError> {
        self.call(|reply| Command::QueueSummary(applied, reply))
            .await
    }

    /// A device's twin, if the device is on this node.
    pub async fn twin(&self, device: DeviceKey) -> Result<Option<DeviceTwin>, ServiceError> {
        self.call(|reply| Command::Twin(device, reply)).await
    }

    /// A device's last reported state and last-online time, if the device is on this node.
    pub async fn device_state(
        &self,
        device: DeviceKey,
    ) -> Result<Option<(Option<String>, Option<String>)>, ServiceError> {
        self.call(|reply| Command::DeviceState(device, reply)).await
    }

    /// Whether the service task has stopped.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// Stops the service after the batch in progress; resolves when it has stopped.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// The in-memory state the handlers work on (everything but the store).
struct State {
    options: ServiceOptions,
    metrics: Arc<Metrics>,
    devices: Devices,
    /// Each model once, shared by its devices.
    models: BTreeMap<ObjectKey, Arc<ModelEntry>>,
}

/// The twin service, loaded from the store and ready to run.
pub struct TwinService {
    store: Store,
    state: State,
    /// The outbox's last sequence number after the latest commit.
    outbox_last_seq: watch::Sender<u64>,
}

impl std::fmt::Debug for TwinService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinService")
            .field("devices", &self.state.devices.len())
            .field("models", &self.state.models.len())
            .finish_non_exhaustive()
    }
}

impl TwinService {
    /// Loads every device, model and twin from the store.
    pub fn load(
        store: Store,
        options: ServiceOptions,
        metrics: Arc<Metrics>,
    ) -> Result<TwinService, ServiceError> {
        let state = State::load(&store, options, metrics)?;
        state.metrics.set_devices(state.devices.len());
        state.metrics.set_outbox_entries(store.outbox_len()?);
        let outbox_last_seq = watch::Sender::new(store.outbox_last_seq()?);
        Ok(TwinService {
            store,
            state,
            outbox_last_seq,
        })
    }

    /// The number of devices loaded.
    pub fn device_count(&self) -> usize {
        self.state.devices.len()
    }

    /// Starts the service task on the bus.
    pub fn spawn(self, bus: Bus, events: BusEvents) -> (ServiceHandle, JoinHandle<()>) {
        let (commands_tx, commands) = mpsc::channel(64);
        let outbox_last_seq = self.outbox_last_seq.subscribe();
        let task = tokio::spawn(self.run(bus, events, commands));
        (
            ServiceHandle {
                commands: commands_tx,
                outbox_last_seq,
            },
            task,
        )
    }

    async fn run(mut self, bus: Bus, mut events: BusEvents, mut commands: mpsc::Receiver<Command>) {
        let batch_max = self.state.options.batch_max.max(1);
        let mut connected_before = false;
        loop {
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        let _ = done.send(());
                        break;
                    }
                    Some(command) => self.command(command, &bus).await,
                    None => break,
                },
                event = events.recv() => {
                    let Some(event) = event else { break };
                    let mut batch = vec![event];
                    while batch.len() < batch_max {
                        match events.try_recv() {
                            Some(event) => batch.push(event),
                            None => break,
                        }
                    }
                    self.process(batch, &bus, &mut connected_before).await;
                }
            }
        }
        tracing::info!("twin service stopped");
    }

    /// Applies a batch of bus events: one transaction, then publish, then acknowledge.
    async fn process(&mut self, events: Vec<BusEvent>, bus: &Bus, connected_before: &mut bool) {
        edgetwin_hoptrace::mark("edge.bus.received");
        let now_ms = now_ms();
        let mut publications = Publications::default();
        let mut acks: Vec<AckToken> = Vec::new();
        let mut messages = 0usize;
        let started = Instant::now();
        let committed = match self.store.batch() {
            Ok(mut batch) => {
                for event in events {
                    match event {
                        BusEvent::Message(inbound) => {
                            messages += 1;
                            self.state.handle_message(
                                &mut batch,
                                &inbound,
                                now_ms,
                                &mut publications,
                            );
                            acks.extend(inbound.ack);
                        }
                        BusEvent::Connected { session_present } => {
                            tracing::debug!(session_present, "bus connected");
                            self.state
                                .metrics
                                .broker_connection(true, *connected_before);
                            *connected_before = true;
                            // Retained specs may be gone (e.g. a restarted broker): publish again.
                            for entry in self.state.devices.iter() {
                                publications.spec(&self.state.options.node, entry);
                            }
                        }
                        BusEvent::Disconnected { reason } => {
                            tracing::debug!(%reason, "bus disconnected");
                            self.state.metrics.broker_connection(false, false);
                        }
                    }
                }
                batch.commit()
            }
            Err(error) => Err(error),
        };
        let messages_out = match committed {
            Ok(()) => {
                edgetwin_hoptrace::mark("edge.bus.committed");
                self.state
                    .metrics
                    .batch_committed(messages, started.elapsed());
                self.announce_outbox();
                publications.messages
            }
            Err(error) => {
                tracing::error!(%error, messages, "store commit failed; answering the batch with errors");
                self.state
                    .metrics
                    .reject(crate::edge::metrics::Reject::StoreError);
                self.reload();
                publications.failure_answers()
            }
        };
        publish(
            bus,
            &self.state.metrics,
            self.state.options.qos,
            messages_out,
        )
        .await;
        edgetwin_hoptrace::mark("edge.bus.published");
        for ack in &acks {
            if let Err(error) = bus.ack(ack).await {
                tracing::warn!(%error, "cannot acknowledge a publish");
            }
        }
        self.update_outbox_metric();
    }

    async fn command(&mut self, command: Command, bus: &Bus) {
        if matches!(command, Command::CloudUpdate(..) | Command::Membership(..)) {
            edgetwin_hoptrace::mark("edge.cloud.received");
        }
        match command {
            Command::Membership(membership, reply) => {
                let result = self
                    .cloud_change(bus, |state, batch, now_ms, out| {
                        state.membership(batch, membership, now_ms, out)
                    })
                    .await;
                let _ = reply.send(result);
            }
            Command::CloudUpdate(key, update, reply) => {
                let result = self
                    .cloud_change(bus, |state, batch, now_ms, out| {
                        state.cloud_update(batch, &key, &update, now_ms, out)
                    })
                    .await;
                let _ = reply.send(result);
            }
            Command::OutboxPeek(after, limit, reply) => {
                let _ = reply.send(self.store.outbox_peek(after, limit).map_err(Into::into));
            }
            Command::OutboxAck(up_to, reply) => {
                let _ = reply.send(self.store.outbox_ack(up_to).map_err(Into::into));
                self.update_outbox_metric();
            }
            Command::Summary(reply) => {
                let summary = self
                    .state
                    .devices
                    .iter()
                    .map(|entry| (entry.key.clone(), entry.twin.summary()))
                    .collect();
                let _ = reply.send(Ok(summary));
            }
            Command::QueueSummary(applied, reply) => {
                let result = self
                    .cloud_change(bus, |state, batch, now_ms, _| {
                        state.queue_summary(batch, applied, now_ms)
                    })
                    .await;
                let _ = reply.send(result);
            }
            Command::Twin(key, reply) => {
                let twin = self.state.devices.get(&key).map(|entry| entry.twin.clone());
                let _ = reply.send(Ok(twin));
            }
            Command::DeviceState(key, reply) => {
                let state = self
                    .state
                    .devices
                    .get(&key)
                    .map(|entry| (entry.state.clone(), entry.last_online.clone()));
                let _ = reply.send(Ok(state));
            }
            Command::Shutdown(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Applies a cloud-side change in one transaction and, once it is committed, publishes its
    /// messages. On any error but an unknown device, the in-memory state is reloaded.
    async fn cloud_change<T>(
        &mut self,
        bus: &Bus,
        apply: impl FnOnce(
            &mut State,
            &mut Batch<'_>,
            i64,
            &mut Publications,
        ) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let mut publications = Publications::default();
        let result = self
            .store
            .batch()
            .map_err(ServiceError::from)
            .and_then(|mut batch| {
                let value = apply(&mut self.state, &mut batch, now_ms(), &mut publications)?;
                batch.commit()?;
                Ok(value)
            });
        match &result {
            Ok(_) => {
                edgetwin_hoptrace::mark("edge.cloud.committed");
                self.announce_outbox();
                publish(
                    bus,
                    &self.state.metrics,
                    self.state.options.qos,
                    publications.messages,
                )
                .await;
                edgetwin_hoptrace::mark("edge.cloud.published");
            }
            Err(ServiceError::UnknownDevice(_)) => {}
            Err(error) => {
                tracing::error!(%error, "cloud-side change failed; reloading the state from the store");
                self.reload();
            }
        }
        self.state.metrics.set_devices(self.state.devices.len());
        self.update_outbox_metric();
        result
    }

    /// Replaces the in-memory state with what the store holds (after a failed commit).
    fn reload(&mut self) {
        match State::load(
            &self.store,
            self.state.options.clone(),
            self.state.metrics.clone(),
        ) {
            Ok(state) => self.state = state,
            Err(error) => tracing::error!(%error, "cannot reload the state from the store"),
        }
    }

    /// Tells the outbox's readers (the cloud link) about entries queued by the last commit.
    fn announce_outbox(&self) {
        match self.store.outbox_last_seq() {
            Ok(seq) => {
                self.outbox_last_seq.send_if_modified(|last| {
                    let appended = seq > *last;
                    *last = seq;
                    appended
                });
            }
            Err(error) => tracing::warn!(%error, "cannot read the outbox's last sequence number"),
        }
    }

    fn update_outbox_metric(&self) {
        match self.store.outbox_len() {
            Ok(len) => self.state.metrics.set_outbox_entries(len),
            Err(error) => tracing::warn!(%error, "cannot read the outbox length"),
        }
    }
}

impl State {
    fn load(
        store: &Store,
        options: ServiceOptions,
        metrics: Arc<Metrics>,
    ) -> Result<State, ServiceError> {
        let models: BTreeMap<ObjectKey, Arc<ModelEntry>> = store
            .models::<DeviceModel>()?
            .into_iter()
            .map(|model| {
                let key = ObjectKey::new(model.namespace(), model.name());
                (key, ModelEntry::new(model))
            })
            .collect();
        let mut devices = Devices::default();
        for stored in store.devices::<Device>()? {
            let model = model_key(&stored.device).and_then(|key| models.get(&key).cloned());
            match DeviceEntry::new(stored.device, model) {
                Ok(mut entry) => {
                    entry.state = stored.state;
                    entry.last_online = stored.last_online;
                    devices.insert(entry);
                }
                Err(error) => tracing::error!(%error, "stored device skipped"),
            }
        }
        for stored in store.twins::<PropertyTwin>()? {
            if let Some(entry) = devices.get_mut(&stored.device) {
                entry.twin.properties.insert(stored.property, stored.twin);
            }
        }
        tracing::info!(
            devices = devices.len(),
            models = models.len(),
            "state loaded from the store"
        );
        Ok(State {
            options,
            metrics,
            devices,
            models,
        })
    }
}

/// Publishes `messages` in order. A free function: `&TwinService` is not `Send` (it holds the
/// sqlite connection), so no reference to it may live across an await.
async fn publish(bus: &Bus, metrics: &Metrics, qos: QoS, messages: Vec<to_mappers::Outgoing>) {
    if messages.is_empty() {
        return;
    }
    let count = messages.len();
    // Messages per kind, counted once the bus has taken them (a batch holds a few kinds).
    let mut per_kind: Vec<(&'static str, u64)> = Vec::new();
    for message in &messages {
        match per_kind.iter_mut().find(|(kind, _)| *kind == message.kind) {
            Some((_, n)) => *n += 1,
            None => per_kind.push((message.kind, 1)),
        }
    }
    let messages = messages
        .into_iter()
        .map(|message| Message {
            // Retained messages (specs) are for mappers that connect later: never at QoS 0.
            qos: if message.retain {
                QoS::AtLeastOnce
            } else {
                qos
            },
            topic: message.topic,
            payload: message.payload,
            retain: message.retain,
        })
        .collect();
    match bus.publish_all(messages).await {
        Ok(()) => {
            for (kind, n) in per_kind {
                metrics.messages_out(kind, n);
            }
        }
        Err(error) => tracing::warn!(%error, count, "publish failed"),
    }
}

/// Persists what an engine operation changed on `entry`, and queues its cloud-bound sync.
fn persist(
    scope: &mut Scope<'_>,
    entry: &DeviceEntry,
    effects: &Effects,
    now_ms: i64,
) -> Result<(), StoreError> {
    for name in &effects.changed {
        match entry.twin.properties.get(name) {
            Some(property) => {
                tracing::debug!(
                    device = %entry.key,
                    property = %name,
                    desired_version = ?property.desired_version,
                    reported_version = ?property.reported_version,
                    "twin property changed"
                );
                scope.put_twin(&entry.key, name, property)?;
            }
            None => {
                scope.delete_twin(&entry.key, name)?;
            }
        }
    }
    to_cloud::queue_sync(scope, entry, effects, now_ms)
}

/// The engine's context for one operation on a device whose model gives `schema`.
fn context<'a>(
    schema: Option<&'a DeviceSchema>,
    now_ms: i64,
    event_id: &'a str,
    max_value_bytes: usize,
) -> TwinContext<'a> {
    // The delta is written from the twin when it is published (`Publications::effects`).
    let ctx = TwinContext::new(now_ms)
        .with_event_id(event_id)
        .with_max_value_bytes(max_value_bytes)
        .without_delta();
    match schema {
        Some(schema) => ctx.with_schema(schema),
        None => ctx,
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
