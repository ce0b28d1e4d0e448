//! An SDK mapper end to end with the real edge agent (`edgetwin_core::edge::agent` with its
//! embedded broker and sqlite store), not the SDK testkit's edge: the agent serves a device from its devices file and
//! publishes its spec retained; a mapper over the simulated driver finds it there, asks for its
//! twin, writes the desired value, reports, publishes its state, follows a cloud change of the
//! desired value with exactly one write, and says `offline` when it stops.

use std::path::Path;
use std::time::Duration;

use edgetwin_core::edge::access::secrets::default_credentials_file;
use edgetwin_core::edge::agent::{self, AgentHandle};
use edgetwin_core::edge::config::{BusClientConfig, EdgeConfig, EmbeddedBrokerConfig};
use edgetwin_core::edge::store::DeviceKey;
use edgetwin_model::wire::payload::DeviceTwinUpdate;
use edgetwin_model::wire::spec_auth::BusCredentials;
use edgetwin_sdk::testkit::SimDriver;
use edgetwin_sdk::{Mapper, MapperHandle, Value};
use edgetwin_testkit::raw_mqtt::RawPublish;
use serde_json::json;

const NODE: &str = "e2e-node";
const DEVICE: &str = "default/meter";
const WAIT: Duration = Duration::from_secs(20);

/// A simulated meter on `NODE` whose `level` starts at 5 and is desired at 7.
const DEVICES: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: sim-meter
  namespace: default
spec:
  protocol: sim
  properties:
    - name: level
      type: INT
      accessMode: ReadWrite
    - name: count
      type: INT
      accessMode: ReadOnly
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: meter
  namespace: default
spec:
  deviceModelRef:
    name: sim-meter
  nodeName: e2e-node
  protocol:
    protocolName: sim
  properties:
    - name: level
      collectCycle: 100
      reportCycle: 100
      desired:
        value: "7"
      visitors:
        protocolName: sim
        configData:
          register: level
          initial: 5
    - name: count
      collectCycle: 100
      reportCycle: 100
      visitors:
        protocolName: sim
        configData:
          register: count
          step: 1
"#;

fn key() -> DeviceKey {
    DeviceKey::new("default", "meter")
}

async fn start_agent(dir: &Path) -> AgentHandle {
    let devices = dir.join("devices.yaml");
    std::fs::write(&devices, DEVICES).expect("devices file written");
    let mut config = EdgeConfig {
        node_name: NODE.into(),
        data_dir: dir.join("data"),
        ..EdgeConfig::default()
    };
    config.http.listen = Some("127.0.0.1:0".parse().expect("address"));
    config.broker.embedded = Some(EmbeddedBrokerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
    });
    config.bus.clients.push(BusClientConfig {
        name: "sim".into(),
        protocols: vec!["sim".into()],
        ..BusClientConfig::default()
    });
    let agent = agent::start(config, Some(&devices))
        .await
        .expect("the agent starts");
    agent.connected().await;
    agent
}

/// The bus credentials the agent started by [`start_agent`] in `dir` wrote for the mapper.
fn mapper_credentials(dir: &Path) -> BusCredentials {
    let credentials = default_credentials_file(&dir.join("data"), "sim");
    let credentials = std::fs::read_to_string(credentials).expect("the mapper's credentials");
    BusCredentials::from_json(&credentials).expect("a credentials file")
}

fn start_mapper(agent: &AgentHandle, dir: &Path, sim: &SimDriver) -> MapperHandle {
    let broker = agent.broker();
    let credentials = mapper_credentials(dir);
    Mapper::builder()
        .driver(sim.clone())
        .node(NODE)
        .broker(format!("{}:{}", broker.host, broker.port))
        .options(|o| {
            o.backoff_initial = Duration::from_millis(50);
            o.backoff_max = Duration::from_millis(300);
            o.credentials = Some(credentials);
        })
        .build()
        .expect("valid mapper settings")
        .spawn()
}

/// Polls `check` every 20 ms until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, check: impl Fn() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reported(agent: &AgentHandle, property: &str) -> Option<String> {
    let twin = agent
        .service()
        .twin(key())
        .await
        .expect("the agent answers")?;
    twin.properties
        .get(property)?
        .reported
        .as_ref()
        .map(|half| half.value.clone())
}

async fn state(agent: &AgentHandle) -> Option<String> {
    let (state, _) = agent
        .service()
        .device_state(key())
        .await
        .expect("the agent answers")?;
    state
}

fn written(sim: &SimDriver) -> Vec<Value> {
    sim.writes(DEVICE).into_iter().map(|w| w.value).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_serves_a_device_of_the_real_edge_agent() {
    edgetwin_sdk::cli::init_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = start_agent(dir.path()).await;
    let sim = SimDriver::new();
    let mapper = start_mapper(&agent, dir.path(), &sim);

    // The spec came from the agent's retained topic; twin/get gave the desired 7: written once,
    // read back and reported; the device is online at the agent; `count` is collected too.
    eventually("level reported as 7 at the agent", || async {
        (reported(&agent, "level").await.as_deref() == Some("7")).then_some(())
    })
    .await;
    assert_eq!(written(&sim), vec![Value::Int(7)]);
    eventually("the device online at the agent", || async {
        (state(&agent).await.as_deref() == Some("online")).then_some(())
    })
    .await;
    eventually("count reported", || async {
        reported(&agent, "count").await
    })
    .await;

    // The cloud changes the desired value: the agent's delta makes the mapper write it once,
    // in the same session, and report it.
    let update: DeviceTwinUpdate = serde_json::from_value(json!({
        "event_id": "e2e-1",
        "timestamp": 0,
        "twin": {"level": {
            "expected": {"value": "9", "metadata": {"timestamp": 0}},
            "optional": false,
            "metadata": {"type": "int"},
            "expected_version": {"cloud": 1_000_000, "edge": 0}
        }}
    }))
    .expect("a cloud update");
    let outcome = agent
        .service()
        .apply_cloud_update(key(), update)
        .await
        .expect("applies");
    assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
    eventually("level reported as 9 at the agent", || async {
        (reported(&agent, "level").await.as_deref() == Some("9")).then_some(())
    })
    .await;
    assert_eq!(written(&sim), vec![Value::Int(7), Value::Int(9)]);
    assert_eq!(sim.connects(DEVICE), 1, "a desired change never reconnects");

    // Graceful stop: the agent learns the device is offline.
    mapper.shutdown().await.expect("the mapper stops cleanly");
    eventually("the device offline at the agent", || async {
        (state(&agent).await.as_deref() == Some("offline")).then_some(())
    })
    .await;
    agent.shutdown().await;
}

/// A retained message of any size a client can publish never knocks a mapper offline: the
/// broker refuses what is over the packet limit every client of ours reads, and takes one at the
/// limit on the mapper's spec topic (acknowledged, as mosquitto does) without forwarding it (only
/// the agent publishes specs); the mapper keeps its one connection and serves its device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_retained_message_never_knocks_a_mapper_offline() {
    edgetwin_sdk::cli::init_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = start_agent(dir.path()).await;
    let broker = agent.broker();
    let addr: std::net::SocketAddr = format!("{}:{}", broker.host, broker.port)
        .parse()
        .expect("a socket address");

    // 1.5 MB on a topic the mapper subscribes to: over the packet limit, refused.
    let junk_topic = |name: &str| format!("edgetwin/v1/node/{NODE}/device/default/{name}/spec");
    let huge = vec![b'x'; 1_500_000];
    let login = mapper_credentials(dir.path());
    let login = (login.username.as_str(), login.password.as_str());
    let retained = |topic, payload| RawPublish {
        client_id: "sim-raw-retainer",
        login: Some(login),
        topic,
        payload,
        retained_qos1: true,
    };
    let junk = junk_topic("junk");
    assert!(
        !retained(&junk, &huge).send(addr, WAIT).await,
        "the broker refuses a packet over its limit"
    );
    // The largest packet the broker takes: acknowledged, refused by the bus policy.
    let topic = junk_topic("largest");
    let largest = edgetwin_model::limits::MAX_PACKET_BYTES - 2 - topic.len() - 2;
    assert!(
        retained(&topic, &vec![b'x'; largest])
            .send(addr, WAIT)
            .await,
        "the broker takes a packet at its limit"
    );

    let sim = SimDriver::new();
    let mapper = start_mapper(&agent, dir.path(), &sim);
    eventually("level reported as 7 at the agent", || async {
        (reported(&agent, "level").await.as_deref() == Some("7")).then_some(())
    })
    .await;
    assert_eq!(written(&sim), vec![Value::Int(7)]);
    // Let a reconnect loop show itself, if there is one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        mapper.metrics().mqtt_connects.get(),
        1,
        "the mapper kept its one connection"
    );
    assert_eq!(sim.connects(DEVICE), 1);

    mapper.shutdown().await.expect("the mapper stops cleanly");
    agent.shutdown().await;
}

/// A property the device refuses to read becomes, in the cloud's registry, a `ReadFailed`
/// condition with the driver's reason and a Warning event; the next good read removes it. The
/// whole path: SDK mapper → agent (`read_error` in `twin/update`) → outbox → tunnel → device
/// controller → embedded registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_failure_reaches_the_registry_as_a_condition_and_an_event() {
    use edgetwin_core::cloud::config::{CloudConfig, RegistryConfig};
    use edgetwin_core::cloud::registry::Kind;
    use edgetwin_core::cloud::registry::embedded::client::RegistryClient;
    use edgetwin_core::cloud::registry::embedded::data_dir::DataDir;
    use edgetwin_core::cloud::server::Cloud;
    use edgetwin_core::tunnel::auth::TokenStore;
    use edgetwin_core::tunnel::node::NodeName;
    use edgetwin_model::devices::{Manifest, load};

    edgetwin_sdk::cli::init_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let loopback = "127.0.0.1:0".parse().expect("address");
    let cloud_config = CloudConfig {
        listen: loopback,
        tls: None,
        insecure: true,
        insecure_on_network: false,
        data_dir: dir.path().join("cloud"),
        registry: RegistryConfig::Embedded {
            api_listen: loopback,
        },
        status_interval_ms: 20,
        metrics_listen: None,
    };
    std::fs::create_dir_all(&cloud_config.data_dir).expect("cloud dir");
    let node_token = TokenStore::open(&cloud_config.cloud_db())
        .and_then(|tokens| tokens.create(&NodeName::new(NODE).expect("node name")))
        .expect("node token");
    let cloud = Cloud::start(cloud_config.clone())
        .await
        .expect("the cloud starts");
    let api_token = DataDir::new(&cloud_config.data_dir)
        .load_or_create_token()
        .expect("API token");
    let registry = RegistryClient::new(cloud.registry_url().expect("embedded API"), &api_token)
        .expect("registry client");
    for document in load::from_str(DEVICES, "devices").expect("YAML") {
        match &document.manifest {
            Manifest::Device(d) => registry
                .apply::<_, serde_json::Value>(Kind::Device, d.namespace(), d.name(), d)
                .await
                .map(drop),
            Manifest::DeviceModel(m) => registry
                .apply::<_, serde_json::Value>(Kind::DeviceModel, m.namespace(), m.name(), m)
                .await
                .map(drop),
        }
        .expect("applied");
    }

    let mut config = EdgeConfig {
        node_name: NODE.into(),
        data_dir: dir.path().join("data"),
        ..EdgeConfig::default()
    };
    config.http.listen = None;
    config.broker.embedded = Some(EmbeddedBrokerConfig { listen: loopback });
    config.bus.clients.push(BusClientConfig {
        name: "sim".into(),
        protocols: vec!["sim".into()],
        ..BusClientConfig::default()
    });
    config.cloud.url = Some(format!("ws://{}", cloud.tunnel_addr()));
    config.cloud.insecure = true;
    config.cloud.token = Some(node_token.expose().to_owned());
    let agent = agent::start(config, None).await.expect("the agent starts");
    agent.connected().await;
    let sim = SimDriver::new();
    sim.refuse_reads(DEVICE, "count", Some("ERR unknown"));
    let mapper = start_mapper(&agent, dir.path(), &sim);

    let count_condition = || async {
        let device: serde_json::Value = registry
            .get(Kind::Device, "default", "meter")
            .await
            .expect("the device");
        let twins = device["status"]["twins"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        twins
            .into_iter()
            .find(|t| t["propertyName"] == "count")
            .map(|t| t["condition"].clone())
    };
    let condition = eventually("count ReadFailed in the registry", || async {
        count_condition()
            .await
            .filter(|c| c["type"] == "ReadFailed")
    })
    .await;
    assert_eq!(
        condition["message"], "rejected by the device: ERR unknown",
        "{condition}"
    );
    assert_eq!(condition["reason"], "ReadFailed", "{condition}");
    let events = registry
        .device_events("default", "meter")
        .await
        .expect("events");
    assert!(
        events.items.iter().any(|e| e.kind == "Warning"
            && e.reason == "ReadFailed"
            && e.message == "property count: rejected by the device: ERR unknown"),
        "{:?}",
        events.items
    );

    // Readable again: the condition is gone (a ReadOnly property has no actuation state).
    sim.refuse_reads(DEVICE, "count", None);
    eventually("count readable again in the registry", || async {
        count_condition().await.filter(|c| c.is_null())
    })
    .await;

    mapper.shutdown().await.expect("the mapper stops cleanly");
    agent.shutdown().await;
    cloud.shutdown().await;
}
