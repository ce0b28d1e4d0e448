//! The `edgetwin-mapper-opcua` binary as a process, with devices from a YAML directory, against
//! python asyncua: a wrong password makes the device unhealthy with a clear reason, and the
//! password appears in no log line and no state message, even at debug level; a device with the
//! right password next to it works.

mod support;

use std::process::Stdio;

use edgetwin_sdk::testkit::{TestBroker, TestEdge};
use support::{Peer, WAIT, asyncua_python};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const NODE: &str = "opcua-node";
const WRONG: &str = "Tr0ub4dor&3-wrong";
const RIGHT: &str = "correct-horse-battery";

fn devices_yaml(url: &str, ns: u16, wrong_file: &str, right_file: &str) -> String {
    let device = |name: &str, file: &str| {
        format!(
            r#"---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: {name}
  namespace: default
spec:
  deviceModelRef:
    name: valve-model
  nodeName: {NODE}
  protocol:
    protocolName: opcua
    configData:
      url: {url}
      userName: operator
      passwordFile: {file}
  properties:
    - name: position
      collectCycle: 100
      reportCycle: 100
      visitors:
        protocolName: opcua
        configData: {{nodeID: "ns={ns};s=Int32"}}
"#
        )
    };
    format!(
        r#"apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: valve-model
  namespace: default
spec:
  protocol: opcua
  properties:
    - name: position
      type: INT
      accessMode: ReadOnly
{}{}"#,
        device("valve-wrong", wrong_file),
        device("valve-right", right_file)
    )
}

#[tokio::test]
async fn a_wrong_password_makes_the_device_unhealthy_and_is_never_logged() {
    let Some(python) = asyncua_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let right_file = dir.path().join("right-password");
    let wrong_file = dir.path().join("wrong-password");
    std::fs::write(&right_file, RIGHT).expect("written");
    std::fs::write(&wrong_file, WRONG).expect("written");
    let mut peer = Peer::asyncua(
        &python,
        0,
        &dir.path().join("server-certs"),
        Some(("operator", &right_file)),
    )
    .await;
    let devices = dir.path().join("devices");
    std::fs::create_dir(&devices).expect("devices dir");
    std::fs::write(
        devices.join("valves.yaml"),
        devices_yaml(
            &peer.url,
            peer.ns,
            &wrong_file.to_string_lossy(),
            &right_file.to_string_lossy(),
        ),
    )
    .expect("written");
    let broker = TestBroker::start().await.expect("test broker");
    let edge = TestEdge::start(&broker.addr(), NODE).await;
    let mut mapper = Command::new(env!("CARGO_BIN_EXE_edgetwin-mapper-opcua"))
        .args([
            "--node",
            NODE,
            "--broker",
            &broker.addr().to_string(),
            "--devices",
        ])
        .arg(&devices)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the mapper starts");
    // Drained while the mapper runs, so that a full pipe never stalls its logging.
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text).await;
            }
            text
        })
    };
    let stdout = drain(mapper.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(mapper.stderr.take().map(|p| Box::new(p) as _));

    let state = edge
        .wait_state("default/valve-wrong", "unhealthy", WAIT)
        .await
        .expect("unhealthy");
    let reason = state.reason.unwrap_or_default();
    assert!(reason.contains("refused the user identity"), "{reason}");
    assert!(reason.contains("operator"), "{reason}");
    assert!(!reason.contains(WRONG), "{reason}");
    edge.wait_reported("default/valve-right", "position", "-32", WAIT)
        .await
        .expect("the other device works");
    peer.set("Int32", "5").await;
    edge.wait_reported("default/valve-right", "position", "5", WAIT)
        .await
        .expect("the other device keeps working");

    let _ = mapper.start_kill();
    let _ = mapper.wait().await;
    let logs = format!(
        "{}{}",
        stdout.await.expect("stdout drained"),
        stderr.await.expect("stderr drained")
    );
    assert!(
        logs.contains("refused the user identity"),
        "the refusal is logged:\n{logs}"
    );
    assert!(
        !logs.contains(WRONG),
        "the wrong password leaked into the logs"
    );
    assert!(
        !logs.contains(RIGHT),
        "the right password leaked into the logs"
    );
    for state in edge.device("default/valve-wrong").states {
        assert!(!state.reason.unwrap_or_default().contains(WRONG));
    }
    peer.kill().await;
}
