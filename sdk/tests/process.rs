//! A mapper as a real process: SIGTERM makes it publish `offline` for every device, disconnect
//! and exit 0. The test runs this test binary again as the mapper (the ignored test below, with
//! an environment variable) and signals it by pid.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{MODEL, NODE, Rig, WAIT, meter};

const CHILD: &str = "EDGETWIN_TEST_MAPPER_BROKER";

/// The child process: a mapper until SIGTERM. Ignored unless run by the test below.
#[test]
#[ignore = "the mapper process of sigterm_publishes_offline_and_exits_0_process"]
fn mapper_child_process() {
    let Ok(broker) = std::env::var(CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(
            edgetwin_sdk::Mapper::builder()
                .driver(edgetwin_sdk::testkit::SimDriver::new())
                .node(NODE)
                .broker(broker)
                .build()
                .expect("valid settings")
                .run(),
        )
        .expect("clean run");
}

#[tokio::test]
async fn sigterm_publishes_offline_and_exits_0_process() {
    let rig = Rig::start().await;
    rig.publish(&format!(
        "{MODEL}{}{}",
        meter("a", "", ""),
        meter("b", "", "")
    ));
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "mapper_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, rig.broker.addr().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("child starts");
    for id in ["default/a", "default/b"] {
        if let Err(err) = rig.edge.wait_state(id, "online", WAIT).await {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{err}");
        }
    }
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
    assert!(status.success(), "exit status {status}");
    for id in ["default/a", "default/b"] {
        let state = rig
            .edge
            .wait_state(id, "offline", WAIT)
            .await
            .expect("offline");
        assert_eq!(state.reason.as_deref(), Some("mapper stopped"));
    }
}
