//! Our `modbus-sim` binary as a separate process, over TCP and over RTU on a socat pty pair,
//! driven by the driver and by its stdin control commands.

mod support;

use std::process::Stdio;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_sdk::Session;
use edgetwin_sdk::{PropertyType, Value};
use serde_json::json;
use support::{Peer, PtyPair, connect, device, driver_config, have_socat, load_pair, read_all};

#[tokio::test]
async fn the_simulator_serves_tcp_from_a_registers_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registers = dir.path().join("registers.yaml");
    std::fs::write(
        &registers,
        "units:\n  - unit: 5\n    holdingRegisters: { size: 10, values: { 0: [0x41AC, 0] } }\n    \
         coils: { size: 8, values: { 2: [true] } }\n",
    )
    .expect("write registers");
    let mut sim = Peer::sim(&[
        "--tcp",
        "127.0.0.1:0",
        "--registers",
        &registers.to_string_lossy(),
    ])
    .await;
    let config = device(
        "sim",
        json!({"ip": "127.0.0.1", "port": sim.addr().port(), "slaveID": 5}),
        &[
            (
                "temperature",
                PropertyType::Float,
                json!({"register": "holding", "offset": 0, "dataType": "float32"}),
            ),
            (
                "fan",
                PropertyType::Boolean,
                json!({"register": "coil", "offset": 2}),
            ),
        ],
    );
    let mut session = connect(&ModbusDriver::new(), &config).await;
    assert_eq!(
        read_all(&mut session, &config).await,
        vec![Ok(Value::Float(21.5)), Ok(Value::Boolean(true))]
    );
    session
        .write(&config.points[1], &Value::Boolean(false))
        .await
        .expect("written");
    assert_eq!(sim.get(5, "coils", 2, 1).await, [0]);
    let stats = sim.command("stats").await;
    // probe, read (holding + coils), write
    assert_eq!(stats["by_unit"]["5"], 4);
    assert_eq!(stats["by_function"]["5"], 1);
}

#[tokio::test]
async fn the_simulator_serves_several_units_on_an_rtu_line() {
    if !have_socat() {
        return;
    }
    let pty = PtyPair::start().await;
    let mut sim = Peer::sim(&[
        "--rtu",
        &pty.a.to_string_lossy(),
        "--baud",
        "19200",
        "--unit",
        "1",
        "--unit",
        "2",
        "--size",
        "100",
    ])
    .await;
    sim.set(2, "input", 4, &[0xFFFF]).await;
    let driver = ModbusDriver::new();
    let mut sessions = Vec::new();
    for unit in [1u8, 2] {
        let config = device(
            &format!("unit-{unit}"),
            json!({"serialPort": pty.b, "baudRate": 19200, "slaveID": unit}),
            &[
                (
                    "level",
                    PropertyType::Int,
                    json!({"register": "input", "offset": 4, "dataType": "int16"}),
                ),
                (
                    "setpoint",
                    PropertyType::Int,
                    json!({"register": "holding", "offset": 0}),
                ),
            ],
        );
        let session = connect(&driver, &config).await;
        sessions.push((unit, config, session));
    }
    for (unit, config, session) in &mut sessions {
        session
            .write(&config.points[1], &Value::Int(i64::from(*unit) * 10))
            .await
            .expect("written");
    }
    for (unit, config, session) in &mut sessions {
        let level = if *unit == 2 { -1 } else { 0 };
        assert_eq!(
            read_all(session, config).await,
            vec![Ok(Value::Int(level)), Ok(Value::Int(i64::from(*unit) * 10))]
        );
    }
}

#[tokio::test]
async fn the_simulator_refuses_a_bad_registers_file_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registers = dir.path().join("bad.yaml");
    std::fs::write(
        &registers,
        "units:\n  - unit: 1\n    holdingRegisters: { size: 2, values: { 1: [1, 2] } }\n",
    )
    .expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_modbus-sim"))
        .args(["--tcp", "127.0.0.1:0", "--registers"])
        .arg(&registers)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unit 1, holding registers: value at address 2 is outside size 2"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_boiler_example_reads_what_its_comments_say() {
    let example = Peer::boiler_example();
    let mut sim = Peer::boiler_sim().await;
    let (device, model) = load_pair(&example.join("devices"), ["device.yaml", "model.yaml"]);
    let config = driver_config(&device, &model, Some(("127.0.0.1", sim.addr().port())));
    let mut session = connect(&ModbusDriver::new(), &config).await;
    sim.command("reset").await;
    assert_eq!(
        read_all(&mut session, &config).await,
        vec![
            Ok(Value::Float(21.5)),
            Ok(Value::Float(60.0)),
            Ok(Value::Boolean(false)),
            Ok(Value::Int(1234)),
            Ok(Value::String("BX-2041".into())),
            Ok(Value::Boolean(false)),
        ]
    );
    assert_eq!(
        sim.requests().await,
        2,
        "holding registers 0..10 and the coil"
    );
    sim.set(1, "holding", 0, &[230]).await;
    sim.set(1, "holding", 3, &[0b1000]).await;
    let read = read_all(&mut session, &config).await;
    assert_eq!(
        (&read[0], &read[2]),
        (&Ok(Value::Float(23.0)), &Ok(Value::Boolean(true)))
    );
}
