//! A mapper as a real process: SIGTERM makes it publish `offline` for every device, disconnect
//! and exit 0. The test runs this test binary again as the mapper (the ignored test below, with
//! an environment variable) and signals it by pid.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{MODEL, NODE, Rig, WAIT, meter};

const CHILD: &str = "EDGETWIN_TEST_MAPPER_BROKER";
/// The node the child serves (default [`NODE`]).
const CHILD_NODE: &str = "EDGETWIN_TEST_MAPPER_NODE";

/// The child process: a mapper until SIGTERM, logging as a mapper binary does. Ignored unless
/// run by the tests below.
#[test]
#[ignore = "the mapper process of the tests below"]
fn mapper_child_process() {
    let Ok(broker) = std::env::var(CHILD) else {
        return;
    };
    edgetwin_sdk::cli::init_logging();
    let node = std::env::var(CHILD_NODE).unwrap_or_else(|_| NODE.to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(
            edgetwin_sdk::Mapper::builder()
                .driver(edgetwin_sdk::testkit::SimDriver::new())
                .node(node)
                .broker(broker)
                .options(|o| o.no_devices_warning = Duration::from_millis(500))
                .build()
                .expect("valid settings")
                .run(),
        )
        .expect("clean run");
}

/// Starts the child mapper for `node`, its stderr piped.
fn spawn_mapper(rig: &Rig, node: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "mapper_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, rig.broker.addr().to_string())
        .env(CHILD_NODE, node)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child starts")
}

/// SIGTERM to `child`, then its exit status and everything it logged.
async fn terminate(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the mapper did not exit within {WAIT:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut logs = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut logs).expect("stderr");
    }
    (status, logs)
}

#[tokio::test]
async fn sigterm_publishes_offline_and_exits_0_process() {
    let rig = Rig::start().await;
    rig.publish(&format!(
        "{MODEL}{}{}",
        meter("a", "", ""),
        meter("b", "", "")
    ));
    let mut child = spawn_mapper(&rig, NODE);
    for id in ["default/a", "default/b"] {
        if let Err(err) = rig.edge.wait_state(id, "online", WAIT).await {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{err}");
        }
    }
    // A few cycles of normal work.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, logs) = terminate(child).await;
    assert!(status.success(), "exit status {status}");
    for id in ["default/a", "default/b"] {
        let state = rig
            .edge
            .wait_state(id, "offline", WAIT)
            .await
            .expect("offline");
        assert_eq!(state.reason.as_deref(), Some("mapper stopped"));
    }
    // A normal start, run and clean stop: nothing to warn about, no colour codes in a pipe.
    assert!(logs.contains("mapper stopped"), "{logs}");
    for line in logs.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "a normal run logged: {line}\n{logs}"
        );
    }
    assert!(!logs.contains('\u{1b}'), "ANSI codes in a pipe:\n{logs}");
}

#[tokio::test]
async fn a_mapper_that_finds_no_devices_for_its_node_says_so_process() {
    let rig = Rig::start().await;
    rig.publish(&format!("{MODEL}{}", meter("a", "", "")));
    let child = spawn_mapper(&rig, "edge-node-1");
    // The child warns 500 ms after it connects.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (status, logs) = terminate(child).await;
    assert!(status.success(), "exit status {status}");
    let warning = logs
        .lines()
        .find(|line| line.contains(" WARN ") && line.contains("no devices to serve"))
        .unwrap_or_else(|| panic!("no warning about the missing devices:\n{logs}"));
    assert!(warning.contains("edge-node-1"), "{warning}");
    assert!(warning.contains("--node"), "{warning}");
    assert!(warning.contains("nodeName"), "{warning}");
}
