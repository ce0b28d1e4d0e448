//! The whole cloud in one call: registry, device controller, hub and the health/metrics
//! endpoint ([`Cloud::start`]). `edgetwin cloud` is a thin layer over it, and `edgetwin up` runs
//! it in the same process as an edge agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{CloudConfig, RegistryConfig};
use super::controller::{Controller, ControllerConfig, ControllerMetrics};
use super::registry::Registry;
use super::registry::embedded::EmbeddedRegistry;
use super::registry::embedded::data_dir::DataDir;
use super::registry::embedded::server::ApiServer;
use crate::tunnel::auth::TokenStore;
use crate::tunnel::server::{Hub, HubConfig, HubParts};
use crate::tunnel::stats::StatsSnapshot;
use crate::tunnel::store::{HubStore, HubStoreOptions};
use crate::tunnel::tls::{ServerTlsFiles, server_config};

/// Why the cloud did not start.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The data directory or a file in it.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded registry.
    #[error("embedded registry: {0}")]
    Registry(#[from] super::registry::embedded::Error),
    /// A listener.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        /// What listens there.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The token store.
    #[error(transparent)]
    Tokens(#[from] crate::tunnel::auth::AuthError),
    /// The per-node outboxes.
    #[error(transparent)]
    HubStore(#[from] crate::tunnel::store::HubStoreError),
    /// The tunnel's TLS files.
    #[error(transparent)]
    Tls(#[from] crate::tunnel::tls::TlsConfigError),
    /// The hub.
    #[error(transparent)]
    Hub(#[from] crate::tunnel::server::HubError),
}

/// Starts clouds.
pub struct Cloud;

/// A running cloud.
pub struct CloudHandle {
    hub: Arc<Hub>,
    tunnel_addr: SocketAddr,
    registry_url: String,
    metrics_addr: Option<SocketAddr>,
    data_dir: DataDir,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    controller_metrics: Arc<ControllerMetrics>,
}

impl Cloud {
    /// Opens the data directory and the registry, starts the controller, the hub, the registry
    /// API and the metrics endpoint.
    pub async fn start(config: CloudConfig) -> Result<CloudHandle, CloudError> {
        let dir = DataDir::new(config.data_dir.clone());
        dir.create()?;
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let RegistryConfig::Embedded { api_listen } = config.registry;
        let token = dir.load_or_create_token()?;
        let embedded = EmbeddedRegistry::open(&dir.registry_db())?;
        let api = ApiServer::bind(api_listen, embedded.clone(), token)
            .await
            .map_err(|source| CloudError::Listen {
                what: "registry API",
                addr: api_listen,
                source,
            })?;
        let registry_url = api.url().map_err(|source| CloudError::Listen {
            what: "registry API",
            addr: api_listen,
            source,
        })?;
        dir.write_url(&registry_url)?;
        let api_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = api
                .run_until(async move { api_stop.cancelled().await })
                .await
            {
                tracing::error!(%error, "the registry API failed");
            }
        }));
        let registry: Arc<dyn Registry> = Arc::new(embedded);

        let controller = Controller::new(
            registry,
            ControllerConfig {
                status_interval: config.status_interval(),
                reconcile_interval: config.reconcile_interval(),
            },
        );
        let controller_metrics = controller.metrics();
        let tls = config
            .tls
            .as_ref()
            .map(|tls| {
                server_config(&ServerTlsFiles {
                    cert_chain: tls.cert_file.clone(),
                    key: tls.key_file.clone(),
                    client_ca: tls.client_ca_file.clone(),
                })
            })
            .transpose()?;
        let mut hub_config = HubConfig::new(config.listen, tls);
        hub_config.insecure = config.insecure;
        let db = config.cloud_db();
        let parts = HubParts {
            tokens: Arc::new(TokenStore::open(&db)?),
            store: HubStore::open(&db, HubStoreOptions::default())?,
            inbox: controller.inbox(),
            membership: controller.membership(),
        };
        let hub = Arc::new(Hub::start(hub_config, parts).await?);
        let tunnel_addr = hub.local_addr();
        tasks.push(tokio::spawn(controller.run(Arc::clone(&hub), stop.clone())));

        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| CloudError::Listen {
                        what: "metrics",
                        addr,
                        source,
                    })?;
                let local = listener.local_addr().map_err(|source| CloudError::Listen {
                    what: "metrics",
                    addr,
                    source,
                })?;
                let app = Router::new()
                    .route("/healthz", get(|| async { "ok\n" }))
                    .route("/metrics", get(metrics))
                    .with_state((Arc::clone(&hub), Arc::clone(&controller_metrics)));
                let metrics_stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { metrics_stop.cancelled().await })
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "the metrics endpoint failed");
                    }
                }));
                Some(local)
            }
            None => None,
        };
        tracing::info!(tunnel = %tunnel_addr, registry = %registry_url, data_dir = %dir.root().display(), "cloud started");
        Ok(CloudHandle {
            hub,
            tunnel_addr,
            registry_url,
            metrics_addr,
            data_dir: dir,
            stop,
            tasks,
            controller_metrics,
        })
    }
}

impl CloudHandle {
    /// Where the tunnel listens (edges connect to `ws://` or `wss://` this address).
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.tunnel_addr
    }

    /// The embedded registry's API URL (what `edgetwin ctl` talks to).
    pub fn registry_url(&self) -> &str {
        &self.registry_url
    }

    /// Where `/healthz` and `/metrics` are served, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The hub's counters.
    pub fn tunnel_stats(&self) -> StatsSnapshot {
        self.hub.stats()
    }

    /// The controller's counters.
    pub fn controller_metrics(&self) -> &ControllerMetrics {
        &self.controller_metrics
    }

    /// Stops everything: the controller writes its pending status patches first.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a cloud task panicked");
            }
        }
        match Arc::try_unwrap(self.hub) {
            Ok(hub) => hub.shutdown().await,
            Err(_) => tracing::warn!("the hub is still referenced; not shut down cleanly"),
        }
        self.data_dir.remove_url();
    }
}

async fn metrics(State((hub, controller)): State<(Arc<Hub>, Arc<ControllerMetrics>)>) -> String {
    let tunnel = hub.stats();
    let c = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "edgetwin_cloud_connected_nodes",
        "gauge",
        "Edge nodes connected now.",
        tunnel.links_up,
    );
    metric(
        "edgetwin_cloud_messages_out_total",
        "counter",
        "Messages sent to nodes (all types).",
        tunnel.messages_sent,
    );
    metric(
        "edgetwin_cloud_messages_in_total",
        "counter",
        "Messages from nodes applied (all types).",
        tunnel.messages_applied,
    );
    metric(
        "edgetwin_cloud_membership_sent_total",
        "counter",
        "Membership updates queued for nodes.",
        c(&controller.membership_sent),
    );
    metric(
        "edgetwin_cloud_twin_received_total",
        "counter",
        "Twin syncs received from nodes.",
        c(&controller.twin_received),
    );
    metric(
        "edgetwin_cloud_state_received_total",
        "counter",
        "Device state messages received from nodes.",
        c(&controller.state_received),
    );
    metric(
        "edgetwin_cloud_status_writes_total",
        "counter",
        "Status patches written to the registry.",
        c(&controller.status_writes),
    );
    metric(
        "edgetwin_cloud_status_write_failures_total",
        "counter",
        "Status patches that failed (retried).",
        c(&controller.status_write_failures),
    );
    metric(
        "edgetwin_cloud_rejects_total",
        "counter",
        "Messages refused: unreadable, or another node's device.",
        c(&controller.rejected) + tunnel.isolation_rejections,
    );
    metric(
        "edgetwin_cloud_auth_failures_total",
        "counter",
        "Connections refused for authentication.",
        tunnel.auth_failures,
    );
    metric(
        "edgetwin_cloud_retransmissions_total",
        "counter",
        "Messages sent again after a timeout.",
        tunnel.retransmissions,
    );
    out
}
