//! The driver in the SDK's runtime against BlueZ's D-Bus API (python-dbusmock, private bus),
//! an in-process MQTT broker and the testkit's edge: notifications reach the twin through the
//! push path without polling; desired values are written and read back; a device that vanishes
//! mid-read goes offline with the reason and comes back online when it returns; and the SDK's
//! conformance suite.

mod support;

use std::time::Duration;

use edgetwin_mapper_ble::BleDriver;
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge, conformance};
use edgetwin_sdk::{Mapper, MapperHandle};
use support::{BluezPeer, on_private_bus, run_on_private_bus};

const NODE: &str = "edge-1";
const WAIT: Duration = Duration::from_secs(15);
const SENSOR: &str = "AA:BB:CC:DD:EE:01";
const SERVICE: &str = "0000181a-0000-1000-8000-00805f9b34fb";
const TEMPERATURE: &str = "00002a6e-0000-1000-8000-00805f9b34fb";
const SWITCH: &str = "f000aa02-0451-4000-b000-000000000000";
const LEVEL: &str = "f000aa66-0451-4000-b000-000000000000";
const ID: &str = "default/thermo";

/// A thermometer whose temperature notifies (collected only once a minute: what arrives
/// sooner came by notification), a switch with KubeEdge's dataWrite and a writable level.
fn devices(protocol: &str) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {{name: thermo-model, namespace: default}}
spec:
  protocol: {protocol}
  properties:
    - {{name: temperature, type: FLOAT, accessMode: ReadOnly}}
    - {{name: enable, type: STRING, accessMode: ReadWrite}}
    - {{name: level, type: INT, accessMode: ReadWrite}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {{name: thermo, namespace: default}}
spec:
  deviceModelRef: {{name: thermo-model}}
  nodeName: {NODE}
  protocol:
    protocolName: {protocol}
    configData: {{macAddress: "{SENSOR}", connectTimeout: 2000, timeout: 1000}}
  properties:
    - name: temperature
      collectCycle: 60000
      reportCycle: 20
      visitors:
        protocolName: {protocol}
        configData: {{characteristicUUID: 2a6e, dataType: int16, byteOrder: little}}
    - name: enable
      reportCycle: 20
      visitors:
        protocolName: {protocol}
        configData:
          characteristicUUID: f000aa0204514000b000000000000000
          dataWrite: {{"ON": [1], "OFF": [0]}}
    - name: level
      reportCycle: 20
      visitors:
        protocolName: {protocol}
        configData: {{characteristicUUID: {LEVEL}, dataType: uint16}}
"#
    )
}

async fn sensor(peer: &mut BluezPeer) {
    peer.device(
        "hci0",
        SENSOR,
        "Thermo-1",
        SERVICE,
        &[
            (TEMPERATURE, &["read", "notify"], &[0x66, 0x08]),
            (SWITCH, &["read", "write"], &[0]),
            (LEVEL, &["read", "write"], &[1, 0]),
        ],
    )
    .await;
}

fn mapper(broker: &TestBroker) -> MapperHandle {
    Mapper::builder()
        .driver(BleDriver::default())
        .node(NODE)
        .broker(broker.addr().to_string())
        .options(|o| {
            o.backoff_initial = Duration::from_millis(50);
            o.backoff_max = Duration::from_millis(300);
            o.health_interval = Duration::from_millis(200);
            o.default_collect_cycle = Duration::from_millis(100);
        })
        .build()
        .expect("valid mapper settings")
        .spawn()
}

#[test]
fn notifications_are_reported_through_the_push_path() {
    run_on_private_bus("inner_notifications_are_reported_through_the_push_path");
}

#[tokio::test]
#[ignore = "run on a private bus by notifications_are_reported_through_the_push_path"]
async fn inner_notifications_are_reported_through_the_push_path() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer).await;
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    // The protocol name KubeEdge's `ble` samples do not use but users write.
    edge.publish_devices(&devices("ble")).expect("valid YAML");
    let mapper = mapper(&broker);
    edge.wait_state(ID, "online", WAIT).await.expect("online");
    edge.wait_reported(ID, "temperature", "2150", WAIT)
        .await
        .expect("first read");
    let until_subscribed = tokio::time::timeout(WAIT, async {
        while peer.get(SENSOR, TEMPERATURE).await["notifying"] != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    until_subscribed.await.expect("the mapper subscribed");
    for (bytes, reported) in [
        ([0x70, 0x08], "2160"),
        ([0x4c, 0xff], "-180"),
        ([0x00, 0x00], "0"),
    ] {
        let (_, sent) = peer.notify(SENSOR, TEMPERATURE, &bytes).await;
        assert!(sent);
        edge.wait_reported(ID, "temperature", reported, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Read once after connecting; everything since came by notification.
    assert_eq!(peer.get(SENSOR, TEMPERATURE).await["reads"], 1);
    mapper.shutdown().await.expect("clean shutdown");
    edge.wait_state(ID, "offline", WAIT)
        .await
        .expect("offline at shutdown");
    let stats = peer.stats(SENSOR).await;
    assert_eq!(stats["connected"], false, "disconnected at shutdown");
    assert_eq!(peer.get(SENSOR, TEMPERATURE).await["notifying"], false);
    peer.kill().await;
}

#[test]
fn desired_values_are_written_and_read_back() {
    run_on_private_bus("inner_desired_values_are_written_and_read_back");
}

#[tokio::test]
#[ignore = "run on a private bus by desired_values_are_written_and_read_back"]
async fn inner_desired_values_are_written_and_read_back() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer).await;
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    edge.publish_devices(&devices("bluetooth"))
        .expect("valid YAML");
    let mapper = mapper(&broker);
    edge.wait_reported(ID, "enable", "OFF", WAIT)
        .await
        .expect("read");
    edge.set_desired(ID, "enable", "ON");
    edge.set_desired(ID, "level", "513");
    edge.wait_reported(ID, "enable", "ON", WAIT)
        .await
        .expect("written");
    edge.wait_reported(ID, "level", "513", WAIT)
        .await
        .expect("written");
    assert_eq!(
        peer.get(SENSOR, SWITCH).await["value"],
        serde_json::json!([1])
    );
    assert_eq!(
        peer.get(SENSOR, LEVEL).await["value"],
        serde_json::json!([1, 2])
    );
    // A value dataWrite does not know is refused with the reason, and nothing is written.
    edge.set_desired(ID, "enable", "DIM");
    let refused = edge
        .wait_for(ID, WAIT, "a write error", |d| {
            d.write_errors.contains_key("enable")
        })
        .await
        .expect("refused");
    let reason = format!("{:?}", refused.write_errors["enable"]);
    assert!(
        reason.contains("is not one of dataWrite's values (OFF=00, ON=01)"),
        "{reason}"
    );
    assert_eq!(
        peer.get(SENSOR, SWITCH).await["writes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    mapper.shutdown().await.expect("clean shutdown");
    peer.kill().await;
}

#[test]
fn a_device_that_vanishes_mid_read_goes_offline_with_the_reason_and_returns_online() {
    run_on_private_bus(
        "inner_a_device_that_vanishes_mid_read_goes_offline_with_the_reason_and_returns_online",
    );
}

#[tokio::test]
#[ignore = "run on a private bus by a_device_that_vanishes_mid_read_goes_offline_with_the_reason_and_returns_online"]
async fn inner_a_device_that_vanishes_mid_read_goes_offline_with_the_reason_and_returns_online() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer).await;
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    edge.publish_devices(&devices("bluetooth"))
        .expect("valid YAML");
    let mapper = mapper(&broker);
    edge.wait_state(ID, "online", WAIT).await.expect("online");
    edge.wait_reported(ID, "level", "1", WAIT)
        .await
        .expect("polled");

    // The level is polled every 100 ms: the next read meets the vanished device.
    peer.vanish(SENSOR, 300).await;
    let offline = edge.wait_state(ID, "offline", WAIT).await.expect("offline");
    let reason = offline.reason.unwrap_or_default();
    // The failed read, or the link loss the subscription saw first.
    assert!(
        reason.contains("AA:BB:CC:DD:EE:01")
            && ["Not connected", "disconnected", "link lost"]
                .iter()
                .any(|why| reason.contains(why)),
        "{reason}"
    );
    // While it is away, reconnecting fails with BlueZ's reason.
    let retrying = edge
        .wait_for(ID, WAIT, "a failed reconnect", |d| {
            d.states.last().is_some_and(|s| {
                s.state == "offline"
                    && s.reason
                        .as_deref()
                        .unwrap_or_default()
                        .contains("le-connection-abort-by-local")
            })
        })
        .await;
    retrying.expect("the reconnect's reason is reported");

    peer.set(SENSOR, LEVEL, &[7, 0]).await;
    peer.come_back(SENSOR).await;
    edge.wait_state(ID, "online", WAIT)
        .await
        .expect("online again");
    edge.wait_reported(ID, "level", "7", WAIT)
        .await
        .expect("read again");
    // Notifications flow again on the new link.
    let until_subscribed = tokio::time::timeout(WAIT, async {
        while peer.get(SENSOR, TEMPERATURE).await["notifying"] != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    until_subscribed.await.expect("subscribed again");
    peer.notify(SENSOR, TEMPERATURE, &[0x01, 0x00]).await;
    edge.wait_reported(ID, "temperature", "1", WAIT)
        .await
        .expect("notified");
    mapper.shutdown().await.expect("clean shutdown");
    peer.kill().await;
}

#[test]
fn the_ble_driver_passes_the_conformance_suite() {
    run_on_private_bus("inner_the_ble_driver_passes_the_conformance_suite");
}

#[tokio::test]
#[ignore = "run on a private bus by the_ble_driver_passes_the_conformance_suite"]
async fn inner_the_ble_driver_passes_the_conformance_suite() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer).await;
    let yaml = format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {{name: thermo-model, namespace: default}}
spec:
  protocol: bluetooth
  properties:
    - {{name: level, type: INT, accessMode: ReadWrite}}
    - {{name: temperature, type: FLOAT, accessMode: ReadOnly}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {{name: thermo, namespace: default}}
spec:
  deviceModelRef: {{name: thermo-model}}
  nodeName: conformance
  protocol:
    protocolName: bluetooth
    configData: {{macAddress: "{SENSOR}", timeout: 1000}}
  properties:
    - name: level
      visitors:
        protocolName: bluetooth
        configData: {{characteristicUUID: {LEVEL}, dataType: uint16}}
    - name: temperature
      visitors:
        protocolName: bluetooth
        configData:
          characteristicUUID: 2a6e
          dataConverter: {{startIndex: 1, endIndex: 0, orderOfOperations: [{{operationType: Divide, operationValue: 100}}]}}
"#
    );
    let report = conformance::run(BleDriver::default, &yaml)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    assert_eq!(report.passed.len(), conformance::SCENARIOS.len());
    peer.kill().await;
}
