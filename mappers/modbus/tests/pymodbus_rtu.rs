//! The driver against pymodbus over Modbus RTU on a socat pty pair: data types and coils on a
//! serial line, several devices sharing one line, and a dead slave that must not slow a healthy
//! one on the same line by more than one timeout.

mod support;

use std::sync::Arc;
use std::time::Duration;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_sdk::{Driver, DriverError, Session};
use edgetwin_sdk::{PropertyType, Value};
use serde_json::json;
use support::{Peer, PtyPair, connect, device, have_socat, pymodbus_python, read_all};
use tokio::time::Instant;

const BAUD: u32 = 38_400;

fn rtu(port: &std::path::Path, unit: u8, timeout_ms: u64) -> serde_json::Value {
    json!({"communicateMode": "RTU", "serialPort": port, "baudRate": BAUD, "parity": "none",
           "slaveID": unit, "timeout": timeout_ms})
}

#[tokio::test]
async fn data_types_and_coils_over_a_serial_line() {
    let (Some(python), true) = (pymodbus_python(), have_socat()) else {
        return;
    };
    let pty = PtyPair::start().await;
    let mut peer = Peer::pymodbus_rtu(&python, &pty.a, BAUD, "1").await;
    let config = device(
        "serial",
        rtu(&pty.b, 1, 1000),
        &[
            (
                "temperature",
                PropertyType::Float,
                json!({"register": "HoldingRegister", "offset": 0, "dataType": "float32", "byteOrder": "CDAB"}),
            ),
            (
                "energy",
                PropertyType::Int,
                json!({"register": "HoldingRegister", "offset": 2, "dataType": "uint64", "byteOrder": "DCBA"}),
            ),
            (
                "setpoint",
                PropertyType::Int,
                json!({"register": "HoldingRegister", "offset": 6, "dataType": "int16", "scale": 0.5}),
            ),
            (
                "label",
                PropertyType::String,
                json!({"register": "HoldingRegister", "offset": 7, "dataType": "string", "limit": 3}),
            ),
            (
                "relay",
                PropertyType::Boolean,
                json!({"register": "CoilRegister", "offset": 1}),
            ),
            (
                "relays",
                PropertyType::Int,
                json!({"register": "CoilRegister", "offset": 8, "limit": 4}),
            ),
        ],
    );
    let mut session = connect(&ModbusDriver::new(), &config).await;
    let values = [
        Value::Float(-3.75),
        Value::Int(1_234_567_890_123),
        Value::Int(-40),
        Value::String("rs485".into()),
        Value::Boolean(true),
        Value::Int(0b1010),
    ];
    for (point, value) in config.points.iter().zip(&values) {
        session.write(point, value).await.expect("written over RTU");
    }
    // -3.75f32 = 0xC0700000, word-swapped; -40 / 0.5 = -80.
    assert_eq!(peer.get(1, "holding", 0, 2).await, [0x0000, 0xC070]);
    let le = 1_234_567_890_123u64.to_le_bytes();
    let expected: Vec<u16> = le
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    assert_eq!(peer.get(1, "holding", 2, 4).await, expected);
    assert_eq!(peer.get(1, "holding", 6, 1).await, [(-80i16) as u16]);
    assert_eq!(peer.get(1, "holding", 7, 3).await, [0x7273, 0x3438, 0x3500]);
    assert_eq!(peer.get(1, "coils", 8, 4).await, [0, 1, 0, 1]);
    peer.command("reset").await;
    let read = read_all(&mut session, &config).await;
    let expected: Vec<Result<Value, DriverError>> = values.iter().cloned().map(Ok).collect();
    assert_eq!(read, expected);
    // Holding 0..10 in one request, coils 1..12 in another.
    assert_eq!(peer.requests().await, 2);
}

#[tokio::test]
async fn devices_on_one_line_share_it() {
    let (Some(python), true) = (pymodbus_python(), have_socat()) else {
        return;
    };
    let pty = PtyPair::start().await;
    let mut peer = Peer::pymodbus_rtu(&python, &pty.a, BAUD, "1,2,3").await;
    let driver = Arc::new(ModbusDriver::new());
    let mut tasks = Vec::new();
    for unit in 1..=3u8 {
        peer.set(unit, "holding", 0, &[u16::from(unit) * 100]).await;
        let config = device(
            &format!("meter-{unit}"),
            rtu(&pty.b, unit, 1000),
            &[(
                "power",
                PropertyType::Int,
                json!({"register": "holding", "offset": 0}),
            )],
        );
        let driver = Arc::clone(&driver);
        tasks.push(tokio::spawn(async move {
            let mut session = connect(&driver, &config).await;
            let mut values = Vec::new();
            for _ in 0..20 {
                values.push(read_all(&mut session, &config).await);
            }
            (unit, values)
        }));
    }
    for task in tasks {
        let (unit, values) = task.await.expect("device task");
        // Concurrent devices never see each other's answers.
        for read in values {
            assert_eq!(
                read,
                vec![Ok(Value::Int(i64::from(unit) * 100))],
                "unit {unit}"
            );
        }
    }
    let by_unit = peer.command("stats").await["by_unit"].clone();
    // One probe and twenty reads each.
    assert_eq!(by_unit, json!({"1": 21, "2": 21, "3": 21}));
}

#[tokio::test]
async fn a_dead_slave_does_not_slow_a_healthy_one_beyond_one_timeout() {
    let (Some(python), true) = (pymodbus_python(), have_socat()) else {
        return;
    };
    let pty = PtyPair::start().await;
    let mut peer = Peer::pymodbus_rtu(&python, &pty.a, BAUD, "1,2").await;
    let driver = ModbusDriver::new();
    let timeout = Duration::from_millis(400);
    let points = [
        (
            "level",
            PropertyType::Int,
            json!({"register": "holding", "offset": 0}),
        ),
        (
            "pump",
            PropertyType::Boolean,
            json!({"register": "coil", "offset": 0}),
        ),
        (
            "flow",
            PropertyType::Int,
            json!({"register": "input", "offset": 0}),
        ),
    ];
    let healthy = device("healthy", rtu(&pty.b, 1, 400), &points);
    let dying = device("dying", rtu(&pty.b, 2, 400), &points);
    let dying_again = dying.clone();
    let mut healthy_session = connect(&driver, &healthy).await;
    let mut dying_session = connect(&driver, &dying).await;
    // Unit 2 stops answering: from now on it is a dead slave on the line.
    peer.command("mute 2").await;
    peer.command("reset").await;

    let period = Duration::from_millis(100);
    let run_for = Duration::from_secs(4);
    let dead = tokio::spawn(async move {
        let started = Instant::now();
        let mut reads = Vec::new();
        while started.elapsed() < run_for {
            reads.push(read_all(&mut dying_session, &dying).await);
            tokio::time::sleep(period).await;
        }
        reads
    });
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut cycles = 0;
    let mut next = started;
    while started.elapsed() < run_for {
        tokio::time::sleep_until(next).await;
        let cycle = Instant::now();
        let read = read_all(&mut healthy_session, &healthy).await;
        assert!(
            read.iter().all(Result::is_ok),
            "healthy unit failed: {read:?}"
        );
        slowest = slowest.max(cycle.elapsed());
        cycles += 1;
        next += period;
        if next < Instant::now() {
            next = Instant::now();
        }
    }
    let dead_reads = dead.await.expect("dead device task");
    println!(
        "healthy: {cycles} cycles, slowest {slowest:?}; dead: {} reads",
        dead_reads.len()
    );
    // The dead unit's every read timed out, at one request per cycle.
    assert!(!dead_reads.is_empty());
    for read in &dead_reads {
        assert_eq!(read, &vec![Err(DriverError::Timeout(timeout)); 3]);
    }
    let by_unit = peer.command("stats").await["by_unit"].clone();
    assert_eq!(by_unit["2"].as_u64(), Some(dead_reads.len() as u64));
    // A healthy cycle (3 requests) waited for at most one of the dead unit's requests.
    assert!(
        slowest < timeout + Duration::from_millis(300),
        "a healthy cycle took {slowest:?} with a {timeout:?} timeout"
    );
    assert!(cycles >= 8, "only {cycles} healthy cycles in {run_for:?}");
    // And the dead device recovers when its unit answers again.
    peer.command("unmute 2").await;
    let mut revived = connect(&driver, &dying_again).await;
    assert!(
        read_all(&mut revived, &dying_again)
            .await
            .iter()
            .all(Result::is_ok)
    );
}

#[tokio::test]
async fn a_missing_serial_port_is_a_transient_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = dir.path().join("ttyNone");
    let points = [(
        "level",
        PropertyType::Int,
        json!({"register": "holding", "offset": 0}),
    )];
    let err = ModbusDriver::new()
        .connect(&device("unplugged", rtu(&port, 1, 100), &points))
        .await
        .expect_err("no such port");
    // The USB adapter may be plugged in later: the runtime retries with backoff.
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("ttyNone"), "{err}");
}
