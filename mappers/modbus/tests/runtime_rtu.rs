//! The whole mapper runtime (SDK) with the Modbus driver, an in-process broker and a test edge,
//! against pymodbus as an RTU server on a socat pty pair: two devices share the line, unit 1
//! answers and unit 2 is a dead slave. The healthy device keeps reporting changes within one
//! cycle plus at most one timeout, the dead one is reported not online with a reason naming its
//! unit, and its circuit breaker keeps it off the line.

mod support;

use std::time::{Duration, Instant};

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_sdk::Mapper;
use edgetwin_sdk::model::devices::{Device, DeviceModel, Manifest, load};
use edgetwin_sdk::model::wire;
use edgetwin_sdk::model::wire::payload::DeviceSpecMessage;
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use support::{Peer, PtyPair, have_socat, pymodbus_python};

const NODE: &str = "rtu-node";
/// Collect and report cycle of both devices.
const CYCLE_MS: u64 = 200;
/// Per-request timeout of both devices.
const TIMEOUT_MS: u64 = 500;
/// How long any awaited outcome may take.
const WAIT: Duration = Duration::from_secs(20);

const MODEL: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: meter-model
  namespace: default
spec:
  protocol: modbus
  properties:
    - name: level
      type: INT
      accessMode: ReadOnly
    - name: pump
      type: BOOLEAN
      accessMode: ReadWrite
"#;

fn device_yaml(name: &str, port: &std::path::Path, unit: u8) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: {name}
  namespace: default
spec:
  deviceModelRef:
    name: meter-model
  nodeName: {NODE}
  protocol:
    protocolName: modbus
    configData:
      communicateMode: RTU
      serialPort: {port}
      baudRate: 38400
      slaveID: {unit}
      timeout: {TIMEOUT_MS}
  properties:
    - name: level
      collectCycle: {CYCLE_MS}
      reportCycle: {CYCLE_MS}
      visitors:
        protocolName: modbus
        configData: {{ register: HoldingRegister, offset: 0, dataType: int16 }}
    - name: pump
      collectCycle: {CYCLE_MS}
      reportCycle: {CYCLE_MS}
      visitors:
        protocolName: modbus
        configData: {{ register: CoilRegister, offset: 0 }}
"#,
        port = port.display()
    )
}

fn parse(yaml: &str) -> (Option<Device>, Option<DeviceModel>) {
    let mut device = None;
    let mut model = None;
    for document in load::from_str(yaml, "<test>").expect("valid YAML") {
        match document.manifest {
            Manifest::Device(d) => device = Some(d),
            Manifest::DeviceModel(m) => model = Some(m),
        }
    }
    (device, model)
}

fn spec_payload(device_yaml: &str) -> Vec<u8> {
    let (device, _) = parse(device_yaml);
    let (_, model) = parse(MODEL);
    wire::encode(&DeviceSpecMessage {
        device: device.expect("a Device"),
        model,
    })
    .expect("encodes")
}

#[tokio::test]
async fn process_a_dead_slave_is_not_online_and_does_not_hold_up_the_healthy_device() {
    let (Some(python), true) = (pymodbus_python(), have_socat()) else {
        return;
    };
    let pty = PtyPair::start().await;
    // pymodbus answers unit 1 only: unit 2 never answers.
    let mut plc = Peer::pymodbus_rtu(&python, &pty.a, 38_400, "1").await;
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let mapper = Mapper::builder()
        .driver(ModbusDriver::default())
        .node(NODE)
        .broker(broker.addr().to_string())
        .build()
        .expect("mapper settings")
        .spawn();
    edge.publish_spec(
        "default",
        "healthy",
        spec_payload(&device_yaml("healthy", &pty.b, 1)),
    );
    edge.publish_spec(
        "default",
        "dead",
        spec_payload(&device_yaml("dead", &pty.b, 2)),
    );

    edge.wait_reported("default/healthy", "level", "0", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dead = edge
        .wait_for("default/dead", WAIT, "a state other than online", |d| {
            d.states.last().is_some_and(|s| s.state != "online")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let state = dead.states.last().cloned().expect("a state");
    let reason = state.reason.unwrap_or_default();
    assert!(
        reason.contains("unit 2") && reason.contains("did not answer"),
        "state {}: {reason}",
        state.state
    );
    assert!(
        dead.reports.is_empty(),
        "the dead device reported {:?}",
        dead.reports
    );

    // Every change on unit 1 reaches the edge within a collect and a report cycle, plus at most
    // one timeout spent waiting behind the dead unit, plus generous slack for a loaded machine.
    let bound = Duration::from_millis(2 * CYCLE_MS + TIMEOUT_MS) + Duration::from_secs(2);
    plc.command("reset").await;
    let mut slowest = Duration::ZERO;
    for level in 1..=10u16 {
        plc.set(1, "holding", 0, &[level]).await;
        let set_at = Instant::now();
        edge.wait_reported("default/healthy", "level", &level.to_string(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        slowest = slowest.max(set_at.elapsed());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let stats = plc.command("stats").await;
    let dead_requests = stats["by_unit"]["2"].as_u64().unwrap_or(0);
    let healthy_requests = stats["by_unit"]["1"].as_u64().unwrap_or(0);
    println!(
        "slowest change to report: {slowest:?} (bound {bound:?}); requests: unit 1 {healthy_requests}, \
         dead unit 2 {dead_requests}"
    );
    assert!(slowest < bound, "a change took {slowest:?} to be reported");
    // The breaker keeps the dead unit off the line: far fewer requests than its cycles.
    assert!(
        dead_requests * 3 < healthy_requests,
        "dead unit got {dead_requests} requests, healthy {healthy_requests}"
    );
    // The healthy device's desired path works on the shared line too.
    edge.set_desired("default/healthy", "pump", "true");
    edge.wait_reported("default/healthy", "pump", "true", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plc.get(1, "coils", 0, 1).await, [1]);
    mapper.shutdown().await.expect("clean shutdown");
}
