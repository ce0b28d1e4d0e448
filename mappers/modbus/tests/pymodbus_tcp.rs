//! The driver against pymodbus over Modbus TCP: every data type and byte order written and read,
//! checked against register images computed here from Rust's own byte conversions; coalescing
//! counted at the server; exceptions; reconnecting after the server restarts.

mod support;

use std::time::Duration;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_sdk::{Driver, DriverError, Session};
use edgetwin_sdk::{PropertyType, Value};
use serde_json::json;
use support::{Peer, adjacent_registers, connect, device, pymodbus_python, read_all};

/// The registers a device holds a big-endian byte string in, for each order, by the textbook:
/// ABCD as is, BADC bytes swapped in each register, CDAB registers reversed, DCBA little-endian.
fn image(big_endian: &[u8], little_endian: &[u8], order: &str) -> Vec<u16> {
    let words = |bytes: &[u8]| -> Vec<u16> {
        bytes
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect()
    };
    match order {
        "ABCD" => words(big_endian),
        "BADC" => words(big_endian).into_iter().map(u16::swap_bytes).collect(),
        "CDAB" => words(big_endian).into_iter().rev().collect(),
        "DCBA" => words(little_endian),
        other => panic!("no order {other}"),
    }
}

/// A value of one data type, with its bytes as Rust lays them out.
struct Sample {
    data_type: &'static str,
    ty: PropertyType,
    value: Value,
    big_endian: Vec<u8>,
    little_endian: Vec<u8>,
}

/// `sample!("int16", Int, -12345i16)`: the property value and the Rust value's bytes.
macro_rules! sample {
    ($data_type:literal, $ty:ident, $rust:expr, $value:expr) => {
        Sample {
            data_type: $data_type,
            ty: PropertyType::$ty,
            value: $value,
            big_endian: $rust.to_be_bytes().to_vec(),
            little_endian: $rust.to_le_bytes().to_vec(),
        }
    };
}

fn samples() -> Vec<Sample> {
    vec![
        sample!("int16", Int, -12345i16, Value::Int(-12345)),
        sample!("uint16", Int, 54321u16, Value::Int(54321)),
        sample!("int32", Int, -2_000_000_000i32, Value::Int(-2_000_000_000)),
        sample!("uint32", Int, 4_000_000_000u32, Value::Int(4_000_000_000)),
        sample!("int64", Int, i64::MIN + 1, Value::Int(i64::MIN + 1)),
        sample!(
            "uint64",
            Int,
            9_000_000_000_000_000_001u64,
            Value::Int(9_000_000_000_000_000_001)
        ),
        sample!("float32", Float, -21.5f32, Value::Float(-21.5)),
        sample!("float64", Double, 1.0e300f64, Value::Float(1.0e300)),
    ]
}

/// Other values of the same types, for the read direction.
fn other_samples() -> Vec<Sample> {
    vec![
        sample!("int16", Int, 321i16, Value::Int(321)),
        sample!("uint16", Int, 7u16, Value::Int(7)),
        sample!("int32", Int, 123_456_789i32, Value::Int(123_456_789)),
        sample!("uint32", Int, 17u32, Value::Int(17)),
        sample!("int64", Int, i64::MIN, Value::Int(i64::MIN)),
        sample!("uint64", Int, i64::MAX as u64, Value::Int(i64::MAX)),
        sample!("float32", Float, 0.1f32, Value::Float(0.1)),
        sample!("float64", Double, -0.1f64, Value::Float(-0.1)),
    ]
}

const ORDERS: [&str; 4] = ["ABCD", "BADC", "CDAB", "DCBA"];

#[tokio::test]
async fn every_data_type_and_byte_order_is_written_and_read() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let mut peer = Peer::pymodbus_tcp(&python, "1").await;
    let port = peer.addr().port();
    let mut points = Vec::new();
    let mut layout = Vec::new();
    let mut address = 0u16;
    for order in ORDERS {
        for sample in samples() {
            points.push((
                format!("{}_{order}", sample.data_type),
                sample.ty,
                json!({"register": "HoldingRegister", "offset": address,
                       "dataType": sample.data_type, "byteOrder": order}),
            ));
            let image = image(&sample.big_endian, &sample.little_endian, order);
            layout.push((address, sample.value, image));
            address += 4;
        }
    }
    let config = device("types", json!({"ip": "127.0.0.1", "port": port}), &points);
    let mut session = connect(&ModbusDriver::new(), &config).await;

    // Written by us, read back by pymodbus: the exact register image.
    for (point, (address, value, image)) in config.points.iter().zip(&layout) {
        session.write(point, value).await.expect("written");
        let stored = peer.get(1, "holding", *address, image.len() as u16).await;
        assert_eq!(&stored, image, "{} at {address}", point.property);
    }
    // Written by pymodbus (images of other values), read by us.
    let mut expected = Vec::new();
    for (point, (address, _, _)) in config.points.iter().zip(&layout) {
        let (data_type, order) = point.property.split_once('_').expect("name");
        let other = other_samples()
            .into_iter()
            .find(|s| s.data_type == data_type)
            .expect("a sample of each type");
        peer.set(
            1,
            "holding",
            *address,
            &image(&other.big_endian, &other.little_endian, order),
        )
        .await;
        expected.push(Ok(other.value));
    }
    assert_eq!(read_all(&mut session, &config).await, expected);
}

#[tokio::test]
async fn strings_bits_coils_and_read_only_tables() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let mut peer = Peer::pymodbus_tcp(&python, "1").await;
    let port = peer.addr().port();
    let config = device(
        "mixed",
        json!({"ip": "127.0.0.1", "port": port.to_string(), "slaveID": 1}),
        &[
            (
                "name",
                PropertyType::String,
                json!({"register": "holding", "offset": 100, "dataType": "string", "limit": 4}),
            ),
            (
                "name_badc",
                PropertyType::String,
                json!({"register": "holding", "offset": 104, "dataType": "string", "limit": 2, "isSwap": true}),
            ),
            (
                "alarm",
                PropertyType::Boolean,
                json!({"register": "holding", "offset": 110, "dataType": "bit", "bit": 3}),
            ),
            (
                "pump",
                PropertyType::Boolean,
                json!({"register": "CoilRegister", "offset": 5}),
            ),
            (
                "valves",
                PropertyType::Int,
                json!({"register": "CoilRegister", "offset": 16, "limit": 12}),
            ),
            (
                "door",
                PropertyType::Boolean,
                json!({"register": "DiscreteInputRegister", "offset": 2}),
            ),
            (
                "flow",
                PropertyType::Float,
                json!({"register": "InputRegister", "offset": 10, "dataType": "float32", "isRegisterSwap": true}),
            ),
        ],
    );
    peer.set(1, "holding", 110, &[0x8001]).await;
    peer.set(1, "discrete", 2, &[1]).await;
    // 12.25f32 = 0x41440000, word-swapped.
    peer.set(1, "input", 10, &[0x0000, 0x4144]).await;
    let mut session = connect(&ModbusDriver::new(), &config).await;
    let p = |i: usize| &config.points[i];
    session
        .write(p(0), &Value::String("edge01".into()))
        .await
        .expect("string");
    session
        .write(p(1), &Value::String("ab".into()))
        .await
        .expect("swapped string");
    session
        .write(p(2), &Value::Boolean(true))
        .await
        .expect("bit");
    session
        .write(p(3), &Value::Boolean(true))
        .await
        .expect("coil");
    session
        .write(p(4), &Value::Int(0b1000_0000_0011))
        .await
        .expect("coils");
    assert_eq!(
        peer.get(1, "holding", 100, 4).await,
        [0x6564, 0x6765, 0x3031, 0]
    );
    assert_eq!(peer.get(1, "holding", 104, 2).await, [0x6261, 0]);
    assert_eq!(peer.get(1, "holding", 110, 1).await, [0x8009]);
    assert_eq!(peer.get(1, "coils", 5, 1).await, [1]);
    assert_eq!(
        peer.get(1, "coils", 16, 12).await,
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!(
        read_all(&mut session, &config).await,
        vec![
            Ok(Value::String("edge01".into())),
            Ok(Value::String("ab".into())),
            Ok(Value::Boolean(true)),
            Ok(Value::Boolean(true)),
            Ok(Value::Int(0b1000_0000_0011)),
            Ok(Value::Boolean(true)),
            Ok(Value::Float(12.25)),
        ]
    );
    // Clearing the bit keeps the register's other bits.
    session
        .write(p(2), &Value::Boolean(false))
        .await
        .expect("bit");
    assert_eq!(peer.get(1, "holding", 110, 1).await, [0x8001]);
    assert!(matches!(
        session.write(p(5), &Value::Boolean(false)).await,
        Err(DriverError::Unsupported(_))
    ));
}

#[tokio::test]
async fn one_hundred_adjacent_registers_are_one_request_at_the_server() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let mut peer = Peer::pymodbus_tcp(&python, "1").await;
    let port = peer.addr().port();
    let config = device(
        "hundred",
        json!({"ip": "127.0.0.1", "port": port}),
        &adjacent_registers(100),
    );
    let values: Vec<u16> = (0..100).map(|i| 500 + i).collect();
    peer.set(1, "holding", 0, &values).await;
    let mut session = connect(&ModbusDriver::new(), &config).await;
    peer.command("reset").await;
    for _cycle in 0..5 {
        let read = read_all(&mut session, &config).await;
        assert_eq!(read[0], Ok(Value::Int(500)));
        assert_eq!(read[99], Ok(Value::Int(599)));
        assert!(read.iter().all(Result::is_ok));
    }
    assert_eq!(peer.requests().await, 5, "one request per cycle");
    assert_eq!(
        peer.requests_by_function().await,
        [("3".to_owned(), 5)].into()
    );
}

#[tokio::test]
async fn exceptions_from_pymodbus_name_the_exception_and_the_request() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let peer = Peer::pymodbus_tcp(&python, "1").await;
    let config = device(
        "beyond",
        json!({"ip": "127.0.0.1", "port": peer.addr().port()}),
        &[
            (
                "inside",
                PropertyType::Int,
                json!({"register": "input", "offset": 1999}),
            ),
            (
                "outside",
                PropertyType::Int,
                json!({"register": "input", "offset": 2000}),
            ),
        ],
    );
    let mut session = connect(&ModbusDriver::new(), &config).await;
    let read = read_all(&mut session, &config).await;
    assert_eq!(read[0], Ok(Value::Int(0)));
    assert_eq!(
        read[1],
        Err(DriverError::Rejected(
            "Modbus exception 0x02 (illegal data address: the device has no such register or \
             coil) from unit 1 for read input registers 2000..2001"
                .into()
        ))
    );
}

#[tokio::test]
async fn the_session_reconnects_after_the_server_restarts() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let mut peer = Peer::pymodbus_tcp(&python, "1").await;
    let port = peer.addr().port();
    peer.set(1, "holding", 0, &[42]).await;
    let config = device(
        "restart",
        json!({"ip": "127.0.0.1", "port": port, "timeout": 500}),
        &[(
            "level",
            PropertyType::Int,
            json!({"register": "holding", "offset": 0}),
        )],
    );
    let mut session = connect(&ModbusDriver::new(), &config).await;
    assert_eq!(
        read_all(&mut session, &config).await,
        vec![Ok(Value::Int(42))]
    );
    peer.kill().await;
    let down = read_all(&mut session, &config).await;
    assert!(
        down[0].as_ref().is_err_and(DriverError::is_transient),
        "{down:?}"
    );
    let mut peer = Peer::pymodbus_tcp_on(&python, port, "1").await;
    peer.set(1, "holding", 0, &[43]).await;
    // The same session, no reconnect by the caller: the link reopens by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = read_all(&mut session, &config).await;
        if read == vec![Ok(Value::Int(43))] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still failing: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_unit_pymodbus_does_not_serve_fails_to_connect_with_a_timeout() {
    let Some(python) = pymodbus_python() else {
        return;
    };
    let peer = Peer::pymodbus_tcp(&python, "1").await;
    let config = device(
        "ghost",
        json!({"ip": "127.0.0.1", "port": peer.addr().port(), "slaveID": 2, "timeout": 300}),
        &[(
            "level",
            PropertyType::Int,
            json!({"register": "holding", "offset": 0}),
        )],
    );
    let err = ModbusDriver::new()
        .connect(&config)
        .await
        .expect_err("unit 2 is silent");
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "I/O error: unit 2 on tcp://127.0.0.1:{} did not answer within 300ms (read holding \
             registers 0..1)",
            peer.addr().port()
        )
    );
}
