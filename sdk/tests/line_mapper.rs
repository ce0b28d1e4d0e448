//! The guide's network driver (`examples/line_mapper/driver.rs`, `docs/writing-a-mapper.md`)
//! against a fake device: a TCP server in this test that speaks the line protocol on a free
//! port, which the Device YAML is templated with. The fake device also misbehaves on demand
//! (`conformance::Faults`), so the whole suite runs, fault scenarios included.
//!
//! Then the same driver with each of five classic mistakes, switched on one at a time: the
//! suite must fail for each, naming the property.

#[path = "../examples/line_mapper/driver.rs"]
mod driver;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use edgetwin_sdk::testkit::conformance::{self, ConformanceError, Faults};
use edgetwin_sdk::{DeviceConfig, Driver, DriverError, Point, PropertyType, Session, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The Device and its model, for a fake device on `port`.
fn device_yaml(port: u16) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: line-sensor
spec:
  protocol: line
  properties:
    - name: temperature
      type: FLOAT
      accessMode: ReadOnly
    - name: led
      type: BOOLEAN
      accessMode: ReadWrite
    - name: level
      type: INT
      accessMode: ReadWrite
    - name: label
      type: STRING
      accessMode: ReadWrite
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: sensor
spec:
  deviceModelRef:
    name: line-sensor
  protocol:
    protocolName: line
    configData:
      address: "127.0.0.1:{port}"
  properties:
    - name: temperature
      visitors: {{protocolName: line, configData: {{name: temp}}}}
    - name: led
      visitors: {{protocolName: line, configData: {{name: led}}}}
    - name: level
      visitors: {{protocolName: line, configData: {{name: level}}}}
    - name: label
      visitors: {{protocolName: line, configData: {{name: label}}}}
"#
    )
}

/// What the fake device holds and how it misbehaves.
#[derive(Debug, Default)]
struct DeviceState {
    /// The device's names and values; `temp` is read-only.
    values: BTreeMap<String, String>,
    /// Names it answers `ERR refused` for.
    refused: BTreeSet<String>,
    /// Answers nothing.
    hung: bool,
    /// Closes connections and refuses new ones.
    down: bool,
    /// The connections' tasks, aborted (closing their sockets) when the link drops.
    connections: Vec<JoinHandle<()>>,
}

/// A fake line-protocol device on a free loopback port. Dropping it stops it.
struct FakeDevice {
    port: u16,
    state: Arc<Mutex<DeviceState>>,
    server: JoinHandle<()>,
}

impl FakeDevice {
    async fn start() -> FakeDevice {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let values = [
            ("temp", "21.5"),
            ("led", "0"),
            ("level", "3"),
            ("label", "hello"),
        ];
        let state = Arc::new(Mutex::new(DeviceState {
            values: values.map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
            ..DeviceState::default()
        }));
        let server = tokio::spawn(accept(listener, Arc::clone(&state)));
        FakeDevice {
            port,
            state,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.server.abort();
        for connection in self.state().connections.drain(..) {
            connection.abort();
        }
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<DeviceState>>) {
    while let Ok((socket, _)) = listener.accept().await {
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.down {
            continue; // dropped: the connection is closed at once
        }
        let connection = tokio::spawn(serve(socket, Arc::clone(&state)));
        guard.connections.push(connection);
    }
}

async fn serve(socket: TcpStream, state: Arc<Mutex<DeviceState>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            if state.hung {
                continue; // no answer, ever, to this request
            }
            answer(&mut state, &line)
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The device's answer to one request line.
fn answer(state: &mut DeviceState, line: &str) -> String {
    let words: Vec<&str> = line.splitn(3, ' ').collect();
    let name = words.get(1).copied().unwrap_or_default();
    if state.refused.contains(name) {
        return "ERR refused".into();
    }
    match (words[0], state.values.get(name), words.get(2)) {
        ("GET", Some(value), None) => format!("OK {value}"),
        ("SET", Some(_), Some(_)) if name == "temp" => "ERR read-only".into(),
        ("SET", Some(_), Some(value)) => {
            let valid = match name {
                "led" => matches!(*value, "0" | "1"),
                "level" => value.parse::<i64>().is_ok(),
                _ => true,
            };
            if !valid {
                return format!("ERR bad value {value}");
            }
            state.values.insert(name.to_owned(), (*value).to_owned());
            "OK".into()
        }
        (_, None, _) => "ERR unknown".into(),
        _ => "ERR bad request".into(),
    }
}

/// The fake device misbehaving as the suite asks (properties are named after the device's
/// names, except `temperature`, which the device calls `temp`).
impl Faults for FakeDevice {
    fn refuse(&self, property: &str) -> bool {
        let name = if property == "temperature" {
            "temp"
        } else {
            property
        };
        self.state().refused.insert(name.to_owned());
        true
    }

    fn hang(&self) -> bool {
        self.state().hung = true;
        true
    }

    fn drop_link(&self) -> bool {
        let mut state = self.state();
        state.down = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
        true
    }

    fn heal(&self) {
        let mut state = self.state();
        state.refused.clear();
        state.hung = false;
        state.down = false;
    }
}

#[tokio::test]
async fn the_line_driver_passes_the_whole_conformance_suite_against_a_fake_device() {
    let device = FakeDevice::start().await;
    let report = conformance::run_with(|| driver::LineDriver, &device_yaml(device.port), &device)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(
        report.passed.len(),
        conformance::SCENARIOS.len() + conformance::FAULT_SCENARIOS.len()
    );
}

/// A mistake the driver can be switched to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mistake {
    /// Writes a boolean as `true`/`false` (the device takes `1`/`0`).
    BooleanAsText,
    /// A write that does nothing and says it worked.
    WriteDoesNothing,
    /// Replies given to the wrong properties (one off).
    RepliesToWrongProperties,
    /// FLOAT replies parsed as integers: every FLOAT read fails.
    FloatReadFails,
    /// The device's `ERR` taken for an I/O error instead of a refusal.
    RefusalAsIoError,
}

/// The guide's driver with one mistake switched on.
#[derive(Debug)]
struct Mistaken(Mistake);

/// A session of the guide's driver with one mistake.
#[derive(Debug)]
struct MistakenSession {
    inner: driver::LineSession,
    mistake: Mistake,
}

impl Driver for Mistaken {
    const PROTOCOL: &'static str = "line";
    type ProtocolConfig = driver::LineDevice;
    type VisitorConfig = driver::LinePoint;
    type Session = MistakenSession;

    fn validate(
        &self,
        device: &DeviceConfig<driver::LineDevice, driver::LinePoint>,
    ) -> Result<(), DriverError> {
        driver::LineDriver.validate(device)
    }

    async fn connect(
        &self,
        device: &DeviceConfig<driver::LineDevice, driver::LinePoint>,
    ) -> Result<MistakenSession, DriverError> {
        Ok(MistakenSession {
            inner: driver::LineDriver.connect(device).await?,
            mistake: self.0,
        })
    }
}

/// The mistake: a refusal turned into an I/O error.
fn refusal_as_io(error: DriverError) -> DriverError {
    match error {
        DriverError::Rejected(reason) => DriverError::io(reason),
        other => other,
    }
}

impl Session for MistakenSession {
    type Visitor = driver::LinePoint;

    async fn read(
        &mut self,
        points: &[&Point<driver::LinePoint>],
    ) -> Vec<Result<Value, DriverError>> {
        match self.mistake {
            Mistake::RepliesToWrongProperties => {
                let mut values = self.inner.read(points).await;
                values.rotate_left(1);
                values
            }
            Mistake::FloatReadFails => {
                let mut values = Vec::new();
                for point in points {
                    let request = format!("GET {}", point.visitor.name);
                    let reply = self.inner.request(&request).await;
                    values.push(reply.and_then(|text| {
                        let ty = match point.ty {
                            PropertyType::Float => PropertyType::Int,
                            ty => ty,
                        };
                        match (ty, text.as_str()) {
                            (PropertyType::Boolean, "1") => Ok(Value::Boolean(true)),
                            (PropertyType::Boolean, "0") => Ok(Value::Boolean(false)),
                            _ => ty.parse(&text),
                        }
                        .map_err(|e| DriverError::Rejected(e.to_string()))
                    }));
                }
                values
            }
            Mistake::RefusalAsIoError => {
                let values = self.inner.read(points).await;
                values
                    .into_iter()
                    .map(|v| v.map_err(refusal_as_io))
                    .collect()
            }
            _ => self.inner.read(points).await,
        }
    }

    async fn write(
        &mut self,
        point: &Point<driver::LinePoint>,
        value: &Value,
    ) -> Result<(), DriverError> {
        match (self.mistake, value) {
            (Mistake::BooleanAsText, Value::Boolean(_)) => {
                let request = format!("SET {} {value}", point.visitor.name);
                self.inner.request(&request).await.map(drop)
            }
            (Mistake::WriteDoesNothing, _) => Ok(()),
            (Mistake::RefusalAsIoError, _) => {
                self.inner.write(point, value).await.map_err(refusal_as_io)
            }
            _ => self.inner.write(point, value).await,
        }
    }
}

/// Runs the suite with the mistake; returns its failure.
async fn failure_with(mistake: Mistake) -> ConformanceError {
    let device = FakeDevice::start().await;
    match conformance::run_with(|| Mistaken(mistake), &device_yaml(device.port), &device).await {
        Ok(report) => panic!("the suite passed a driver that makes {mistake:?}:\n{report}"),
        Err(failure) => {
            println!("{mistake:?}: {failure}");
            failure
        }
    }
}

#[tokio::test]
async fn a_boolean_written_as_true_is_caught() {
    let failure = failure_with(Mistake::BooleanAsText).await;
    assert_eq!(failure.scenario, "desired-write-readback-reported");
    assert!(
        failure.message.contains(r#"property "led" (BOOLEAN"#),
        "{failure}"
    );
    assert!(
        failure.message.contains("refused: bad value true"),
        "{failure}"
    );
}

#[tokio::test]
async fn a_write_that_does_nothing_is_caught() {
    let failure = failure_with(Mistake::WriteDoesNothing).await;
    assert_eq!(failure.scenario, "desired-write-readback-reported");
    assert!(failure.message.contains(r#"property "led""#), "{failure}");
    assert!(failure.message.contains("successful write"), "{failure}");
}

#[tokio::test]
async fn replies_matched_to_the_wrong_properties_are_caught() {
    let failure = failure_with(Mistake::RepliesToWrongProperties).await;
    let names = ["temperature", "led", "level", "label"];
    assert!(
        names
            .iter()
            .any(|name| failure.message.contains(&format!("property {name:?}"))),
        "{failure}"
    );
}

#[tokio::test]
async fn a_float_read_that_always_fails_is_caught() {
    let failure = failure_with(Mistake::FloatReadFails).await;
    assert_eq!(failure.scenario, "every-property-reported");
    assert!(
        failure
            .message
            .contains(r#"property "temperature" (FLOAT, ReadOnly) was never reported"#),
        "{failure}"
    );
    assert!(failure.message.contains("its reads fail"), "{failure}");
}

#[tokio::test]
async fn a_refusal_taken_for_an_io_error_is_caught() {
    let failure = failure_with(Mistake::RefusalAsIoError).await;
    assert_eq!(failure.scenario, "device-refuses");
    assert!(failure.message.contains(r#"property "led""#), "{failure}");
    assert!(
        failure.message.contains("must be DriverError::Rejected"),
        "{failure}"
    );
}
