//! The `edgetwin-mapper-modbus` binary as a process: standalone on the boiler example's
//! Device YAML, against our simulator (a process) and an MQTT broker; a test edge sees the
//! reported values, sets a desired value and finds it written to the device.

mod support;

use std::process::Stdio;
use std::time::Duration;

use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use support::Peer;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn process_the_mapper_binary_serves_the_boiler_example() {
    let example = Peer::boiler_example();
    let mut sim = Peer::boiler_sim().await;
    // The example's Device, pointed at the simulator's port.
    let devices = tempfile::tempdir().expect("temp dir");
    let device = std::fs::read_to_string(example.join("devices/device.yaml")).expect("device");
    std::fs::write(
        devices.path().join("device.yaml"),
        device.replace(
            "port: \"5020\"",
            &format!("port: \"{}\"", sim.addr().port()),
        ),
    )
    .expect("write device");
    std::fs::copy(
        example.join("devices/model.yaml"),
        devices.path().join("model.yaml"),
    )
    .expect("copy model");

    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), "edge-1").await;
    let _mapper = Command::new(env!("CARGO_BIN_EXE_edgetwin-mapper-modbus"))
        .args([
            "--node",
            "edge-1",
            "--broker",
            &broker.addr().to_string(),
            "--devices",
        ])
        .arg(devices.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the mapper starts");

    for (property, value) in [
        ("temperature", "21.5"),
        ("setpoint", "60"),
        ("alarm", "false"),
        ("hours", "1234"),
        ("serial", "BX-2041"),
        ("burner", "false"),
    ] {
        edge.wait_reported("default/boiler", property, value, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    edge.wait_state("default/boiler", "online", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    edge.set_desired("default/boiler", "burner", "true");
    edge.wait_reported("default/boiler", "burner", "true", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sim.get(1, "coils", 0, 1).await, [1]);
    edge.set_desired("default/boiler", "setpoint", "65.5");
    edge.wait_reported("default/boiler", "setpoint", "65.5", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 65.5f32 = 0x42830000, word-swapped.
    assert_eq!(sim.get(1, "holding", 1, 2).await, [0x0000, 0x4283]);
}

#[tokio::test]
async fn the_mapper_binary_explains_its_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_edgetwin-mapper-modbus"))
        .arg("--help")
        .output()
        .await
        .expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("modbus"), "{help}");
    assert!(help.contains("--devices"), "{help}");
}
