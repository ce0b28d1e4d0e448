//! The agent's side of the cloud tunnel: the tunnel's [`Outbox`] over the agent's persistent
//! cloud-bound outbox, and its [`Inbox`] applying the cloud's membership updates through the twin
//! service (see `edgetwin_model::wire::cloud_edge` for the messages).
//!
//! - Outbound: each outbox entry (one per device property or device state, coalesced by the
//!   store) becomes one message whose sequence number is the entry's `seq` in a stream id kept in
//!   the store's metadata (a new store gets a new stream). The cloud's acknowledgement removes the
//!   entries. The twin service announces each commit that queued entries
//!   (`ServiceHandle::outbox_appended`); that wakes the link at once, with no polling.
//! - Reconcile: when the link comes up and every `cloud.reconcileIntervalSecs` while it is up,
//!   the link has the twin service queue the node's version summary (with the last cloud message
//!   applied), which goes out like any other entry; the cloud resends what differs.
//! - Inbound: a membership update is applied with `ServiceHandle::apply_membership`. The edge
//!   remembers the resume point in memory only: applying a membership update again is a no-op
//!   (compare before act, versioned desired values), and the cloud keeps every message until it
//!   is acknowledged, so a restarted agent loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::edge::config::CloudConfig;
use crate::edge::service::{Membership, ServiceHandle};
use crate::edge::store::{DeviceKey, OutboxKind};
use crate::tunnel::backoff::BackoffConfig;
use crate::tunnel::client::{
    ClientConfigError, ClientState, HubClient, HubClientConfig, HubClientHandle, OutboxWaker,
};
use crate::tunnel::inbox::{ApplyError, Delivery, Inbox};
use crate::tunnel::outbox::{Outbox, OutboxEntry, OutboxError};
use crate::tunnel::tls::{ClientTlsFiles, TlsConfigError, client_config};
use crate::tunnel::{NodeName, ResumePoint, Seq, StreamId};
use edgetwin_model::wire::cloud_edge::{self, DeviceRef, EDGE_SOURCE, TwinContent};

/// Why the cloud link did not start.
#[derive(Debug, thiserror::Error)]
pub enum HubLinkError {
    /// The node name is not a valid tunnel node name.
    #[error("node name: {0}")]
    Node(#[from] crate::tunnel::node::NodeNameError),
    /// The token file.
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS files.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The client configuration.
    #[error(transparent)]
    Client(#[from] ClientConfigError),
}

/// The running link: the tunnel client and the task that wakes it when the outbox grows.
pub struct HubLink {
    client: HubClientHandle,
    waker: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for HubLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubLink")
            .field("state", &self.client.state())
            .finish_non_exhaustive()
    }
}

impl HubLink {
    /// Starts connecting `node` to the cloud named by `config` (whose `url` must be set).
    pub fn start(
        config: &CloudConfig,
        url: &str,
        node: &str,
        stream: StreamId,
        service: ServiceHandle,
    ) -> Result<HubLink, HubLinkError> {
        let node = NodeName::new(node)?;
        let token = match (&config.token, &config.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| HubLinkError::TokenFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let tls = match &config.ca_file {
            Some(ca) => Some(client_config(&ClientTlsFiles {
                ca: ca.clone(),
                client_cert: config
                    .client_cert_file
                    .clone()
                    .zip(config.client_key_file.clone()),
            })?),
            None => None,
        };
        let mut client_config = HubClientConfig::new(url, node.clone(), token, tls);
        client_config.insecure = config.insecure;
        client_config.backoff = BackoffConfig {
            initial: Duration::from_millis(config.reconnect_min_ms),
            max: Duration::from_millis(config.reconnect_max_ms),
        };
        let appended = service.outbox_appended();
        let outbox = Arc::new(AgentOutbox {
            service: service.clone(),
            node: node.clone(),
            stream,
        });
        let inbox = Arc::new(AgentInbox {
            service: service.clone(),
            resume: Mutex::new(HashMap::new()),
        });
        let client = HubClient::start(client_config, outbox, Arc::clone(&inbox) as Arc<_>)?;
        let waker = tokio::spawn(wake_and_summarize(
            client.waker(),
            appended,
            client.watch_state(),
            Duration::from_secs(config.reconcile_interval_secs.max(1)),
            Summaries {
                service,
                inbox,
                node: node.clone(),
            },
        ));
        tracing::info!(%node, url, "connecting to the cloud");
        Ok(HubLink { client, waker })
    }

    /// The tunnel client (state, counters).
    pub fn client(&self) -> &HubClientHandle {
        &self.client
    }

    /// Closes the link.
    pub async fn shutdown(self) {
        self.waker.abort();
        self.client.shutdown().await;
    }
}

/// Wakes the link when the twin service committed outbox entries, and queues the version summary when the link comes up
/// and every `reconcile` while it is up.
async fn wake_and_summarize(
    wake: OutboxWaker,
    mut appended: tokio::sync::watch::Receiver<u64>,
    mut state: tokio::sync::watch::Receiver<ClientState>,
    reconcile: Duration,
    summaries: Summaries,
) {
    let mut periodic = tokio::time::interval(reconcile);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    periodic.tick().await;
    let mut connected = false;
    loop {
        tokio::select! {
            // The twin service committed outbox entries; ends with the service.
            changed = appended.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *state.borrow_and_update() == ClientState::Connected;
                let came_up = now && !connected;
                connected = now;
                if !came_up {
                    continue;
                }
                summaries.queue().await;
                periodic.reset();
            }
            _ = periodic.tick(), if connected => summaries.queue().await,
        }
        wake.notify();
    }
}

/// Queues the node's version summary.
struct Summaries {
    service: ServiceHandle,
    inbox: Arc<AgentInbox>,
    node: NodeName,
}

impl Summaries {
    async fn queue(&self) {
        let applied = self.inbox.resume().get(&self.node).map(|point| point.seq);
        if let Err(error) = self.service.queue_summary(applied).await {
            tracing::warn!(%error, "cannot queue the version summary; the next interval retries");
        }
    }
}

/// The agent's outbox as the tunnel reads it.
struct AgentOutbox {
    service: ServiceHandle,
    node: NodeName,
    stream: StreamId,
}

impl AgentOutbox {
    fn message(&self, entry: crate::edge::store::OutboxEntry) -> Result<OutboxEntry, OutboxError> {
        let device = DeviceRef {
            namespace: entry.device.namespace.clone(),
            name: entry.device.name.clone(),
        };
        let bad = |e: serde_json::Error| {
            OutboxError::Storage(format!("outbox entry {} is not valid JSON: {e}", entry.seq))
        };
        let (resource, content) = match entry.kind {
            OutboxKind::Twin => {
                let content = TwinContent {
                    property: entry.property.clone().unwrap_or_default(),
                    twin: serde_json::from_str(&entry.payload).map_err(bad)?,
                };
                (
                    cloud_edge::twin_resource(self.node.as_str(), &device),
                    serde_json::to_value(content).map_err(bad)?,
                )
            }
            OutboxKind::State => (
                cloud_edge::state_resource(self.node.as_str(), &device),
                serde_json::from_str(&entry.payload).map_err(bad)?,
            ),
            OutboxKind::Summary => (
                cloud_edge::summary_resource(self.node.as_str()),
                serde_json::from_str(&entry.payload).map_err(bad)?,
            ),
        };
        Ok(OutboxEntry {
            seq: entry.seq,
            message: cloud_edge::envelope(
                format!("{}-{}", self.stream.0, entry.seq),
                entry.created_ms,
                EDGE_SOURCE,
                resource,
                content,
            ),
        })
    }
}

impl Outbox for AgentOutbox {
    fn stream(&self) -> StreamId {
        self.stream
    }

    fn append(
        &self,
        _message: edgetwin_model::wire::Envelope,
    ) -> BoxFuture<'_, Result<Seq, OutboxError>> {
        // Only the twin service queues cloud-bound messages (in the transaction of their cause).
        Box::pin(async {
            Err(OutboxError::Storage(
                "the agent's outbox is written by the twin service only".into(),
            ))
        })
    }

    fn peek_after(
        &self,
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, OutboxError>> {
        Box::pin(async move {
            let entries = self
                .service
                .outbox_peek(after, limit)
                .await
                .map_err(|e| OutboxError::Storage(e.to_string()))?;
            entries.into_iter().map(|e| self.message(e)).collect()
        })
    }

    fn ack_through(&self, seq: Seq) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            self.service
                .outbox_ack(seq)
                .await
                .map(|_| ())
                .map_err(|e| OutboxError::Storage(e.to_string()))
        })
    }
}

/// Applies the cloud's messages to the twin service.
struct AgentInbox {
    service: ServiceHandle,
    resume: Mutex<HashMap<NodeName, ResumePoint>>,
}

impl AgentInbox {
    fn resume(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, ResumePoint>> {
        // Every critical section leaves the map consistent, so a poisoned lock is usable.
        self.resume
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inbox for AgentInbox {
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        let point = self.resume().get(node).copied();
        Box::pin(async move { Ok(point) })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        Box::pin(async move {
            match cloud_edge::parse_membership(&delivery.message) {
                Ok(content) => {
                    let membership = Membership {
                        models: content.models,
                        devices: content.devices,
                        removed: content
                            .removed
                            .into_iter()
                            .map(|d| DeviceKey::new(d.namespace, d.name))
                            .collect(),
                        complete: content.complete,
                    };
                    let outcome = self
                        .service
                        .apply_membership(membership)
                        .await
                        .map_err(|e| ApplyError(e.to_string()))?;
                    for (device, reason) in &outcome.skipped {
                        tracing::warn!(%device, %reason, "device from the cloud not served");
                    }
                }
                // A message this agent cannot read is consumed (it would block the stream).
                Err(error) => tracing::warn!(%error, "message from the cloud ignored"),
            }
            self.resume()
                .insert(delivery.node.clone(), delivery.resume_point());
            Ok(())
        })
    }
}
