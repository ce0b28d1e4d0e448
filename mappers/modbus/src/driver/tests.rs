//! The driver against our simulator over real TCP on loopback.

use std::time::Duration;

use edgetwin_sdk::PropertyType;
use edgetwin_sdk::model::value::Limits;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::sim::{SimConfig, Simulator, serve_tcp};
use crate::table::Table;

struct Server {
    sim: Simulator,
    port: u16,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(config: SimConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sim = Simulator::new(&config).expect("valid sim");
    let task = tokio::spawn(serve_tcp(listener, sim.clone()));
    Server { sim, port, task }
}

async fn uniform_server() -> Server {
    server(SimConfig::uniform([1], 1000)).await
}

fn device(port: u16, extra: Json, points: &[(impl AsRef<str>, PropertyType, Json)]) -> Config {
    let mut protocol = json!({"ip": "127.0.0.1", "port": port, "timeout": 300});
    if let (Some(base), Some(extra)) = (protocol.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    DeviceConfig {
        id: DeviceId::new("default", "plc"),
        protocol: serde_json::from_value(protocol).expect("protocol parses"),
        points: points
            .iter()
            .enumerate()
            .map(|(i, (name, ty, visitor))| Point {
                id: PointId(i),
                property: name.as_ref().to_owned(),
                ty: *ty,
                writable: true,
                limits: Default::default(),
                visitor: serde_json::from_value(visitor.clone()).expect("visitor parses"),
            })
            .collect(),
    }
}

async fn connect(config: &Config) -> ModbusSession {
    let driver = ModbusDriver::new();
    driver.validate(config).expect("valid config");
    driver.connect(config).await.expect("connects")
}

async fn read_all(session: &mut ModbusSession, config: &Config) -> Vec<Result<Value, DriverError>> {
    let points: Vec<&Point<VisitorConfig>> = config.points.iter().collect();
    session.read(&points).await
}

#[tokio::test]
async fn every_data_type_and_order_round_trips_through_the_device() {
    let server = uniform_server().await;
    let orders = ["ABCD", "BADC", "CDAB", "DCBA"];
    let types = [
        ("int16", PropertyType::Int, Value::Int(-12345)),
        ("uint16", PropertyType::Int, Value::Int(54321)),
        ("int32", PropertyType::Int, Value::Int(-2_000_000_000)),
        ("uint32", PropertyType::Int, Value::Int(4_000_000_000)),
        (
            "int64",
            PropertyType::Int,
            Value::Int(-9_000_000_000_000_000_000),
        ),
        (
            "uint64",
            PropertyType::Int,
            Value::Int(9_000_000_000_000_000_000),
        ),
        ("float32", PropertyType::Float, Value::Float(-21.5)),
        ("float64", PropertyType::Double, Value::Float(1.0e300)),
    ];
    let mut points = Vec::new();
    let mut address = 0;
    for order in orders {
        for (data_type, ty, _) in &types {
            points.push((
                format!("{data_type}-{order}"),
                *ty,
                json!({"register": "HoldingRegister", "offset": address, "dataType": data_type,
                       "byteOrder": order}),
            ));
            address += 4;
        }
    }
    points.push((
        "name".into(),
        PropertyType::String,
        json!({"register": "holding", "offset": address, "dataType": "string", "limit": 5}),
    ));
    let config = device(server.port, json!({}), &points);
    let mut session = connect(&config).await;
    for (i, point) in config.points.iter().enumerate() {
        let value = if point.ty == PropertyType::String {
            Value::String("pump-7".into())
        } else {
            types[i % types.len()].2.clone()
        };
        session.write(point, &value).await.expect("written");
    }
    server.sim.reset_stats();
    let values = read_all(&mut session, &config).await;
    for (i, (point, value)) in config.points.iter().zip(values).enumerate() {
        let expected = if point.ty == PropertyType::String {
            Value::String("pump-7".into())
        } else {
            types[i % types.len()].2.clone()
        };
        assert_eq!(value, Ok(expected), "{}", point.property);
    }
    // 32 numbers and a string over 133 registers: two requests.
    assert_eq!(server.sim.stats().requests, 2);
    // The register image of one value, as the device holds it: -21.5f32 = 0xC1AC0000, CDAB.
    let float_cdab = 2 * 32 + 6 * 4;
    assert_eq!(
        server.sim.get(1, Table::HoldingRegisters, float_cdab, 2),
        Ok(vec![0x0000, 0xC1AC])
    );
}

#[tokio::test]
async fn one_hundred_adjacent_registers_are_read_with_one_request() {
    let server = uniform_server().await;
    let points: Vec<(String, PropertyType, Json)> = (0..100)
        .map(|i| {
            (
                format!("r{i}"),
                PropertyType::Int,
                json!({"register": "HoldingRegister", "offset": i, "limit": 1}),
            )
        })
        .collect();
    let config = device(server.port, json!({}), &points);
    let words: Vec<u16> = (0..100).map(|i| 1000 + i).collect();
    server
        .sim
        .set(1, Table::HoldingRegisters, 0, &words)
        .expect("set");
    let mut session = connect(&config).await;
    server.sim.reset_stats();
    for _cycle in 0..3 {
        let values = read_all(&mut session, &config).await;
        let expected: Vec<Result<Value, DriverError>> =
            (0..100).map(|i| Ok(Value::Int(1000 + i))).collect();
        assert_eq!(values, expected);
    }
    assert_eq!(server.sim.stats().requests, 3, "one request per cycle");
}

#[tokio::test]
async fn coils_discrete_inputs_and_bits_of_registers() {
    let server = uniform_server().await;
    let config = device(
        server.port,
        json!({}),
        &[
            (
                "switch",
                PropertyType::Boolean,
                json!({"register": "CoilRegister", "offset": 3}),
            ),
            (
                "mask",
                PropertyType::Int,
                json!({"register": "coil", "offset": 8, "limit": 10}),
            ),
            (
                "door",
                PropertyType::Boolean,
                json!({"register": "DiscreteInputRegister", "offset": 1}),
            ),
            (
                "alarm",
                PropertyType::Boolean,
                json!({"register": "holding", "offset": 20, "dataType": "bit", "bit": 9}),
            ),
            (
                "level",
                PropertyType::Int,
                json!({"register": "InputRegister", "offset": 7, "dataType": "int16"}),
            ),
        ],
    );
    server
        .sim
        .set(1, Table::DiscreteInputs, 1, &[1])
        .expect("set");
    server
        .sim
        .set(1, Table::HoldingRegisters, 20, &[0x00F0])
        .expect("set");
    server
        .sim
        .set(1, Table::InputRegisters, 7, &[0xFFFE])
        .expect("set");
    let mut session = connect(&config).await;
    let p = |i: usize| &config.points[i];

    session
        .write(p(0), &Value::Boolean(true))
        .await
        .expect("single coil");
    session
        .write(p(1), &Value::Int(0b10_0000_0101))
        .await
        .expect("multiple coils");
    session
        .write(p(3), &Value::Boolean(true))
        .await
        .expect("register bit");
    assert_eq!(
        server.sim.get(1, Table::Coils, 8, 10),
        Ok(vec![1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    );
    // Bit 9 set, the other bits of the register untouched.
    assert_eq!(
        server.sim.get(1, Table::HoldingRegisters, 20, 1),
        Ok(vec![0x02F0])
    );
    let values = read_all(&mut session, &config).await;
    assert_eq!(
        values,
        vec![
            Ok(Value::Boolean(true)),
            Ok(Value::Int(0b10_0000_0101)),
            Ok(Value::Boolean(true)),
            Ok(Value::Boolean(true)),
            Ok(Value::Int(-2)),
        ]
    );
    let read_only = session
        .write(p(2), &Value::Boolean(false))
        .await
        .expect_err("discrete inputs are read-only");
    assert!(
        matches!(read_only, DriverError::Unsupported(_)),
        "{read_only}"
    );
    let read_only = session
        .write(p(4), &Value::Int(1))
        .await
        .expect_err("input registers are read-only");
    assert!(
        read_only
            .to_string()
            .contains("input registers are read-only"),
        "{read_only}"
    );
}

#[tokio::test]
async fn the_kubeedge_temperature_sample_reads_scaled_and_writes_back() {
    let server = uniform_server().await;
    let config = device(
        server.port,
        json!({"communicateMode": "TCP", "port": server.port.to_string(), "slaveID": 1}),
        &[
            (
                "temperature",
                PropertyType::Float,
                json!({"dataType": "float", "register": "HoldingRegister", "offset": 0, "limit": 1,
                    "scale": 0.1, "isSwap": false, "isRegisterSwap": false, "max": 100.0, "min": 1.0}),
            ),
            (
                "temperature-switch",
                PropertyType::Int,
                json!({"dataType": "int", "register": "CoilRegister", "offset": 0, "limit": 1,
                    "scale": 1, "isSwap": false, "isRegisterSwap": false}),
            ),
        ],
    );
    server
        .sim
        .set(1, Table::HoldingRegisters, 0, &[235])
        .expect("set");
    let mut session = connect(&config).await;
    assert_eq!(
        read_all(&mut session, &config).await,
        vec![Ok(Value::Float(23.5)), Ok(Value::Int(0))]
    );
    session
        .write(&config.points[0], &Value::Float(19.5))
        .await
        .expect("written");
    session
        .write(&config.points[1], &Value::Int(1))
        .await
        .expect("written");
    assert_eq!(
        server.sim.get(1, Table::HoldingRegisters, 0, 1),
        Ok(vec![195])
    );
    assert_eq!(server.sim.get(1, Table::Coils, 0, 1), Ok(vec![1]));
    let refused = session
        .write(&config.points[1], &Value::Int(2))
        .await
        .expect_err("a coil is 0 or 1");
    assert!(matches!(refused, DriverError::Rejected(_)), "{refused}");
}

#[tokio::test]
async fn exceptions_fail_only_their_property_and_merged_reads_split() {
    // Registers 0..10 and 20..30 exist; 10..20 is a hole the device does not map.
    let config_text = "units:\n  - unit: 1\n    holdingRegisters: { size: 10 }\n";
    let mut sim_config = SimConfig::parse(config_text).expect("parses");
    sim_config.units[0].input_registers.size = 30;
    let server = server(sim_config).await;
    let config = device(
        server.port,
        json!({"maxGap": 16}),
        &[
            (
                "a",
                PropertyType::Int,
                json!({"register": "holding", "offset": 0}),
            ),
            (
                "b",
                PropertyType::Int,
                json!({"register": "holding", "offset": 9}),
            ),
            (
                "missing",
                PropertyType::Int,
                json!({"register": "holding", "offset": 12}),
            ),
            (
                "c",
                PropertyType::Int,
                json!({"register": "input", "offset": 5}),
            ),
        ],
    );
    let mut session = connect(&config).await;
    server.sim.reset_stats();
    let values = read_all(&mut session, &config).await;
    assert_eq!(values[0], Ok(Value::Int(0)));
    assert_eq!(values[1], Ok(Value::Int(0)));
    assert_eq!(values[3], Ok(Value::Int(0)));
    let Err(DriverError::Rejected(message)) = &values[2] else {
        panic!("an exception: {:?}", values[2])
    };
    assert_eq!(
        message,
        "Modbus exception 0x02 (illegal data address: the device has no such register or coil) \
         from unit 1 for read holding registers 12..13"
    );
    // Merged holding read (refused) + three single reads + the input read.
    assert_eq!(server.sim.stats().requests, 5);
    server.sim.reset_stats();
    let again = read_all(&mut session, &config).await;
    assert_eq!(again, values);
    // From then on: three single holding reads + the input read.
    assert_eq!(server.sim.stats().requests, 4);
}

#[tokio::test]
async fn a_silent_unit_fails_to_connect_and_costs_one_timeout_per_cycle() {
    let server = uniform_server().await;
    let config = device(
        server.port,
        json!({"timeout": 200}),
        &[
            (
                "a",
                PropertyType::Int,
                json!({"register": "holding", "offset": 0}),
            ),
            (
                "b",
                PropertyType::Boolean,
                json!({"register": "coil", "offset": 0}),
            ),
            (
                "c",
                PropertyType::Int,
                json!({"register": "input", "offset": 0}),
            ),
        ],
    );
    let mut session = connect(&config).await;
    server.sim.mute(1, true);
    server.sim.reset_stats();
    let started = tokio::time::Instant::now();
    let values = read_all(&mut session, &config).await;
    assert!(
        values
            .iter()
            .all(|v| *v == Err(DriverError::Timeout(Duration::from_millis(200)))),
        "{values:?}"
    );
    assert_eq!(
        server.sim.stats().requests,
        1,
        "the cycle stops at the first timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let driver = ModbusDriver::new();
    let err = driver
        .connect(&config)
        .await
        .expect_err("the probe times out");
    assert_eq!(
        err,
        DriverError::Io(format!(
            "unit 1 on tcp://127.0.0.1:{} did not answer within 200ms (read holding registers \
             0..1)",
            server.port
        ))
    );
    server.sim.mute(1, false);
    assert!(driver.connect(&config).await.is_ok());
}

#[tokio::test]
async fn retries_cover_a_dropped_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sim = Simulator::new(&SimConfig::uniform([1], 10)).expect("sim");
    let task = tokio::spawn(serve_tcp(listener, sim.clone()));
    let config = device(
        port,
        json!({"retries": 1}),
        &[(
            "a",
            PropertyType::Int,
            json!({"register": "holding", "offset": 0}),
        )],
    );
    let mut session = connect(&config).await;
    // Restart the server: the session's connection is dead, the retry reconnects.
    task.abort();
    let _ = task.await;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    let task = tokio::spawn(serve_tcp(listener, sim));
    assert_eq!(
        read_all(&mut session, &config).await,
        vec![Ok(Value::Int(0))]
    );
    assert_eq!(
        session.requests_sent(),
        3,
        "probe, failed read, retried read"
    );
    task.abort();
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let config = device(
        port,
        json!({}),
        &[(
            "a",
            PropertyType::Int,
            json!({"register": "holding", "offset": 0}),
        )],
    );
    let err = ModbusDriver::new()
        .connect(&config)
        .await
        .expect_err("nobody listens");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains(&format!("tcp://127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn configuration_errors_name_the_property_and_the_field() {
    let config = device(
        502,
        json!({}),
        &[(
            "level",
            PropertyType::Int,
            json!({"register": "holding", "offset": 0, "limit": 3}),
        )],
    );
    let err = ModbusDriver::new().validate(&config).expect_err("invalid");
    assert_eq!(
        err,
        DriverError::Config(
            "property level: visitors.configData.limit: 3: int spans 1, 2, 4 registers".into()
        )
    );
    let config = device(502, json!({"ip": ""}), &[] as &[(&str, PropertyType, Json)]);
    let err = ModbusDriver::new().validate(&config).expect_err("invalid");
    assert_eq!(
        err,
        DriverError::Config(
            "protocol.configData.ip: missing: Modbus TCP needs the device's address".into()
        )
    );
}

#[tokio::test]
async fn values_out_of_range_are_rejected_before_anything_is_sent() {
    let server = uniform_server().await;
    let config = device(
        server.port,
        json!({}),
        &[
            (
                "small",
                PropertyType::Int,
                json!({"register": "holding", "offset": 0, "dataType": "uint16"}),
            ),
            (
                "text",
                PropertyType::String,
                json!({"register": "holding", "offset": 1, "dataType": "string", "limit": 2}),
            ),
        ],
    );
    let mut session = connect(&config).await;
    server.sim.reset_stats();
    let err = session
        .write(&config.points[0], &Value::Int(70_000))
        .await
        .expect_err("too big");
    assert_eq!(
        err,
        DriverError::Rejected(
            "small: cannot write 70000: the value 70000 does not fit uint16 (0..=65535)".into()
        )
    );
    let err = session
        .write(&config.points[1], &Value::String("too long".into()))
        .await
        .expect_err("too long");
    assert!(
        err.to_string()
            .contains("8 bytes do not fit 2 registers (4 bytes)"),
        "{err}"
    );
    assert_eq!(server.sim.stats().requests, 0);
}

/// KubeEdge's `int` over one register whose DeviceModel allows negative values
/// (`minimum: "-500"`) is two's complement: `-123` is written as 0xFF85 and read back as
/// `-123`; without a negative minimum the same register stays unsigned.
#[tokio::test]
async fn a_model_with_a_negative_minimum_makes_kubeedge_int_signed() {
    let server = uniform_server().await;
    let visitor = |offset: u16| json!({"register": "holding", "offset": offset, "dataType": "int", "limit": 1});
    let mut config = device(
        server.port,
        json!({}),
        &[
            ("setpoint", PropertyType::Int, visitor(0)),
            ("counter", PropertyType::Int, visitor(1)),
            (
                "wide",
                PropertyType::Int,
                json!({"register": "holding", "offset": 2, "dataType": "int", "limit": 2}),
            ),
        ],
    );
    let signed = Limits::parse(PropertyType::Int, Some("-500"), Some("500")).expect("limits");
    config.points[0].limits = signed.clone();
    config.points[2].limits = signed;
    config.points[1].limits = Limits::parse(PropertyType::Int, Some("0"), None).expect("limits");
    let mut session = connect(&config).await;

    session
        .write(&config.points[0], &Value::Int(-123))
        .await
        .expect("-123 fits a signed register");
    assert_eq!(
        server
            .sim
            .get(1, Table::HoldingRegisters, 0, 1)
            .expect("get"),
        vec![0xFF85]
    );
    session
        .write(&config.points[2], &Value::Int(-2))
        .await
        .expect("-2 fits two signed registers");
    assert_eq!(
        server
            .sim
            .get(1, Table::HoldingRegisters, 2, 2)
            .expect("get"),
        vec![0xFFFF, 0xFFFE]
    );
    server
        .sim
        .set(1, Table::HoldingRegisters, 1, &[0xFF85])
        .expect("set");
    let values = read_all(&mut session, &config).await;
    assert_eq!(values[0], Ok(Value::Int(-123)));
    assert_eq!(values[1], Ok(Value::Int(65_413)), "minimum 0: unsigned");
    assert_eq!(values[2], Ok(Value::Int(-2)));

    let err = session
        .write(&config.points[1], &Value::Int(-1))
        .await
        .expect_err("an unsigned register refuses -1");
    assert!(err.to_string().contains("does not fit uint16"), "{err}");
}
