//! Log levels mean something: the real `edgetwin edge` (embedded broker) started, used by a
//! client that connects, asks for a twin and disconnects cleanly, then stopped with SIGTERM, logs
//! no WARN and no ERROR, and writes no colour codes into a log that is not a terminal.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgetwin_core::edge::access::secrets::default_credentials_file;
use edgetwin_model::wire::spec_auth::BusCredentials;
use edgetwin_testkit::TestClient;
use support::*;

/// Kills the agent on a panic (the test stops it with SIGTERM otherwise).
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn_agent(dir: &Path, log: &Path) -> Agent {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .arg("edge")
        .arg("--config")
        .arg(dir.join("edge.yaml"))
        .arg("--devices")
        .arg(fixture("edge-traffic-light.yaml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("edgetwin starts");
    Agent(child)
}

/// Lines at WARN or ERROR, and whether any colour code is present.
fn complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect()
}

#[tokio::test]
async fn a_normal_start_run_and_stop_of_the_edge_agent_logs_no_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("agent.log");
    let port = free_port();
    std::fs::write(
        dir.path().join("edge.yaml"),
        format!(
            "nodeName: {NODE}\ndataDir: {}\nbroker:\n  embedded:\n    listen: 127.0.0.1:{port}\n\
             http:\n  listen: null\nbus:\n  clients:\n    - name: normal\n      protocols: [\"*\"]\n\
             \x20 dataTopics: [\"edgetwin-test/#\"]\n",
            dir.path().join("data").display(),
        ),
    )
    .expect("config written");
    let mut agent = spawn_agent(dir.path(), &log);

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut mapper = loop {
        // The agent writes the client's credentials before its broker listens.
        let login =
            std::fs::read_to_string(default_credentials_file(&dir.path().join("data"), "normal"))
                .ok()
                .and_then(|text| BusCredentials::from_json(&text).ok());
        let login = login
            .as_ref()
            .map(|login| (login.username.as_str(), login.password.as_str()));
        match TestClient::connect_as(addr, "normal-mapper", login).await {
            Ok(client) => break client,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!(
                "the agent's broker never accepted a client: {err}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    };
    mapper
        .subscribe(&device_topic(LIGHT, "twin/get/result"))
        .await
        .expect("subscribes");
    // The agent subscribes to twin/get after its own connect: ask until it answers.
    let answered = loop {
        mapper
            .publish(&device_topic(LIGHT, "twin/get"), r#"{"event_id":"normal"}"#)
            .await
            .expect("publishes");
        match mapper.recv_within(Duration::from_millis(500)).await {
            Ok(message) => break message,
            Err(_) if Instant::now() < deadline => continue,
            Err(err) => panic!("no twin/get/result: {err}"),
        }
    };
    assert!(answered.topic.ends_with("twin/get/result"), "{answered:?}");
    mapper.disconnect().await;
    // Let the broker see the clean disconnect before the agent stops.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = agent.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the agent did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(exit.success(), "SIGTERM is a clean stop: {exit}\n{text}");
    assert!(
        text.contains(" INFO "),
        "the log holds the normal INFO lines: {text}"
    );
    assert_eq!(
        complaints(&text),
        Vec::<&str>::new(),
        "a normal start, run and stop logs no WARN or ERROR; the log:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a log file: {text}"
    );
}
