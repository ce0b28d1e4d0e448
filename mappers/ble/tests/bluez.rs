//! The driver against BlueZ's D-Bus API (python-dbusmock's bluez5 template with GATT, on a
//! private bus; see `support`): reads, writes with and without response, KubeEdge's
//! `dataConverter` and `dataWrite`, a device found by its advertised name, a device that
//! vanishes mid-read and returns, the cached GATT table, and an adapter's connection limit.

mod support;

use std::time::Duration;

use edgetwin_mapper_ble::config::{ProtocolConfig, VisitorConfig};
use edgetwin_mapper_ble::{BleDriver, BleSession, RadioOptions};
use edgetwin_sdk::{DeviceConfig, Driver, DriverError, Point, PropertyType, Session, Value};
use serde_json::{Value as Json, json};
use support::{BluezPeer, on_private_bus, run_on_private_bus};

const SENSOR: &str = "AA:BB:CC:DD:EE:01";
const SERVICE: &str = "0000181a-0000-1000-8000-00805f9b34fb";
/// Temperature, 0.01 °C, int16: 21.50 °C.
const TEMPERATURE: &str = "00002a6e-0000-1000-8000-00805f9b34fb";
/// A switch (CC2650's temperature enable).
const SWITCH: &str = "f000aa02-0451-4000-b000-000000000000";
/// A 16-bit level taking writes with and without response.
const LEVEL: &str = "f000aa66-0451-4000-b000-000000000000";
/// Indications only (cannot be read).
const EVENTS: &str = "00002a1c-0000-1000-8000-00805f9b34fb";

async fn sensor(peer: &mut BluezPeer, address: &str, name: &str) {
    peer.device(
        "hci0",
        address,
        name,
        SERVICE,
        &[
            (TEMPERATURE, &["read", "notify"], &[0x66, 0x08]),
            (SWITCH, &["read", "write"], &[0]),
            (LEVEL, &["read", "write", "write-without-response"], &[1, 0]),
            (EVENTS, &["indicate"], &[]),
        ],
    )
    .await;
}

fn device(
    name: &str,
    protocol: Json,
    points: &[(&str, PropertyType, Json)],
) -> DeviceConfig<ProtocolConfig, VisitorConfig> {
    edgetwin_sdk::testkit::device_config(name, protocol, points)
}

fn thermometer(protocol: Json) -> DeviceConfig<ProtocolConfig, VisitorConfig> {
    device(
        "thermo",
        protocol,
        &[
            (
                "raw",
                PropertyType::Int,
                json!({"characteristicUUID": "2a6e"}),
            ),
            (
                "celsius",
                PropertyType::Float,
                json!({"characteristicUUID": TEMPERATURE.replace('-', ""),
                       "dataConverter": {"startIndex": 1, "endIndex": 0,
                         "orderOfOperations": [{"operationType": "Divide", "operationValue": 100}]}}),
            ),
            (
                "enable",
                PropertyType::String,
                json!({"characteristicUUID": SWITCH, "dataWrite": {"ON": [1], "OFF": [0]}}),
            ),
            (
                "level",
                PropertyType::Int,
                json!({"characteristicUUID": LEVEL}),
            ),
            (
                "level-command",
                PropertyType::Int,
                json!({"characteristicUUID": LEVEL, "dataType": "uint16", "writeType": "command"}),
            ),
            (
                "missing",
                PropertyType::Int,
                json!({"characteristicUUID": "2a19"}),
            ),
            (
                "events",
                PropertyType::Float,
                json!({"characteristicUUID": EVENTS, "dataType": "medfloat32", "offset": 1}),
            ),
        ],
    )
}

async fn read_all(
    session: &mut BleSession,
    config: &DeviceConfig<ProtocolConfig, VisitorConfig>,
) -> Vec<Result<Value, DriverError>> {
    let points: Vec<&Point<VisitorConfig>> = config.points.iter().collect();
    session.read(&points).await
}

#[test]
fn reads_and_writes_by_address() {
    run_on_private_bus("inner_reads_and_writes_by_address");
}

#[tokio::test]
#[ignore = "run on a private bus by reads_and_writes_by_address"]
async fn inner_reads_and_writes_by_address() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer, SENSOR, "Thermo-1").await;
    let driver = BleDriver::default();
    let config = thermometer(json!({"macAddress": SENSOR.to_lowercase()}));
    driver.validate(&config).expect("valid");
    let mut session = driver.connect(&config).await.expect("connects");

    let values = read_all(&mut session, &config).await;
    assert_eq!(values[0], Ok(Value::Int(0x0866)));
    assert_eq!(values[1], Ok(Value::Float(21.5)));
    assert_eq!(values[2], Ok(Value::String("OFF".into())));
    assert_eq!(values[3], Ok(Value::Int(1)));
    assert_eq!(values[4], Ok(Value::Int(1)));
    let Err(DriverError::Rejected(missing)) = &values[5] else {
        panic!("missing: {:?}", values[5]);
    };
    assert!(
        missing.contains("00002a19-0000-1000-8000-00805f9b34fb is not on AA:BB:CC:DD:EE:01"),
        "{missing}"
    );
    assert!(missing.contains(SERVICE), "{missing}");
    let Err(DriverError::Rejected(unreadable)) = &values[6] else {
        panic!("events: {:?}", values[6]);
    };
    assert!(
        unreadable.contains("cannot be read (indicate)"),
        "{unreadable}"
    );
    // Two properties on one characteristic: one read each per batch.
    assert_eq!(peer.get(SENSOR, TEMPERATURE).await["reads"], 1);
    assert_eq!(peer.get(SENSOR, LEVEL).await["reads"], 1);

    // dataWrite, with response.
    session
        .write(&config.points[2], &Value::String("ON".into()))
        .await
        .expect("written");
    let switch = peer.get(SENSOR, SWITCH).await;
    assert_eq!(switch["value"], json!([1]));
    assert_eq!(
        switch["writes"],
        json!([{"value": [1], "type": "request", "offset": 0}])
    );
    let refused = session
        .write(&config.points[2], &Value::String("DIM".into()))
        .await
        .expect_err("not a key");
    assert!(
        matches!(&refused, DriverError::Rejected(m) if m.contains("\"DIM\" is not one of dataWrite's values (OFF=00, ON=01)")),
        "{refused:?}"
    );
    // A number without dataType takes the characteristic's width (2 bytes, read above).
    session
        .write(&config.points[3], &Value::Int(300))
        .await
        .expect("written");
    // Without response.
    session
        .write(&config.points[4], &Value::Int(0x0102))
        .await
        .expect("written");
    let level = peer.get(SENSOR, LEVEL).await;
    assert_eq!(
        level["writes"],
        json!([{"value": [0x2c, 0x01], "type": "request", "offset": 0},
               {"value": [0x02, 0x01], "type": "command", "offset": 0}])
    );
    let values = read_all(&mut session, &config).await;
    assert_eq!(values[2], Ok(Value::String("ON".into())));
    assert_eq!(values[3], Ok(Value::Int(0x0102)));
    let out_of_range = session
        .write(&config.points[4], &Value::Int(70_000))
        .await
        .expect_err("too big");
    assert!(
        matches!(&out_of_range, DriverError::Rejected(m) if m.contains("70000 does not fit uint16")),
        "{out_of_range:?}"
    );

    session.health().await.expect("connected");
    session.disconnect().await;
    let stats = peer.stats(SENSOR).await;
    assert_eq!(
        (stats["connects"].as_u64(), stats["connected"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(driver.radio().in_use("hci0"), 0, "the slot is given back");
    peer.kill().await;
}

#[test]
fn a_device_is_found_by_its_advertised_name() {
    run_on_private_bus("inner_a_device_is_found_by_its_advertised_name");
}

#[tokio::test]
#[ignore = "run on a private bus by a_device_is_found_by_its_advertised_name"]
async fn inner_a_device_is_found_by_its_advertised_name() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer, "AA:BB:CC:DD:EE:02", "Other").await;
    sensor(&mut peer, SENSOR, "Thermo-7").await;
    let driver = BleDriver::default();
    let config = thermometer(json!({"name": "Thermo-7"}));
    let mut session = driver.connect(&config).await.expect("found by name");
    assert_eq!(
        read_all(&mut session, &config).await[1],
        Ok(Value::Float(21.5))
    );
    assert_eq!(peer.stats(SENSOR).await["connects"], 1);
    assert_eq!(peer.stats("AA:BB:CC:DD:EE:02").await["connects"], 0);
    session.disconnect().await;

    // A name nobody advertises: the scan ends at connectTimeout with a reason.
    let config = thermometer(json!({"name": "Nobody", "connectTimeout": 400}));
    let err = driver.connect(&config).await.expect_err("not found");
    assert!(
        matches!(&err, DriverError::Io(m) if m == "\"Nobody\" was not found on hci0 (out of range, off, or not advertising)"),
        "{err:?}"
    );
    // An adapter that does not exist.
    let config = thermometer(json!({"macAddress": SENSOR, "adapter": "hci9"}));
    let err = driver.connect(&config).await.expect_err("no adapter");
    assert!(
        matches!(&err, DriverError::Io(m) if m == "no Bluetooth adapter hci9 (BlueZ has: hci0)"),
        "{err:?}"
    );
    peer.kill().await;
}

#[test]
fn a_device_that_vanishes_mid_read_fails_until_it_returns() {
    run_on_private_bus("inner_a_device_that_vanishes_mid_read_fails_until_it_returns");
}

#[tokio::test]
#[ignore = "run on a private bus by a_device_that_vanishes_mid_read_fails_until_it_returns"]
async fn inner_a_device_that_vanishes_mid_read_fails_until_it_returns() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    sensor(&mut peer, SENSOR, "Thermo-1").await;
    let driver = BleDriver::default();
    let config = thermometer(json!({"macAddress": SENSOR, "connectTimeout": 1000}));
    let mut session = driver.connect(&config).await.expect("connects");
    assert_eq!(
        read_all(&mut session, &config).await[0],
        Ok(Value::Int(0x0866))
    );

    peer.vanish(SENSOR, 200).await;
    let values = read_all(&mut session, &config).await;
    let Err(DriverError::Disconnected(reason)) = &values[0] else {
        panic!("a lost link: {:?}", values[0]);
    };
    assert!(
        reason.starts_with("AA:BB:CC:DD:EE:01: reading 00002a6e-0000-1000-8000-00805f9b34fb:"),
        "{reason}"
    );
    assert!(reason.contains("Not connected"), "{reason}");
    // BlueZ reports the link down; the session says so.
    let health = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match session.health().await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => return err,
            }
        }
    })
    .await
    .expect("the link loss is seen");
    assert_eq!(
        health,
        DriverError::Disconnected("AA:BB:CC:DD:EE:01 is no longer connected".into())
    );
    session.disconnect().await;

    let err = driver.connect(&config).await.expect_err("out of range");
    assert!(
        matches!(&err, DriverError::Io(m) if m.contains("le-connection-abort-by-local")),
        "{err:?}"
    );
    assert_eq!(
        driver.radio().in_use("hci0"),
        0,
        "a failed connect keeps no slot"
    );

    peer.come_back(SENSOR).await;
    peer.set(SENSOR, TEMPERATURE, &[0x70, 0x08]).await;
    let mut session = driver.connect(&config).await.expect("back in range");
    assert_eq!(
        read_all(&mut session, &config).await[1],
        Ok(Value::Float(21.6))
    );
    // The GATT table found at the first connect still matched: no second discovery.
    assert_eq!(driver.radio().discoveries(), 1);
    session.disconnect().await;
    peer.kill().await;
}

#[test]
fn an_adapter_connects_at_most_max_connections_and_the_rest_wait_in_turn() {
    run_on_private_bus(
        "inner_an_adapter_connects_at_most_max_connections_and_the_rest_wait_in_turn",
    );
}

#[tokio::test]
#[ignore = "run on a private bus by an_adapter_connects_at_most_max_connections_and_the_rest_wait_in_turn"]
async fn inner_an_adapter_connects_at_most_max_connections_and_the_rest_wait_in_turn() {
    if !on_private_bus() {
        return;
    }
    let mut peer = BluezPeer::start().await;
    let addresses = [
        "AA:BB:CC:DD:EE:01",
        "AA:BB:CC:DD:EE:02",
        "AA:BB:CC:DD:EE:03",
        "AA:BB:CC:DD:EE:04",
    ];
    for (i, address) in addresses.iter().enumerate() {
        sensor(&mut peer, address, &format!("Thermo-{i}")).await;
    }
    let driver = std::sync::Arc::new(BleDriver::new(RadioOptions {
        default_adapter: Some("hci0".into()),
        max_connections: 2,
    }));
    let config = |address: &str, timeout: u64| {
        thermometer(json!({"macAddress": address, "connectTimeout": timeout}))
    };
    let first = driver
        .connect(&config(addresses[0], 2000))
        .await
        .expect("slot 1");
    let second = driver
        .connect(&config(addresses[1], 2000))
        .await
        .expect("slot 2");
    assert_eq!(driver.radio().in_use("hci0"), 2);

    // Full: a device that cannot wait long says why.
    let err = driver
        .connect(&config(addresses[2], 200))
        .await
        .expect_err("no slot");
    assert_eq!(
        err,
        DriverError::Io(
            "no free connection slot on hci0: all 2 are in use (--max-connections)".into()
        )
    );

    // Two devices queue; they get the slots in the order they asked.
    let waiting = |address: &'static str| {
        let driver = std::sync::Arc::clone(&driver);
        let config = config(address, 10_000);
        tokio::spawn(async move { driver.connect(&config).await })
    };
    let third = waiting(addresses[2]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fourth = waiting(addresses[3]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished() && !fourth.is_finished(),
        "both wait for a slot"
    );
    assert_eq!(peer.stats(addresses[2]).await["connects"], 0);

    first.disconnect().await;
    let third = third
        .await
        .expect("joined")
        .expect("the first in line connects");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!fourth.is_finished(), "the second in line still waits");
    second.disconnect().await;
    let fourth = fourth.await.expect("joined").expect("then the next");
    assert_eq!(
        peer.stats(addresses[3]).await["max_connected"],
        2,
        "never more than 2 at once"
    );
    third.disconnect().await;
    fourth.disconnect().await;
    assert_eq!(driver.radio().in_use("hci0"), 0);
    peer.kill().await;
}
