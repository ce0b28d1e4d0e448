//! The `edgetwin-mapper-gpio` binary as a separate process, on the path a user takes: devices
//! from a directory of YAML, an MQTT broker and an edge (in this test process), the simulated
//! chip observed and driven over `--sim-http`. Desired → pin → reported, across processes.

use std::process::Stdio;
use std::time::Duration;

use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgetwin-mapper-gpio");
const NODE: &str = "edge-node1";
const DEVICE: &str = "default/traffic-light-01";
/// Generous: every outcome normally comes within milliseconds.
const WAIT: Duration = Duration::from_secs(20);

/// The mapper process; killed (by pid) if the test ends without stopping it.
struct Mapper {
    child: Child,
    sim_http: String,
    _devices: tempfile::TempDir,
}

impl Mapper {
    async fn start(broker: &TestBroker) -> Mapper {
        let devices = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            devices.path().join("traffic-light.yaml"),
            include_str!("data/traffic-light.yaml"),
        )
        .expect("write devices");
        let mut child = Command::new(BIN)
            .args(["--backend", "sim", "--node", NODE, "--broker"])
            .arg(broker.addr().to_string())
            .arg("--devices")
            .arg(devices.path())
            .args(["--sim-http", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the mapper binary starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let announce = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the mapper announces its sim-http address")
            .expect("stdout readable")
            .expect("a line");
        let sim_http = announce
            .strip_prefix("sim-http listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {announce}"))
            .to_owned();
        Mapper {
            child,
            sim_http,
            _devices: devices,
        }
    }

    /// One HTTP exchange with `--sim-http`; the JSON body.
    async fn http(&self, method: &str, path: &str, body: &str) -> Json {
        let mut stream = TcpStream::connect(&self.sim_http).await.expect("connect");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.sim_http,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200 "), "{method} {path}: {head}");
        serde_json::from_str(body).expect("a JSON body")
    }

    /// Stops the process with SIGTERM (as a service manager would) and returns its exit code.
    async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the mapper stops after SIGTERM")
            .expect("exit status");
        status.code()
    }
}

async fn reported(edge: &TestEdge, property: &str, value: &str) {
    if let Err(err) = edge.wait_reported(DEVICE, property, value, WAIT).await {
        panic!("{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_moves_the_simulated_pin_and_comes_back_reported() {
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let mapper = Mapper::start(&broker).await;
    reported(&edge, "red", "OFF").await;

    edge.set_desired(DEVICE, "red", "ON");
    reported(&edge, "red", "ON").await;
    let red = mapper.http("GET", "/sim/gpiochip0/17", "").await;
    assert_eq!(red["level"], "high");
    assert_eq!(red["consumer"], "default/traffic-light-01:red");
    let chip = mapper.http("GET", "/sim/gpiochip0", "").await;
    let writes: Vec<&Json> = chip["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter(|t| t["line"] == 17)
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["cause"], "write");
    assert_eq!(writes[0]["level"], "high");

    // The interlock holds across the process boundary too. Desired values are applied in
    // order, so once the later yellow is reported the refused green has been tried.
    edge.set_desired(DEVICE, "green", "ON");
    edge.set_desired(DEVICE, "yellow", "ON");
    reported(&edge, "yellow", "ON").await;
    assert_eq!(
        mapper.http("GET", "/sim/gpiochip0/22", "").await["level"],
        "low"
    );
    assert_eq!(
        edge.device(DEVICE)
            .reported
            .get("green")
            .map(String::as_str),
        Some("OFF")
    );

    // Pressing the simulated button (pulled up, active low) is reported at once.
    let pressed = mapper.http("PUT", "/sim/gpiochip0/4", "low").await;
    assert_eq!(pressed["driven"], "low");
    reported(&edge, "button", "true").await;
    mapper.http("PUT", "/sim/gpiochip0/4", "float").await;
    reported(&edge, "button", "false").await;

    assert_eq!(
        mapper.terminate().await,
        Some(0),
        "clean exit after SIGTERM"
    );
    edge.wait_state(DEVICE, "offline", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn help_and_bad_arguments() {
    let help = Command::new(BIN)
        .arg("--help")
        .output()
        .await
        .expect("runs");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--sim-http ADDR"), "{text}");
    assert!(text.contains("--node NAME"), "{text}");

    let bad = Command::new(BIN)
        .args(["--backend", "pi"])
        .output()
        .await
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("--backend \"pi\": use sim, cdev or rpi"),
        "{text}"
    );

    let wire = Command::new(BIN)
        .args(["--sim-wire", "3:99", "--devices", "/nonexistent"])
        .output()
        .await
        .expect("runs");
    assert_eq!(wire.status.code(), Some(2));
    let text = String::from_utf8_lossy(&wire.stderr);
    assert!(text.contains("has no line 99"), "{text}");
}
