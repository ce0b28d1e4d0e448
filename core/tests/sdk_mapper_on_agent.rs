//! An SDK mapper end to end with the real edge agent (`edgetwin_core::edge::agent` with its
//! embedded broker and sqlite store), not the SDK testkit's edge: the agent serves a device from its devices file and
//! publishes its spec retained; a mapper over the simulated driver finds it there, asks for its
//! twin, writes the desired value, reports, publishes its state, follows a cloud change of the
//! desired value with exactly one write, and says `offline` when it stops.

use std::path::Path;
use std::time::Duration;

use edgetwin_core::edge::agent::{self, AgentHandle};
use edgetwin_core::edge::config::{EdgeConfig, EmbeddedBrokerConfig};
use edgetwin_core::edge::store::DeviceKey;
use edgetwin_model::wire::payload::DeviceTwinUpdate;
use edgetwin_sdk::testkit::SimDriver;
use edgetwin_sdk::{Mapper, MapperHandle, Value};
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
    let agent = agent::start(config, Some(&devices))
        .await
        .expect("the agent starts");
    agent.connected().await;
    agent
}

fn start_mapper(agent: &AgentHandle, sim: &SimDriver) -> MapperHandle {
    let broker = agent.broker();
    Mapper::builder()
        .driver(sim.clone())
        .node(NODE)
        .broker(format!("{}:{}", broker.host, broker.port))
        .options(|o| {
            o.backoff_initial = Duration::from_millis(50);
            o.backoff_max = Duration::from_millis(300);
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
    let mapper = start_mapper(&agent, &sim);

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
