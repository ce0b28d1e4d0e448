//! End to end through the whole stack: Device YAML → `edgetwin ctl apply` → cloud → edge agent
//! → Modbus mapper → `edgetwin ctl set` a holding register → the value lands on the pymodbus
//! server → the mapper reads it back → the reported value reaches the Device's status.

mod support;

use std::net::SocketAddr;
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

fn spawn(program: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

async fn edgetwin(args: &[&str]) -> String {
    let output = Command::new(workspace_bin("edgetwin"))
        .args(args)
        .output()
        .await
        .expect("edgetwin runs");
    assert!(
        output.status.success(),
        "edgetwin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `edgetwin ctl` against the cloud's embedded registry in `cloud_dir`.
async fn ctl(cloud_dir: &Path, args: &[&str]) -> String {
    let dir = cloud_dir.to_str().expect("utf-8 path");
    edgetwin(&[&["ctl", "--data-dir", dir], args].concat()).await
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
async fn e2e_ctl_set_reaches_the_modbus_device_and_is_reported_back() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let mut plc = Peer::pymodbus_tcp(&python, "1").await;
    plc.set(1, "holding", 1, &[215]).await;
    let data = tempfile::tempdir().expect("data dir");
    let root = data.path();
    let node = "e2e-node";
    let manifests = root.join("manifests");
    std::fs::create_dir(&manifests).expect("manifests dir");
    std::fs::write(manifests.join("model.yaml"), MODEL).expect("model");
    std::fs::write(
        manifests.join("device.yaml"),
        device_yaml(node, plc.addr().port()),
    )
    .expect("device");

    // The cloud: embedded registry, tunnel on a free port, a token for the node.
    let cloud_dir = root.join("cloud");
    std::fs::create_dir(&cloud_dir).expect("cloud dir");
    let tunnel = free_addr();
    let cloud_config = root.join("cloud.yaml");
    std::fs::write(
        &cloud_config,
        format!(
            "listen: {tunnel}\ninsecure: true\ndataDir: {}\nregistry:\n  embedded:\n    apiListen: 127.0.0.1:0\nstatusIntervalMs: 100\nmetricsListen: null\n",
            cloud_dir.display()
        ),
    )
    .expect("cloud config");
    let db = cloud_dir.join("cloud.db");
    let token = edgetwin(&[
        "cloud",
        "token",
        "create",
        node,
        "--db",
        db.to_str().expect("utf-8"),
    ])
    .await
    .trim()
    .to_owned();
    let edgetwin_bin = workspace_bin("edgetwin");
    let cloud_config = cloud_config.to_str().expect("utf-8");
    let _cloud = spawn(
        &edgetwin_bin,
        &["cloud", "-c", cloud_config],
        &root.join("cloud.log"),
    );
    eventually("the cloud", async || {
        cloud_dir.join("registry.url").exists() && std::net::TcpStream::connect(tunnel).is_ok()
    })
    .await;

    // The edge: its own embedded broker, joined to the cloud over the tunnel.
    let broker = free_addr();
    let edge_config = root.join("edge.yaml");
    std::fs::write(
        &edge_config,
        format!(
            "nodeName: {node}\ndataDir: {}\nbroker:\n  embedded:\n    listen: {broker}\nhttp:\n  listen: null\ncloud:\n  url: ws://{tunnel}\n  token: {token}\n  insecure: true\n  reconnectMinMs: 50\n  reconnectMaxMs: 200\n\
                 bus:\n  clients:\n    - name: modbus\n      protocols: [modbus]\n",
            root.join("edge").display()
        ),
    )
    .expect("edge config");
    let edge_config = edge_config.to_str().expect("utf-8");
    let _edge = spawn(
        &edgetwin_bin,
        &["edge", "-c", edge_config],
        &root.join("edge.log"),
    );
    eventually("the edge broker", async || {
        std::net::TcpStream::connect(broker).is_ok()
    })
    .await;
    let broker_arg = broker.to_string();
    // The bus credentials the edge agent wrote for its client `modbus` (edge.yaml).
    let credentials = root.join("edge").join("bus").join("modbus.json");
    let credentials = credentials.to_str().expect("utf-8");
    let _mapper = spawn(
        Path::new(env!("CARGO_BIN_EXE_edgetwin-mapper-modbus")),
        &[
            "--node",
            node,
            "--broker",
            &broker_arg,
            "--credentials",
            credentials,
        ],
        &root.join("mapper.log"),
    );
    ctl(
        &cloud_dir,
        &["apply", "-f", manifests.to_str().expect("utf-8")],
    )
    .await;

    // The mapper reports what the device holds.
    let reported = async |property: &str, value: &str| {
        let json = ctl(&cloud_dir, &["get", "device", "boiler", "-o", "json"]).await;
        let device: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        device["status"]["twins"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|twin| twin["propertyName"] == property && twin["reported"]["value"] == value)
    };
    eventually("temperature reported", async || {
        reported("temperature", "21.5").await
    })
    .await;
    ctl(&cloud_dir, &["set", "device", "boiler", "setpoint=42"]).await;
    eventually("setpoint written to the PLC", async || {
        plc.get(1, "holding", 0, 1).await == [42]
    })
    .await;
    eventually("setpoint reported back", async || {
        reported("setpoint", "42").await
    })
    .await;
}
