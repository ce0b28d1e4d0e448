//! End to end through the whole stack: Device YAML → `edgetwin ctl apply` → cloud → edge agent
//! → Modbus mapper → `edgetwin ctl set` a holding register → the value lands on the pymodbus
//! server → the mapper reads it back → the reported value reaches the Device's status.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{Peer, pymodbus_python};
use tokio::process::{Child, Command};

/// A binary of another workspace package (`edgetwin`), built into the same directory as ours.
fn workspace_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_edgetwin-mapper-modbus")).with_file_name(name)
}

const MODEL: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: boiler-model
spec:
  protocol: modbus
  properties:
    - name: setpoint
      type: INT
      accessMode: ReadWrite
    - name: temperature
      type: FLOAT
      accessMode: ReadOnly
"#;

fn device_yaml(node: &str, port: u16) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: boiler
spec:
  deviceModelRef:
    name: boiler-model
  nodeName: {node}
  protocol:
    protocolName: modbus
    configData:
      communicateMode: TCP
      ip: 127.0.0.1
      port: "{port}"
      slaveID: 1
  properties:
    - name: setpoint
      collectCycle: 200
      reportCycle: 200
      visitors:
        protocolName: modbus
        configData: {{ register: HoldingRegister, offset: 0, dataType: int16 }}
    - name: temperature
      collectCycle: 200
      reportCycle: 200
      visitors:
        protocolName: modbus
        configData: {{ register: HoldingRegister, offset: 1, limit: 1, dataType: float, scale: 0.1 }}
"#
    )
}

fn spawn(program: &Path, args: &[&str], data: &Path) -> Child {
    Command::new(program)
        .args(args)
        .env("EDGETWIN_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

async fn ctl(data: &Path, args: &[&str]) -> String {
    let output = Command::new(workspace_bin("edgetwin"))
        .arg("ctl")
        .args(args)
        .env("EDGETWIN_DATA_DIR", data)
        .output()
        .await
        .expect("edgetwin ctl runs");
    assert!(
        output.status.success(),
        "edgetwin ctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs the cloud hub (`edgetwin cloud`) and the edge agent (`edgetwin edge`), which \
            are not on main yet (branches agent/up); run with --run-ignored once they are"]
async fn e2e_ctl_set_reaches_the_modbus_device_and_is_reported_back() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let mut plc = Peer::pymodbus_tcp(&python, "1").await;
    plc.set(1, "holding", 1, &[215]).await;
    let data = tempfile::tempdir().expect("data dir");
    let node = "e2e-node";
    let manifests = data.path().join("manifests");
    std::fs::create_dir(&manifests).expect("manifests dir");
    std::fs::write(manifests.join("model.yaml"), MODEL).expect("model");
    std::fs::write(
        manifests.join("device.yaml"),
        device_yaml(node, plc.addr().port()),
    )
    .expect("device");

    let edgetwin = workspace_bin("edgetwin");
    let _cloud = spawn(
        &edgetwin,
        &["cloud", "--registry-listen", "127.0.0.1:0"],
        data.path(),
    );
    let _edge = spawn(&edgetwin, &["edge", "--node", node], data.path());
    let _mapper = spawn(
        Path::new(env!("CARGO_BIN_EXE_edgetwin-mapper-modbus")),
        &["--node", node],
        data.path(),
    );
    eventually("the registry", async || {
        data.path().join("registry.url").exists()
    })
    .await;
    ctl(data.path(), &["apply", "-f", &manifests.to_string_lossy()]).await;

    // The mapper reports what the device holds.
    eventually("temperature reported", async || {
        ctl(data.path(), &["get", "device", "boiler", "-o", "json"])
            .await
            .contains("\"21.5\"")
    })
    .await;
    ctl(data.path(), &["set", "device", "boiler", "setpoint=42"]).await;
    eventually("setpoint written to the PLC", async || {
        plc.get(1, "holding", 0, 1).await == [42]
    })
    .await;
    eventually("setpoint reported back", async || {
        let json = ctl(data.path(), &["get", "device", "boiler", "-o", "json"]).await;
        let device: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        device["status"]["twins"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|twin| twin["propertyName"] == "setpoint" && twin["reported"]["value"] == "42")
    })
    .await;
}
