//! The edge agent: wires the store, the twin service, the broker (embedded or external), the bus
//! and the HTTP endpoint, and shuts them down in order.
//!
//! Start order: store (migrated) → state loaded → devices file parsed → embedded broker → bus →
//! service task → devices file applied → HTTP endpoint. The agent serves every twin from the store
//! as soon as the bus is subscribed; no cloud is needed (offline autonomy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::bus::{Bus, BusError, BusEvents, Connection, Endpoint};
use super::config::{BrokerMode, ConfigError, EdgeConfig};
use super::http::{self, Readiness};
use super::hub_link::HubLink;
use super::inbound::subscriptions;
use super::metrics::Metrics;
use super::service::{
    Membership, MembershipOutcome, ServiceError, ServiceHandle, ServiceOptions, TwinService,
};
use crate::edge::store::{Store, StoreError};
use crate::tunnel::StreamId;
use edgetwin_model::devices::load::{LoadError, Manifest};
use edgetwin_model::wire::topic::TopicLevel;

/// The `meta` key holding the node a data dir belongs to.
const NODE_META_KEY: &str = "node";
/// The `meta` key holding the tunnel stream id of this store's outbox.
const STREAM_META_KEY: &str = "tunnel_stream";
/// How long shutdown waits for the bus to say goodbye to the broker.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir cannot be created.
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data dir belongs to another node.
    #[error(
        "the data dir {path} belongs to node {found:?}, not {configured:?}; use another dataDir"
    )]
    OtherNode {
        /// The data dir.
        path: PathBuf,
        /// The node recorded in it.
        found: String,
        /// The configured node.
        configured: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The devices file does not load.
    #[error(transparent)]
    Devices(#[from] LoadError),
    /// The embedded broker did not start.
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] super::broker::BrokerError),
    /// This build has no embedded broker.
    #[error(
        "this edgetwin was built without the embedded broker: set broker.external in the configuration"
    )]
    NoEmbeddedBroker,
    /// The bus could not be set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The cloud link did not start.
    #[error("cloud link: {0}")]
    Cloud(#[from] super::hub_link::HubLinkError),
    /// The HTTP endpoint cannot listen.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    service: ServiceHandle,
    bus: Bus,
    service_task: JoinHandle<()>,
    bus_task: JoinHandle<()>,
    http_task: Option<JoinHandle<()>>,
    http_addr: Option<SocketAddr>,
    broker: Endpoint,
    metrics: Arc<Metrics>,
    devices_outcome: Option<MembershipOutcome>,
    cloud: Option<HubLink>,
}

/// Starts the agent. `devices_file`, when given, is loaded as the node's complete device list, as
/// if the cloud had sent it.
pub async fn start(
    config: EdgeConfig,
    devices_file: Option<&Path>,
) -> Result<AgentHandle, AgentError> {
    config.validate("configuration")?;
    let node = TopicLevel::new(config.node_name.clone()).map_err(|e| ConfigError::Invalid {
        source_name: "configuration".into(),
        field: "nodeName",
        reason: e.to_string(),
    })?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let mut store = Store::open(&config.store_path(), config.store_options())?;
    claim_data_dir(&mut store, &config)?;
    let stream = tunnel_stream(&mut store)?;
    let metrics = Arc::new(Metrics::new());
    let options = ServiceOptions {
        node: node.clone(),
        qos: if config.broker.qos == 0 {
            rumqttc::QoS::AtMostOnce
        } else {
            rumqttc::QoS::AtLeastOnce
        },
        max_payload_bytes: config.limits.max_payload_bytes,
        max_value_bytes: config.limits.max_value_bytes,
        batch_max: config.store.batch_max,
    };
    let service = TwinService::load(store, options, metrics.clone())?;
    let membership = devices_file.map(read_devices_file).transpose()?;

    let (bus, events, bus_task, endpoint) = start_bus(&config, &node)?;
    let (service, service_task) = service.spawn(bus.clone(), events);
    let devices_outcome = match membership {
        Some(membership) => Some(service.apply_membership(membership).await?),
        None => None,
    };

    let cloud = match &config.cloud.url {
        Some(url) => Some(HubLink::start(
            &config.cloud,
            url,
            &config.node_name,
            stream,
            service.clone(),
        )?),
        None => None,
    };

    let (http_task, http_addr) = match config.http.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Http { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| AgentError::Http { addr, source })?;
            let task = tokio::spawn(http::serve(
                listener,
                metrics.clone(),
                readiness(&bus, &service),
            ));
            tracing::info!(addr = %local, "health and metrics on http://{local}/metrics");
            (Some(task), Some(local))
        }
        None => (None, None),
    };
    tracing::info!(node = %node, broker = %format_args!("{}:{}", endpoint.host, endpoint.port), "edge agent started");
    Ok(AgentHandle {
        service,
        bus,
        service_task,
        bus_task,
        http_task,
        http_addr,
        broker: endpoint,
        metrics,
        devices_outcome,
        cloud,
    })
}

impl AgentHandle {
    /// The cloud link, when `cloud.url` is configured.
    pub fn cloud(&self) -> Option<&HubLink> {
        self.cloud.as_ref()
    }

    /// The twin service API (for the cloud tunnel, tools and tests).
    pub fn service(&self) -> &ServiceHandle {
        &self.service
    }

    /// The broker the agent uses (for the embedded broker: where it listens).
    pub fn broker(&self) -> &Endpoint {
        &self.broker
    }

    /// Where the HTTP endpoint listens, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What loading the devices file did, when one was given.
    pub fn devices_outcome(&self) -> Option<&MembershipOutcome> {
        self.devices_outcome.as_ref()
    }

    /// Waits until the agent is connected and subscribed to the broker.
    pub async fn connected(&self) {
        let mut connection = self.bus.watch_connection();
        let _ = connection.wait_for(|c| *c == Connection::Up).await;
    }

    /// Stops the agent: the service finishes its batch, the bus disconnects, the HTTP endpoint
    /// closes. Unacknowledged messages are redelivered by the broker on the next start. (The
    /// embedded broker cannot be stopped in-process; it ends with the process.)
    pub async fn shutdown(self) {
        if let Some(cloud) = self.cloud {
            cloud.shutdown().await;
        }
        self.service.shutdown().await;
        let _ = self.service_task.await;
        if self.bus.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, self.bus_task).await;
        }
        if let Some(task) = self.http_task {
            task.abort();
        }
        tracing::info!("edge agent stopped");
    }
}

/// The tunnel stream id of the store's outbox: created with the store, so a new store (a new
/// outbox whose sequence numbers start again) is never taken for the old one by the cloud.
fn tunnel_stream(store: &mut Store) -> Result<StreamId, AgentError> {
    if let Some(id) = store
        .meta(STREAM_META_KEY)?
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Ok(StreamId(id));
    }
    let id = rand::random::<u64>() >> 1;
    store.write(|w| w.set_meta(STREAM_META_KEY, &id.to_string()))?;
    Ok(StreamId(id))
}

/// Records the node in a new data dir; refuses a data dir of another node.
fn claim_data_dir(store: &mut Store, config: &EdgeConfig) -> Result<(), AgentError> {
    match store.meta(NODE_META_KEY)? {
        Some(found) if found != config.node_name => Err(AgentError::OtherNode {
            path: config.data_dir.clone(),
            found,
            configured: config.node_name.clone(),
        }),
        Some(_) => Ok(()),
        None => Ok(store.write(|w| w.set_meta(NODE_META_KEY, &config.node_name))?),
    }
}

/// Starts the embedded broker when configured, and the bus to the broker: a local link to the
/// embedded one, an MQTT client to an external one. Also returns where the broker listens.
fn start_bus(
    config: &EdgeConfig,
    node: &TopicLevel,
) -> Result<(Bus, BusEvents, JoinHandle<()>, Endpoint), AgentError> {
    let mode = config
        .broker_mode()
        .map_err(|reason| ConfigError::Invalid {
            source_name: "configuration".into(),
            field: "broker.external",
            reason,
        })?;
    match mode {
        BrokerMode::External(endpoint) => {
            let (bus, events, task) =
                Bus::start(config.bus_options(endpoint.clone(), subscriptions(node)))?;
            Ok((bus, events, task, endpoint))
        }
        #[cfg(feature = "embedded-broker")]
        BrokerMode::Embedded(listen) => {
            let broker =
                super::broker::EmbeddedBroker::start(listen, config.broker.max_packet_bytes)?;
            let endpoint = Endpoint {
                host: broker.addr().ip().to_string(),
                port: broker.addr().port(),
                tls: None,
            };
            let options = config.bus_options(endpoint.clone(), subscriptions(node));
            let (bus, events, task) = Bus::start_embedded(&broker, options);
            Ok((bus, events, task, endpoint))
        }
        #[cfg(not(feature = "embedded-broker"))]
        BrokerMode::Embedded(_) => Err(AgentError::NoEmbeddedBroker),
    }
}

/// The node's device list from a YAML file of Devices and DeviceModels, or from every `.yaml` /
/// `.yml` file directly in a directory (not its subdirectories).
pub fn read_devices_file(path: &Path) -> Result<Membership, LoadError> {
    let mut membership = Membership {
        complete: true,
        ..Membership::default()
    };
    let documents = crate::manifests::from_path(path)?;
    for document in documents {
        match document.manifest {
            Manifest::Device(device) => membership.devices.push(device),
            Manifest::DeviceModel(model) => membership.models.push(model),
        }
    }
    Ok(membership)
}

fn readiness(bus: &Bus, service: &ServiceHandle) -> Arc<dyn Readiness> {
    let connection = bus.watch_connection();
    let service = service.clone();
    Arc::new(move || {
        if service.is_stopped() {
            return Err("the twin service has stopped".to_owned());
        }
        match *connection.borrow() {
            Connection::Up => Ok(()),
            Connection::Down => Err("not connected to the MQTT broker".to_owned()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::read_devices_file;

    #[test]
    fn the_test_kits_sensor_fleet_loads_as_one_model_and_its_devices() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fleet.yaml");
        let yaml = edgetwin_testkit::fleet::sensor_fleet_yaml("n1", 3, 2);
        std::fs::write(&path, yaml).expect("write");
        let membership = read_devices_file(&path).expect("loads");
        assert_eq!((membership.models.len(), membership.devices.len()), (1, 3));
    }

    const MODEL: &str = "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata:\n  name: lamp\n  namespace: default\nspec:\n  protocol: gpio\n  properties:\n    - name: on\n      type: BOOLEAN\n      accessMode: ReadWrite\n";
    const DEVICE: &str = "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata:\n  name: lamp-1\n  namespace: default\nspec:\n  deviceModelRef:\n    name: lamp\n  nodeName: n1\n  protocol:\n    protocolName: gpio\n";

    #[test]
    fn a_devices_directory_reads_its_yaml_files_but_not_subdirectories() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("model.yaml"), MODEL).expect("write");
        std::fs::write(dir.path().join("device.yml"), DEVICE).expect("write");
        std::fs::write(dir.path().join("README.md"), "not yaml").expect("write");
        std::fs::create_dir(dir.path().join("systemd")).expect("mkdir");
        std::fs::write(dir.path().join("systemd/edge.yaml"), "nodeName: n1\n").expect("write");

        let membership = read_devices_file(dir.path()).expect("the directory loads");
        assert_eq!(membership.models.len(), 1);
        assert_eq!(membership.devices.len(), 1);
        assert!(membership.complete);

        let single = read_devices_file(&dir.path().join("device.yml")).expect("a file loads");
        assert_eq!((single.models.len(), single.devices.len()), (0, 1));
    }
}
