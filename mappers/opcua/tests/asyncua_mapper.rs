//! The mapper (SDK runtime + driver) against python asyncua, through a real MQTT broker and an
//! in-test edge: a monitored property pushed on change, a polled one, a node that does not exist
//! (that property's error only), a desired value written and verified, and a server restart
//! recovered from without restarting the mapper (reconnect with backoff, subscriptions
//! re-created).

mod support;

use std::time::{Duration, Instant, SystemTime};

use edgetwin_mapper_opcua::OpcUaDriver;
use edgetwin_sdk::Mapper;
use edgetwin_sdk::testkit::{TestBroker, TestEdge};
use support::{Peer, WAIT, asyncua_python};

const NODE: &str = "opcua-node";
const ID: &str = "default/press";

fn device_yaml(url: &str, ns: u16) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: press-model
  namespace: default
spec:
  protocol: opcua
  properties:
    - name: level
      type: INT
      accessMode: ReadOnly
    - name: speed
      type: INT
      accessMode: ReadOnly
    - name: missing
      type: INT
      accessMode: ReadOnly
    - name: setpoint
      type: DOUBLE
      accessMode: ReadWrite
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: press
  namespace: default
spec:
  deviceModelRef:
    name: press-model
  nodeName: {NODE}
  protocol:
    protocolName: opcua
    configData:
      url: {url}
      timeout: 2
      keepAliveIntervalMs: 500
  properties:
    - name: level
      collectCycle: 3600000
      reportCycle: 50
      visitors:
        protocolName: opcua
        configData:
          nodeID: ns={ns};s=Int32
          subscribe: {{samplingInterval: 50, publishingInterval: 100}}
    - name: speed
      collectCycle: 100
      reportCycle: 50
      visitors:
        protocolName: opcua
        configData: {{nodeID: "ns={ns};s=Int16"}}
    - name: missing
      collectCycle: 100
      reportCycle: 50
      visitors:
        protocolName: opcua
        configData: {{nodeID: "ns={ns};s=NoSuchNode"}}
    - name: setpoint
      collectCycle: 100
      reportCycle: 50
      visitors:
        protocolName: opcua
        configData: {{browsePath: "{ns}:Device/{ns}:Setpoint"}}
"#
    )
}

async fn reported(edge: &TestEdge, property: &str, value: &str) {
    edge.wait_reported(ID, property, value, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn pushes_polls_and_writes_survive_a_server_restart_without_the_missing_node() {
    let Some(python) = asyncua_python() else {
        return;
    };
    edgetwin_sdk::cli::init_logging();
    let certs = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("temp dir");
    let mut peer = Peer::asyncua(&python, 0, certs.path(), None).await;
    let port = peer.port();
    let broker = TestBroker::start().await.expect("test broker");
    let edge = TestEdge::start(&broker.addr(), NODE).await;
    let mapper = Mapper::builder()
        .driver(OpcUaDriver::new(data.path()))
        .node(NODE)
        .broker(broker.addr().to_string())
        .options(|o| {
            o.backoff_initial = Duration::from_millis(100);
            o.backoff_max = Duration::from_millis(500);
            o.health_interval = Duration::from_millis(200);
        })
        .build()
        .expect("valid mapper settings")
        .spawn();
    edge.publish_devices(&device_yaml(&peer.url, peer.ns))
        .expect("test YAML parses");
    edge.wait_state(ID, "online", WAIT).await.expect("online");
    reported(&edge, "level", "-32").await;
    reported(&edge, "speed", "-16").await;
    reported(&edge, "setpoint", "20").await;

    // A change on the server reaches the twin through the monitored item (the property is
    // polled once an hour), within one publishing interval plus the report path.
    let changed = SystemTime::now();
    let started = Instant::now();
    peer.set("Int32", "77").await;
    let seen = edge
        .wait_reported(ID, "level", "77", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let arrived = seen
        .reports
        .iter()
        .find(|r| r.values.get("level").map(String::as_str) == Some("77"))
        .map(|r| r.at)
        .expect("the report");
    println!(
        "server-side change → reported: {:?} (publishing interval 100 ms, report cycle 50 ms; \
         waited {:?})",
        arrived.duration_since(changed).unwrap_or_default(),
        started.elapsed()
    );

    // A desired value is converted to the node's Double, written, read back and reported.
    edge.set_desired(ID, "setpoint", "30.5");
    reported(&edge, "setpoint", "30.5").await;
    assert_eq!(peer.get("Setpoint").await, "30.5");

    // The node that does not exist never reported and never took the device down.
    let device = edge.device(ID);
    assert!(!device.reported.contains_key("missing"), "{device:?}");
    assert!(
        device
            .states
            .iter()
            .all(|s| s.state == "online" || s.reason.as_deref() == Some("connecting")),
        "{:?}",
        device.states
    );

    // The server dies and comes back on the same port: the mapper notices, reconnects with
    // backoff and subscribes again (the polled-once-an-hour property moves only if it does).
    peer.kill().await;
    edge.wait_state(ID, "offline", WAIT)
        .await
        .expect("offline while the server is down");
    let mut peer = Peer::asyncua(&python, port, certs.path(), None).await;
    edge.wait_for(ID, WAIT, "online again", |d| {
        d.states.last().is_some_and(|s| s.state == "online")
    })
    .await
    .expect("online again");
    peer.set("Int32", "88").await;
    reported(&edge, "level", "88").await;
    peer.set("Int16", "99").await;
    reported(&edge, "speed", "99").await;
    // The restarted server forgot the written setpoint; the desired value is written again.
    reported(&edge, "setpoint", "30.5").await;
    assert_eq!(peer.get("Setpoint").await, "30.5");

    mapper.shutdown().await.expect("clean shutdown");
    peer.kill().await;
}
