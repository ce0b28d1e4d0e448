//! Shared helpers of the edge agent's integration tests: an agent on a temp data dir with the
//! embedded rumqttd or a mosquitto child process, and MQTT helpers.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::path::PathBuf;

use edgetwin_core::edge::agent::{self, AgentHandle};
use edgetwin_core::edge::config::{EdgeConfig, EmbeddedBrokerConfig, ExternalBrokerConfig};
use edgetwin_core::edge::store::{DeviceKey, Store};
use edgetwin_testkit::{BrokerKind, TestBroker, TestClient};
use serde_json::Value;

/// The node of the fixtures.
pub const NODE: &str = "edge-node1";
/// The traffic light's id in the `{namespace}/{name}` form.
pub const LIGHT: &str = "default/traffic-light-instance-01";
/// The traffic light's id in the `{name}` form.
pub const LIGHT_NAME: &str = "traffic-light-instance-01";

/// The traffic light's key.
pub fn light() -> DeviceKey {
    DeviceKey::new("default", "traffic-light-instance-01")
}

/// A file of the repo's own fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `$hw/events/device/{id}/{event}`.
pub fn device_topic(id: &str, event: &str) -> String {
    format!("$hw/events/device/{id}/{event}")
}

/// `$hw/events/node/edge-node1/{event}`.
pub fn node_topic(event: &str) -> String {
    format!("$hw/events/node/{NODE}/{event}")
}

/// An agent under test.
pub struct Edge {
    /// The running agent.
    pub agent: AgentHandle,
    /// The broker kind.
    pub kind: BrokerKind,
    /// The data dir.
    pub dir: tempfile::TempDir,
    mosquitto: Option<TestBroker>,
    clients: usize,
}

impl Edge {
    /// An agent with the traffic light (from the devices file) on a broker of `kind`.
    pub async fn start(kind: BrokerKind) -> Edge {
        Edge::start_with(kind, true, |_| {}).await
    }

    /// An agent; `devices` loads the traffic-light file; `tweak` adjusts the configuration.
    pub async fn start_with(
        kind: BrokerKind,
        devices: bool,
        tweak: impl FnOnce(&mut EdgeConfig),
    ) -> Edge {
        let dir = tempfile::tempdir().expect("temp dir");
        let mosquitto = match kind {
            BrokerKind::Embedded => None,
            BrokerKind::Mosquitto => Some(TestBroker::start(kind).expect("mosquitto starts")),
        };
        let devices_file = devices.then(|| fixture("edge-traffic-light.yaml"));
        Edge::launch(kind, dir, mosquitto, devices_file, tweak, 0).await
    }

    /// An agent whose devices come from `devices_file` (which must outlive the start).
    pub async fn start_with_devices(kind: BrokerKind, devices_file: PathBuf) -> Edge {
        let dir = tempfile::tempdir().expect("temp dir");
        let mosquitto = match kind {
            BrokerKind::Embedded => None,
            BrokerKind::Mosquitto => Some(TestBroker::start(kind).expect("mosquitto starts")),
        };
        Edge::launch(kind, dir, mosquitto, Some(devices_file), |_| {}, 0).await
    }

    /// Stops the agent and starts it again on the same data dir and broker with the default
    /// configuration and without a devices file (everything comes from the store).
    pub async fn restart(self) -> Edge {
        self.agent.shutdown().await;
        Edge::launch(
            self.kind,
            self.dir,
            self.mosquitto,
            None,
            |_| {},
            self.clients,
        )
        .await
    }

    async fn launch(
        kind: BrokerKind,
        dir: tempfile::TempDir,
        mosquitto: Option<TestBroker>,
        devices_file: Option<PathBuf>,
        tweak: impl FnOnce(&mut EdgeConfig),
        clients: usize,
    ) -> Edge {
        let mut config = config(kind, dir.path().to_owned(), mosquitto.as_ref());
        tweak(&mut config);
        let agent = agent::start(config, devices_file.as_deref())
            .await
            .expect("agent starts");
        agent.connected().await;
        Edge {
            agent,
            kind,
            dir,
            mosquitto,
            clients,
        }
    }

    /// Where the broker listens.
    pub fn broker_addr(&self) -> SocketAddr {
        let endpoint = self.agent.broker();
        format!("{}:{}", endpoint.host, endpoint.port)
            .parse()
            .expect("the broker host is an IP address")
    }

    /// A client subscribed to every KubeEdge and edgetwin topic.
    pub async fn client(&mut self) -> TestClient {
        self.clients += 1;
        let mut client = TestClient::connect(self.broker_addr(), &format!("test-{}", self.clients))
            .await
            .expect("client connects");
        client.subscribe("$hw/#").await.expect("subscribes");
        client.subscribe("edgetwin/#").await.expect("subscribes");
        client
    }

    /// The store, opened read-only next to the running agent.
    pub fn store(&self) -> Store {
        Store::open_read_only(&self.dir.path().join("edge.db")).expect("store opens")
    }
}

/// The agent's configuration for a broker of `kind`.
fn config(kind: BrokerKind, data_dir: PathBuf, mosquitto: Option<&TestBroker>) -> EdgeConfig {
    let mut config = EdgeConfig {
        node_name: NODE.into(),
        data_dir,
        ..EdgeConfig::default()
    };
    config.http.listen = Some("127.0.0.1:0".parse().expect("address"));
    config.broker.reconnect_min_ms = 20;
    config.broker.reconnect_max_ms = 200;
    match (kind, mosquitto) {
        (BrokerKind::Mosquitto, Some(broker)) => {
            config.broker.external = Some(ExternalBrokerConfig {
                url: format!("mqtt://127.0.0.1:{}", broker.port()),
                username: None,
                password: None,
                tls: None,
            });
        }
        _ => {
            config.broker.embedded = Some(EmbeddedBrokerConfig {
                listen: "127.0.0.1:0".parse().expect("address"),
            });
        }
    }
    config
}

/// Publishes `payload` on `topic` and returns the JSON answer on `reply`.
pub async fn request(client: &mut TestClient, topic: &str, payload: &str, reply: &str) -> Value {
    client.publish(topic, payload).await.expect("publishes");
    client.recv_on(reply).await.expect("an answer").json()
}

/// Asks the agent for `device`'s whole twin (`twin/get`, event id `g`) and returns the answer.
pub async fn twin_get(client: &mut TestClient, device: &str) -> Value {
    request(
        client,
        &device_topic(device, "twin/get"),
        r#"{"event_id":"g"}"#,
        &device_topic(device, "twin/get/result"),
    )
    .await
}

/// `value` without the keys that change per run (`event_id`, `timestamp`) at any depth.
pub fn without_volatile(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != "event_id" && key.as_str() != "timestamp")
                .map(|(key, value)| (key.clone(), without_volatile(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_volatile).collect()),
        other => other.clone(),
    }
}

/// Generates one test per broker kind from an async function taking the kind.
#[macro_export]
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(edgetwin_testkit::BrokerKind::Embedded).await
                }
            )*
        }
        mod mosquitto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let kind = edgetwin_testkit::BrokerKind::Mosquitto;
                    if edgetwin_testkit::broker::available(kind, stringify!($name)) {
                        super::$name(kind).await
                    }
                }
            )*
        }
    };
}
