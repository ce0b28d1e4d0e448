//! The SDK's conformance suite against the Modbus driver and our simulator (`modbus-sim`, a
//! separate process): desired → write → read back → reported without re-reports of unchanged
//! values, a bad configuration, a device that disappears and returns, a broker restart and a
//! storm of deltas; through a TCP proxy, a simulator that hangs and one that drops the link.

mod support;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_sdk::testkit::conformance;
use edgetwin_sdk::testkit::kit::TcpProxy;
use support::Peer;

/// A device with a writable int32 (word-swapped) next to a read-only float, on `port`.
fn device_yaml(port: u16) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: plc-model
  namespace: default
spec:
  protocol: modbus
  properties:
    - name: setpoint
      type: INT
      accessMode: ReadWrite
    - name: temperature
      type: FLOAT
      accessMode: ReadOnly
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: plc
  namespace: default
spec:
  deviceModelRef:
    name: plc-model
  nodeName: conformance
  protocol:
    protocolName: modbus
    configData:
      communicateMode: TCP
      ip: 127.0.0.1
      port: "{port}"
      slaveID: 1
      timeout: 500
  properties:
    - name: setpoint
      visitors:
        protocolName: modbus
        configData: {{ register: HoldingRegister, offset: 0, dataType: int32, byteOrder: CDAB }}
    - name: temperature
      visitors:
        protocolName: modbus
        configData: {{ register: InputRegister, offset: 0, dataType: float32 }}
"#
    )
}

#[tokio::test]
async fn the_modbus_driver_passes_the_conformance_suite_against_our_simulator() {
    let sim = Peer::sim(&["--tcp", "127.0.0.1:0", "--size", "100"]).await;
    // Through a proxy that makes the simulator hang or drop the link on demand.
    let proxy = TcpProxy::start(sim.addr()).await.expect("proxy");
    let yaml = device_yaml(proxy.addr().port());
    let report = conformance::run_with(ModbusDriver::default, &yaml, &proxy)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    let skipped: Vec<&str> = report.skipped.iter().map(|(name, _)| *name).collect();
    assert_eq!(skipped, ["device-refuses"], "{report}");
    assert_eq!(
        report.passed.len(),
        conformance::SCENARIOS.len() + conformance::FAULT_SCENARIOS.len() - 1
    );
}
