//! The whole cloud in one call: registry, device controller, hub and the health/metrics
//! endpoint ([`Cloud::start`]). `edgetwin cloud` is a thin layer over it, and `edgetwin up` runs
//! it in the same process as an edge agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{CloudConfig, RegistryConfig};
use super::controller::{Controller, ControllerConfig, ControllerMetrics};
use super::registry::Registry;
use super::registry::embedded::EmbeddedRegistry;
use super::registry::embedded::data_dir::DataDir;
use super::registry::embedded::server::ApiServer;
#[cfg(feature = "kube")]
use super::{
    config::KubernetesRegistryConfig,
    registry::kubernetes::{KubeRegistry, KubeRegistryConfig, LeaseConfig, host_identity},
};
use crate::tunnel::auth::TokenStore;
use crate::tunnel::hub_outbox::{HubOutbox, HubOutboxOptions};
use crate::tunnel::server::{Hub, HubConfig, HubParts};
use crate::tunnel::stats::StatsSnapshot;
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
    HubOutbox(#[from] crate::tunnel::hub_outbox::HubStoreError),
    /// The tunnel's TLS files.
    #[error(transparent)]
    Tls(#[from] crate::tunnel::tls::TlsConfigError),
    /// The hub.
    #[error(transparent)]
    Hub(#[from] crate::tunnel::server::HubError),
    /// `registry: kubernetes` but no cluster configuration was found.
    #[cfg(feature = "kube")]
    #[error(
        "registry `kubernetes`: no Kubernetes cluster configuration found ({0}); set KUBECONFIG or \
         write ~/.kube/config (what kubectl uses), run inside a pod with a service account, or \
         use the embedded registry (see --print-default-config)"
    )]
    NoCluster(#[source] kube::Error),
    /// `registry: kubernetes` in a binary built without the Kubernetes backend.
    #[cfg(not(feature = "kube"))]
    #[error(
        "registry `kubernetes`: this binary was built without the `kube` feature; rebuild it with \
         `--features kube` (part of the default build) or use the embedded registry"
    )]
    KubeNotBuilt,
}

/// Starts clouds.
pub struct Cloud;

/// A running cloud.
pub struct CloudHandle {
    hub: Arc<Hub>,
    tunnel_addr: SocketAddr,
    registry_url: Option<String>,
    metrics_addr: Option<SocketAddr>,
    data_dir: DataDir,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    controller_metrics: Arc<ControllerMetrics>,
    registry_shutdown: Option<BoxFuture<'static, ()>>,
}

impl Cloud {
    /// Opens the data directory and the registry, starts the controller, the hub, the registry
    /// API and the metrics endpoint.
    pub async fn start(config: CloudConfig) -> Result<CloudHandle, CloudError> {
        let dir = DataDir::new(config.data_dir.clone());
        dir.create()?;
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let OpenedRegistry {
            registry,
            api_url: registry_url,
            shutdown: registry_shutdown,
        } = match &config.registry {
            RegistryConfig::Embedded { api_listen } => {
                open_embedded(*api_listen, &dir, &stop, &mut tasks).await?
            }
            RegistryConfig::Kubernetes(kubernetes) => open_kubernetes(kubernetes).await?,
        };

        let controller = Controller::new(
            registry,
            ControllerConfig {
                status_interval: config.status_interval(),
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
            store: HubOutbox::open(&db, HubOutboxOptions::default())?,
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
        tracing::info!(
            tunnel = %tunnel_addr,
            registry = registry_url.as_deref().unwrap_or("kubernetes"),
            data_dir = %dir.root().display(),
            "cloud started"
        );
        Ok(CloudHandle {
            hub,
            tunnel_addr,
            registry_url,
            metrics_addr,
            data_dir: dir,
            stop,
            tasks,
            controller_metrics,
            registry_shutdown,
        })
    }
}

/// The registry [`Cloud::start`] opened.
struct OpenedRegistry {
    registry: Arc<dyn Registry>,
    /// The embedded registry's API URL.
    api_url: Option<String>,
    /// Run once the controller has stopped (releases the Kubernetes Lease).
    shutdown: Option<BoxFuture<'static, ()>>,
}

/// The embedded registry and its API server (a task stopped by `stop`).
async fn open_embedded(
    api_listen: SocketAddr,
    dir: &DataDir,
    stop: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<OpenedRegistry, CloudError> {
    let token = dir.load_or_create_token()?;
    let embedded = EmbeddedRegistry::open(&dir.registry_db())?;
    let api = ApiServer::bind(api_listen, embedded.clone(), token)
        .await
        .map_err(|source| CloudError::Listen {
            what: "registry API",
            addr: api_listen,
            source,
        })?;
    let dashboard = super::dashboard::router(Arc::new(embedded.clone()), api.stopping());
    let api = api.merge(dashboard);
    let url = api.url().map_err(|source| CloudError::Listen {
        what: "registry API",
        addr: api_listen,
        source,
    })?;
    dir.write_url(&url)?;
    let api_stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = api
            .run_until(async move { api_stop.cancelled().await })
            .await
        {
            tracing::error!(%error, "the registry API failed");
        }
    }));
    Ok(OpenedRegistry {
        registry: Arc::new(embedded),
        api_url: Some(url),
        shutdown: None,
    })
}

/// The Kubernetes registry on the cluster kubectl would use ($KUBECONFIG, `~/.kube/config`, or
/// the pod's service account).
#[cfg(feature = "kube")]
async fn open_kubernetes(config: &KubernetesRegistryConfig) -> Result<OpenedRegistry, CloudError> {
    let client = kube::Client::try_default()
        .await
        .map_err(CloudError::NoCluster)?;
    let registry = kubernetes_registry(client, config, host_identity());
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        lease = ?config.leader_election.as_ref().map(|e| &e.lease_name),
        "watching Devices and DeviceModels in the cluster"
    );
    let stopping = registry.clone();
    Ok(OpenedRegistry {
        registry: Arc::new(registry),
        api_url: None,
        shutdown: Some(Box::pin(async move { stopping.shutdown().await })),
    })
}

/// Without the `kube` feature there is no Kubernetes backend.
#[cfg(not(feature = "kube"))]
async fn open_kubernetes(
    _config: &super::config::KubernetesRegistryConfig,
) -> Result<OpenedRegistry, CloudError> {
    Err(CloudError::KubeNotBuilt)
}

/// Starts the Kubernetes backend on `client` as `config` says, as replica `identity`.
#[cfg(feature = "kube")]
fn kubernetes_registry(
    client: kube::Client,
    config: &KubernetesRegistryConfig,
    identity: String,
) -> KubeRegistry {
    let mut backend = KubeRegistryConfig::new(&identity);
    backend.namespace = config.namespace.clone();
    backend.lease = config
        .leader_election
        .as_ref()
        .zip(config.lease_namespace())
        .map(|(election, namespace)| LeaseConfig {
            lease_duration: election.lease_duration(),
            renew_interval: election.renew_interval(),
            ..LeaseConfig::new(namespace, &election.lease_name, &identity)
        });
    KubeRegistry::start(client, backend)
}

impl CloudHandle {
    /// Where the tunnel listens (edges connect to `ws://` or `wss://` this address).
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.tunnel_addr
    }

    /// The embedded registry's API URL (what `edgetwin ctl` talks to); `None` with the
    /// Kubernetes registry (use kubectl).
    pub fn registry_url(&self) -> Option<&str> {
        self.registry_url.as_deref()
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

    /// Stops everything: the controller writes its pending status patches first, then the
    /// registry stops (a leading Kubernetes replica releases its Lease).
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a cloud task panicked");
            }
        }
        if let Some(registry_shutdown) = self.registry_shutdown {
            registry_shutdown.await;
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
    metric(
        "edgetwin_cloud_summaries_received_total",
        "counter",
        "Version summaries received from nodes (reconcile).",
        c(&controller.summaries_received),
    );
    metric(
        "edgetwin_cloud_reconcile_resent_total",
        "counter",
        "Devices resent because a node's summary showed them drifted or missing.",
        c(&controller.reconcile_resent),
    );
    metric(
        "edgetwin_cloud_reconcile_removed_total",
        "counter",
        "Devices a node's summary listed that it must not have (removal sent).",
        c(&controller.reconcile_removed),
    );
    match hub.outbox_depths().await {
        Ok(depths) => render_outbox_depths(&mut out, &depths),
        Err(error) => tracing::warn!(%error, "cannot read the outbox depths for /metrics"),
    }
    out
}

/// The per-node and total outbox depth gauges. Node names are Kubernetes node names (lowercase
/// letters, digits, `-` and `.`), so they need no escaping in a label.
fn render_outbox_depths(out: &mut String, depths: &[(String, usize)]) {
    out.push_str(
        "# HELP edgetwin_cloud_outbox_depth Messages queued for a node and not yet acknowledged.\n\
         # TYPE edgetwin_cloud_outbox_depth gauge\n",
    );
    for (node, depth) in depths {
        out.push_str(&format!(
            "edgetwin_cloud_outbox_depth{{node=\"{node}\"}} {depth}\n"
        ));
    }
    let total: usize = depths.iter().map(|(_, depth)| depth).sum();
    out.push_str(&format!(
        "# HELP edgetwin_cloud_outbox_depth_all_nodes Messages queued for all nodes.\n\
         # TYPE edgetwin_cloud_outbox_depth_all_nodes gauge\n\
         edgetwin_cloud_outbox_depth_all_nodes {total}\n"
    ));
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use std::time::Duration;

    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::cloud::config::LeaderElectionConfig;
    use crate::cloud::registry::embedded::testkit;
    use crate::cloud::registry::kubernetes::mock::mock_client;

    #[test]
    fn outbox_depths_are_rendered_per_node_and_in_all() {
        let mut out = String::new();
        render_outbox_depths(&mut out, &[("n1".into(), 3), ("n2".into(), 0)]);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"edgetwin_cloud_outbox_depth{node="n1"} 3"#,
                r#"edgetwin_cloud_outbox_depth{node="n2"} 0"#,
                "edgetwin_cloud_outbox_depth_all_nodes 3",
            ]
        );
        assert!(
            out.contains("# TYPE edgetwin_cloud_outbox_depth gauge\n"),
            "{out}"
        );
    }

    const DEVICES: &str = "/apis/devices.kubeedge.io/v1beta1/namespaces/plant-a/devices";
    const MODELS: &str = "/apis/devices.kubeedge.io/v1beta1/namespaces/plant-a/devicemodels";
    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/plant-a/leases";

    /// The config's namespace scopes the watches and places the Lease; its timing and our
    /// identity reach the Lease. (The backend's own behaviour is tested in its module.)
    #[tokio::test]
    async fn the_kubernetes_registry_is_built_as_the_config_says() {
        let (client, mut api) = mock_client();
        let config = KubernetesRegistryConfig {
            namespace: Some("plant-a".to_owned()),
            leader_election: Some(LeaderElectionConfig {
                lease_duration_secs: 30,
                ..LeaderElectionConfig::default()
            }),
        };
        let registry = kubernetes_registry(client, &config, "cloud-0".to_owned());
        let mut leader = registry.leader();
        let mut device = serde_json::to_value(testkit::device()).expect("JSON");
        device["metadata"]["namespace"] = json!("plant-a");
        device["metadata"]["resourceVersion"] = json!("7");
        let list = |kind: &str, items| {
            json!({"apiVersion": "devices.kubeedge.io/v1beta1", "kind": kind,
                   "metadata": {"resourceVersion": "7"}, "items": items})
        };
        let mut feeds = Vec::new();
        let mut lease_created = false;
        // Two lists, two watches, the Lease read and its creation, in any order.
        for _ in 0..6 {
            let exchange = api.next().await;
            let path = exchange.path.clone();
            match (&exchange.method, path.as_str()) {
                (&Method::GET, p) if p == format!("{DEVICES}?&limit=500") => {
                    exchange.reply(200, list("DeviceList", vec![device.clone()]));
                }
                (&Method::GET, p) if p == format!("{MODELS}?&limit=500") => {
                    exchange.reply(200, list("DeviceModelList", vec![]));
                }
                (&Method::GET, p) if p.contains("watch=true") => {
                    assert!(p.starts_with(DEVICES) || p.starts_with(MODELS), "{p}");
                    feeds.push(exchange.stream());
                }
                (&Method::GET, p) if p == format!("{LEASES}/edgetwin-cloud") => {
                    exchange.reply_status(404, "NotFound");
                }
                (&Method::POST, p) if p == format!("{LEASES}?") => {
                    let body = exchange.body().clone();
                    assert_eq!(body["metadata"]["name"], "edgetwin-cloud");
                    assert_eq!(body["spec"]["holderIdentity"], "cloud-0");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 30);
                    exchange.reply(201, body);
                    lease_created = true;
                }
                (method, other) => panic!("unexpected request {method} {other}"),
            }
        }
        assert!(lease_created);
        assert_eq!(feeds.len(), 2, "one watch per kind");
        let devices = tokio::time::timeout(Duration::from_secs(10), registry.list_devices(None))
            .await
            .expect("synced in time")
            .expect("listed");
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].metadata.namespace.as_deref(), Some("plant-a"));
        tokio::time::timeout(Duration::from_secs(10), leader.wait_for(|leads| *leads))
            .await
            .expect("leader in time")
            .expect("published");
        // Dropping the API server fails the Lease release; the registry shuts down regardless.
        drop(api);
        drop(feeds);
        tokio::time::timeout(Duration::from_secs(10), registry.shutdown())
            .await
            .expect("stopped in time");
    }
}
