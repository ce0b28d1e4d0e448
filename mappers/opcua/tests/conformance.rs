//! The SDK's conformance suite against the OPC-UA driver and our simulator (`opcua-sim`, on
//! async-opcua's server, a separate process): desired → write → read back → reported without
//! re-reports of unchanged values, a bad configuration, a device that disappears and returns, a
//! broker restart and a storm of deltas.

mod support;

use edgetwin_mapper_opcua::OpcUaDriver;
use edgetwin_sdk::testkit::conformance;
use support::Peer;

/// A device with a writable Double next to a read-only Int32 reached by browse path.
fn device_yaml(url: &str, ns: u16) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: sim-model
  namespace: default
spec:
  protocol: opcua
  properties:
    - name: setpoint
      type: DOUBLE
      accessMode: ReadWrite
    - name: counter
      type: INT
      accessMode: ReadOnly
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: sim
  namespace: default
spec:
  deviceModelRef:
    name: sim-model
  nodeName: conformance
  protocol:
    protocolName: opcua
    configData:
      url: {url}
      timeout: 2
  properties:
    - name: setpoint
      visitors:
        protocolName: opcua
        configData: {{nodeID: "ns={ns};s=Setpoint"}}
    - name: counter
      visitors:
        protocolName: opcua
        configData: {{browsePath: "{ns}:Device/{ns}:Int32"}}
"#
    )
}

#[tokio::test]
async fn the_opcua_driver_passes_the_conformance_suite_against_our_simulator() {
    edgetwin_sdk::cli::init_logging();
    let pki = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("temp dir");
    let sim = Peer::sim(pki.path(), 0).await;
    let data_dir = data.path().to_path_buf();
    let report = conformance::run(
        || OpcUaDriver::new(&data_dir),
        &device_yaml(&sim.url, sim.ns),
    )
    .await
    .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    assert_eq!(report.passed.len(), conformance::SCENARIOS.len());
    sim.kill().await;
}
