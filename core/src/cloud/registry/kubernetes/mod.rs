//! The Kubernetes registry backend: Device and DeviceModel custom resources in a cluster.
//!
//! - **Reading**: one kube-rs `watcher` per kind (all namespaces, or one) feeds a local cache —
//!   a reflector store — and a broadcast of [`RegistryEvent`]s. `get`/`list` read the cache, so
//!   the controller never hammers the API server with reads. A watcher re-list (after a broken
//!   watch or `410 Gone`) is diffed against the cache: what vanished meanwhile is sent as
//!   `Deleted`.
//! - **Status**: `PATCH …/devices/{name}/status` with a JSON merge patch. Because a merge patch
//!   replaces arrays, the backend merges twins by `propertyName` itself (read-modify-write, see
//!   [`status::merge`]) and sends `metadata.resourceVersion` with the patch as a precondition:
//!   when someone else wrote in between, the API server answers `409 Conflict` and the backend
//!   re-reads and retries. One `patch_status` call is one request (no coalescing here; the
//!   device controller folds reports with [`status::merge`] before calling). A patch that
//!   changes nothing sends nothing.
//! - **Events**: `events.k8s.io/v1` Events through kube-rs' `Recorder` (repeats become a
//!   series).
//! - **Leader election**: with a [`LeaseConfig`], only the replica holding the Lease writes
//!   status and events; the others keep a warm cache and answer writes with
//!   [`RegistryError::NotLeader`]. See [`lease`].
//!
//! [`status::merge`]: crate::cloud::registry::status::merge

pub mod lease;
#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use self::lease::{LeaseConfig, Role, host_identity};
use super::object_set::{Kind, Object};
use super::{
    DeviceEvent, EventKind, ObjectKey, ObjectSet, Registry, RegistryError, RegistryEvent, status,
};
use crate::crd::resource::{KubeDevice, KubeDeviceModel};
use edgetwin_model::devices::{Device, DeviceModel, DeviceStatus};

/// How often a status patch is retried after `409 Conflict` before giving up.
const MAX_STATUS_ATTEMPTS: u32 = 5;

/// How the Kubernetes backend runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRegistryConfig {
    /// Watch one namespace, or all (`None`).
    pub namespace: Option<String>,
    /// The field manager named in status patches (`?fieldManager=`).
    pub field_manager: String,
    /// The controller name Events are reported by.
    pub reporter: String,
    /// This replica's name (pod or host name, see [`host_identity`]): the Lease holder identity
    /// and the Events' reporting instance.
    pub identity: String,
    /// Leader election, for several replicas; `None` runs as the only (always leading) replica.
    pub lease: Option<LeaseConfig>,
    /// Events buffered per watcher before it must re-sync from the cache.
    pub watch_buffer: usize,
}

impl KubeRegistryConfig {
    /// All namespaces, field manager and reporter `edgetwin`, no leader election.
    pub fn new(identity: &str) -> Self {
        Self {
            namespace: None,
            field_manager: "edgetwin".into(),
            reporter: "edgetwin".into(),
            identity: identity.into(),
            lease: None,
            watch_buffer: 1024,
        }
    }
}

/// The cache and the broadcast, shared with the watcher tasks.
struct Shared {
    cache: Mutex<Cache>,
    events: broadcast::Sender<RegistryEvent>,
    /// Becomes true once both kinds have been listed.
    synced: watch::Sender<bool>,
}

struct Cache {
    objects: ObjectSet,
    synced_kinds: Vec<Kind>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies events to the cache and broadcasts them, under the cache lock (so a subscriber
    /// that snapshots under the lock sees each event exactly once).
    fn publish(&self, cache: &mut Cache, events: Vec<RegistryEvent>) {
        for event in events {
            cache.objects.record(&event);
            // No receivers is fine.
            let _ = self.events.send(event);
        }
    }
}

/// Stops the background tasks when the last registry handle goes away.
struct Tasks {
    watchers: Vec<JoinHandle<()>>,
    elector: Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
        self.stop.send_replace(true);
    }
}

/// The Kubernetes registry. Cheap to clone.
#[derive(Clone)]
pub struct KubeRegistry {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
    client: Client,
    config: Arc<KubeRegistryConfig>,
    recorder: Recorder,
    leader: watch::Receiver<bool>,
}

impl std::fmt::Debug for KubeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRegistry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubeRegistry {
    /// Starts the watchers (and the leader election, when configured) on the current tokio
    /// runtime.
    pub fn start(client: Client, config: KubeRegistryConfig) -> Self {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache {
                objects: ObjectSet::default(),
                synced_kinds: Vec::new(),
            }),
            events: broadcast::channel(config.watch_buffer.max(1)).0,
            synced: watch::Sender::new(false),
        });
        let watchers = vec![
            tokio::spawn(run_watcher::<KubeDeviceModel>(
                api(&client, config.namespace.as_deref()),
                Arc::clone(&shared),
            )),
            tokio::spawn(run_watcher::<KubeDevice>(
                api(&client, config.namespace.as_deref()),
                Arc::clone(&shared),
            )),
        ];
        let (stop, stopped) = watch::channel(false);
        let (leader, elector) = match &config.lease {
            Some(lease) => {
                let (tx, rx) = watch::channel(false);
                let lock = lease::LeaseLock::new(client.clone(), lease.clone());
                (rx, Some(tokio::spawn(lease::run(lock, tx, stopped))))
            }
            None => (watch::channel(true).1, None),
        };
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: config.reporter.clone(),
                instance: Some(config.identity.clone()),
            },
        );
        Self {
            shared,
            tasks: Arc::new(Tasks {
                watchers,
                elector: Mutex::new(elector),
                stop,
            }),
            client,
            config: Arc::new(config),
            recorder,
            leader,
        }
    }

    /// Stops the watchers (ending every [`Registry::watch`] stream) and, when leading, releases
    /// the Lease (so a standby replica takes over at once instead of waiting for it to expire).
    pub async fn shutdown(&self) {
        for watcher in &self.tasks.watchers {
            watcher.abort();
        }
        self.tasks.stop.send_replace(true);
        let elector = self
            .tasks
            .elector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(elector) = elector
            && let Err(err) = elector.await
        {
            tracing::warn!(error = %err, "the leader election task failed");
        }
    }

    /// Waits until both kinds have been listed once.
    async fn wait_synced(&self) {
        let mut synced = self.shared.synced.subscribe();
        // The sender lives in `shared`, which we hold: this cannot fail.
        let _ = synced.wait_for(|s| *s).await;
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.config
            .namespace
            .as_deref()
            .is_none_or(|ns| ns == namespace)
    }

    async fn cached(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object> {
        self.wait_synced().await;
        let key = ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.shared.lock().objects.get(&key).cloned()
    }

    async fn cached_list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Object> {
        self.wait_synced().await;
        self.shared
            .lock()
            .objects
            .of_kind(kind, namespace)
            .cloned()
            .collect()
    }

    fn require_leader(&self) -> Result<(), RegistryError> {
        if *self.leader.borrow() {
            Ok(())
        } else {
            Err(RegistryError::NotLeader)
        }
    }

    async fn merge_status(
        &self,
        namespace: &str,
        name: &str,
        patch: &DeviceStatus,
    ) -> Result<Device, RegistryError> {
        self.require_leader()?;
        let api: Api<KubeDevice> = Api::namespaced(self.client.clone(), namespace);
        let not_found = || RegistryError::NotFound {
            kind: Kind::Device.as_str(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let params = PatchParams {
            field_manager: Some(self.config.field_manager.clone()),
            ..PatchParams::default()
        };
        let mut current = match self.cached(Kind::Device, namespace, name).await {
            Some(Object::Device(device)) => Some(Device::clone(&device)),
            _ => None,
        };
        for attempt in 1..=MAX_STATUS_ATTEMPTS {
            let device = match current.take() {
                Some(device) => device,
                None => api
                    .get_status(name)
                    .await
                    .map(Device::from)
                    .map_err(|err| backend_or_not_found(err, &not_found))?,
            };
            let mut merged = device.status.clone().unwrap_or_default();
            if !status::merge(&mut merged, patch) {
                return Ok(device);
            }
            // The patch as given, except that `twins` (an array, which a merge patch replaces)
            // is the full merged list.
            let body_status = DeviceStatus {
                twins: if patch.twins.is_empty() {
                    Vec::new()
                } else {
                    merged.twins
                },
                ..patch.clone()
            };
            let body = json!({
                "metadata": {"resourceVersion": device.metadata.resource_version},
                "status": body_status,
            });
            match api.patch_status(name, &params, &Patch::Merge(&body)).await {
                Ok(written) => return Ok(Device::from(written)),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(%namespace, %name, attempt, "status patch conflict; re-reading");
                }
                Err(err) => return Err(backend_or_not_found(err, &not_found)),
            }
        }
        Err(RegistryError::Conflict {
            kind: Kind::Device.as_str(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            attempts: MAX_STATUS_ATTEMPTS,
        })
    }

    async fn publish_event(
        &self,
        device: &Device,
        event: &DeviceEvent,
    ) -> Result<(), RegistryError> {
        self.require_leader()?;
        let event = KubeEvent {
            type_: match event.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: event.reason.clone(),
            note: Some(event.message.clone()),
            action: event.action.into(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &KubeDevice::from(device).object_ref(&()))
            .await
            .map_err(|err| RegistryError::Backend(Box::new(err)))
    }
}

fn backend_or_not_found(err: kube::Error, not_found: &impl Fn() -> RegistryError) -> RegistryError {
    match err {
        kube::Error::Api(status) if status.code == 404 => not_found(),
        err => RegistryError::Backend(Box::new(err)),
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A kind the backend watches.
trait Watched:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn into_object(self) -> Object;
}

impl Watched for KubeDevice {
    const KIND: Kind = Kind::Device;
    fn into_object(self) -> Object {
        Object::Device(Arc::new(Device::from(self)))
    }
}

impl Watched for KubeDeviceModel {
    const KIND: Kind = Kind::DeviceModel;
    fn into_object(self) -> Object {
        Object::Model(Arc::new(DeviceModel::from(self)))
    }
}

/// Follows one kind with a kube-rs watcher (retrying with backoff) into the cache.
async fn run_watcher<K: Watched>(api: Api<K>, shared: Arc<Shared>) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<Object> = Vec::new();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(kind = K::KIND.as_str(), error = %err, "watch failed; retrying with backoff");
                continue;
            }
        };
        let mut cache = shared.lock();
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(object) => listing.push(object.into_object()),
            watcher::Event::InitDone => {
                let events = cache
                    .objects
                    .resync(&[K::KIND], std::mem::take(&mut listing));
                // `resync` already updated the cache; `publish` records again (a no-op).
                shared.publish(&mut cache, events);
                if !cache.synced_kinds.contains(&K::KIND) {
                    cache.synced_kinds.push(K::KIND);
                    tracing::info!(kind = K::KIND.as_str(), "initial list done");
                }
                if cache.synced_kinds.len() == 2 {
                    shared.synced.send_replace(true);
                }
            }
            watcher::Event::Apply(object) => {
                let event = object.into_object().applied();
                shared.publish(&mut cache, vec![event]);
            }
            watcher::Event::Delete(object) => {
                let event = object.into_object().deleted();
                shared.publish(&mut cache, vec![event]);
            }
        }
    }
}

struct WatchState {
    registry: KubeRegistry,
    rx: Option<broadcast::Receiver<RegistryEvent>>,
    known: ObjectSet,
    queue: VecDeque<RegistryEvent>,
    synced: bool,
}

impl KubeRegistry {
    /// Subscribes and snapshots under the cache lock; returns the events that bring `known` up
    /// to the cache.
    fn resubscribe(
        &self,
        known: &mut ObjectSet,
    ) -> (broadcast::Receiver<RegistryEvent>, Vec<RegistryEvent>) {
        let cache = self.shared.lock();
        let rx = self.shared.events.subscribe();
        let fresh: Vec<Object> = cache.objects.objects().cloned().collect();
        let events = known.resync(&[Kind::DeviceModel, Kind::Device], fresh);
        (rx, events)
    }
}

impl Registry for KubeRegistry {
    fn watch(&self) -> BoxStream<'static, RegistryEvent> {
        let state = WatchState {
            registry: self.clone(),
            rx: None,
            known: ObjectSet::default(),
            queue: VecDeque::new(),
            synced: false,
        };
        futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(event) = state.queue.pop_front() {
                    state.known.record(&event);
                    return Some((event, state));
                }
                let Some(rx) = state.rx.as_mut() else {
                    state.registry.wait_synced().await;
                    let (rx, events) = state.registry.resubscribe(&mut state.known);
                    state.queue.extend(events);
                    if !state.synced {
                        state.queue.push_back(RegistryEvent::Synced);
                        state.synced = true;
                    }
                    state.rx = Some(rx);
                    continue;
                };
                let mut stopped = state.registry.tasks.stop.subscribe();
                let received = tokio::select! {
                    received = rx.recv() => received,
                    _ = stopped.wait_for(|stop| *stop) => return None,
                };
                match received {
                    Ok(event) => state.queue.push_back(event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(
                            missed,
                            "registry watcher fell behind; re-syncing from the cache"
                        );
                        state.rx = None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    fn get_device<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>, RegistryError>> {
        async move {
            Ok(match self.cached(Kind::Device, namespace, name).await {
                Some(Object::Device(device)) => Some(Device::clone(&device)),
                _ => None,
            })
        }
        .boxed()
    }

    fn list_devices<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Device>, RegistryError>> {
        async move {
            let objects = self.cached_list(Kind::Device, namespace).await;
            Ok(objects
                .into_iter()
                .filter_map(|o| match o {
                    Object::Device(d) => Some(Device::clone(&d)),
                    Object::Model(_) => None,
                })
                .collect())
        }
        .boxed()
    }

    fn get_model<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeviceModel>, RegistryError>> {
        async move {
            Ok(
                match self.cached(Kind::DeviceModel, namespace, name).await {
                    Some(Object::Model(model)) => Some(DeviceModel::clone(&model)),
                    _ => None,
                },
            )
        }
        .boxed()
    }

    fn list_models<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<DeviceModel>, RegistryError>> {
        async move {
            let objects = self.cached_list(Kind::DeviceModel, namespace).await;
            Ok(objects
                .into_iter()
                .filter_map(|o| match o {
                    Object::Model(m) => Some(DeviceModel::clone(&m)),
                    Object::Device(_) => None,
                })
                .collect())
        }
        .boxed()
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a DeviceStatus,
    ) -> BoxFuture<'a, Result<Device, RegistryError>> {
        async move {
            if !self.in_scope(namespace) {
                return Err(RegistryError::NotFound {
                    kind: Kind::Device.as_str(),
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                });
            }
            self.merge_status(namespace, name, patch).await
        }
        .boxed()
    }

    fn record_event<'a>(
        &'a self,
        device: &'a Device,
        event: &'a DeviceEvent,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.publish_event(device, event).boxed()
    }

    fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }
}
