//! Test peers as real processes: pymodbus (the peer we did not write) and our `modbus-sim`,
//! over TCP on loopback or RTU over a socat pty pair. Each peer prints `READY …` when it
//! listens and answers control commands on stdin with one JSON line (see
//! `tests/peers/pymodbus_server.py` and `src/bin/modbus-sim.rs`). Processes are killed by pid
//! when dropped; ports are chosen by the peers (port 0) and read from their `READY` line.

#![allow(dead_code)] // Each test binary uses part of the support module.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use edgetwin_sdk::model::devices::{Device, DeviceModel, Manifest, convert, load};

use edgetwin_mapper_modbus::config::{ProtocolConfig, VisitorConfig};
use edgetwin_mapper_modbus::{ModbusDriver, ModbusSession};
use edgetwin_sdk::testkit::kit::PeerProcess;
use edgetwin_sdk::{DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, Session};
use edgetwin_sdk::{PropertyType, Value};
use serde_json::{Value as Json, json};
use tokio::process::{Child, Command};

/// The Python of the peers' venv with pymodbus; `None` when it is missing and peers are not
/// required (the test then skips; see `edgetwin_sdk::testkit::kit::peers`).
pub fn pymodbus_python() -> Option<PathBuf> {
    edgetwin_sdk::testkit::kit::peers::python_with("modbus peers", "pymodbus")
}

/// Whether socat is installed; `false` when it is missing and peers are not required.
pub fn have_socat() -> bool {
    edgetwin_sdk::testkit::kit::peers::program("modbus RTU peers", "socat").is_some()
}

/// A running peer process with its control channel.
pub struct Peer {
    process: PeerProcess,
}

impl Peer {
    /// Starts `command` and waits for its `READY` line.
    pub async fn start(command: Command) -> Peer {
        Peer {
            process: PeerProcess::start(command).await,
        }
    }

    /// pymodbus serving Modbus TCP on a free loopback port for `units`.
    pub async fn pymodbus_tcp(python: &Path, units: &str) -> Peer {
        Peer::start(pymodbus(
            python,
            &["tcp", "127.0.0.1", "0", "--units", units],
        ))
        .await
    }

    /// pymodbus serving Modbus TCP on `port` (to restart it where it was).
    pub async fn pymodbus_tcp_on(python: &Path, port: u16, units: &str) -> Peer {
        Peer::start(pymodbus(
            python,
            &["tcp", "127.0.0.1", &port.to_string(), "--units", units],
        ))
        .await
    }

    /// pymodbus serving Modbus RTU on a serial device.
    pub async fn pymodbus_rtu(python: &Path, device: &Path, baud: u32, units: &str) -> Peer {
        Peer::start(pymodbus(
            python,
            &[
                "rtu",
                &device.to_string_lossy(),
                &baud.to_string(),
                "--units",
                units,
            ],
        ))
        .await
    }

    /// Our `modbus-sim` with these arguments.
    pub async fn sim(args: &[&str]) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_modbus-sim"));
        command.args(args).env("RUST_LOG", "warn");
        Peer::start(command).await
    }

    /// The boiler example's directory (`examples/boiler`).
    pub fn boiler_example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/boiler")
    }

    /// Our `modbus-sim` on a free TCP port, holding the boiler example's registers.
    pub async fn boiler_sim() -> Peer {
        let registers = Peer::boiler_example().join("registers.yaml");
        Peer::sim(&[
            "--tcp",
            "127.0.0.1:0",
            "--registers",
            &registers.to_string_lossy(),
        ])
        .await
    }

    /// The TCP address from the `READY tcp ADDR` line.
    pub fn addr(&self) -> SocketAddr {
        let ready = self.process.ready();
        ready
            .strip_prefix("tcp ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not a TCP peer: {ready}"))
    }

    /// Sends one control command and returns its JSON answer.
    pub async fn command(&mut self, line: &str) -> Json {
        self.process.command(line).await
    }

    /// Requests received since the last reset.
    pub async fn requests(&mut self) -> u64 {
        self.command("stats").await["requests"]
            .as_u64()
            .expect("a count")
    }

    /// Requests received per function code since the last reset.
    pub async fn requests_by_function(&mut self) -> BTreeMap<String, u64> {
        serde_json::from_value(self.command("stats").await["by_function"].clone())
            .expect("counts by function")
    }

    /// Registers (or bits as 0/1) straight from the peer's datastore.
    pub async fn get(&mut self, unit: u8, table: &str, address: u16, count: u16) -> Vec<u16> {
        let answer = self
            .command(&format!("get {unit} {table} {address} {count}"))
            .await;
        serde_json::from_value(answer["values"].clone()).expect("values")
    }

    /// Writes registers (or bits) straight into the peer's datastore.
    pub async fn set(&mut self, unit: u8, table: &str, address: u16, values: &[u16]) {
        let values: Vec<String> = values.iter().map(u16::to_string).collect();
        self.command(&format!(
            "set {unit} {table} {address} {}",
            values.join(" ")
        ))
        .await;
    }

    /// Kills the peer (SIGKILL by pid) and waits for it.
    pub async fn kill(self) {
        self.process.kill().await;
    }
}

fn pymodbus(python: &Path, args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pymodbus_server.py");
    let mut command = Command::new(python);
    command
        .arg("-u")
        .arg(script)
        .args(args)
        // pymodbus 3.16 logs deprecation notices; keep the test output readable.
        .env("PYTHONWARNINGS", "ignore");
    command
}

/// A virtual serial cable: two linked ptys made by socat, in a temp dir.
pub struct PtyPair {
    socat: Child,
    _dir: tempfile::TempDir,
    /// One end.
    pub a: PathBuf,
    /// The other end.
    pub b: PathBuf,
}

impl PtyPair {
    /// Starts socat and waits until both ends exist.
    pub async fn start() -> PtyPair {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("ttyA");
        let b = dir.path().join("ttyB");
        let socat = Command::new("socat")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("socat starts");
        tokio::time::timeout(edgetwin_sdk::testkit::kit::peer_process::STARTUP, async {
            while !(a.exists() && b.exists()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("socat made the ptys");
        PtyPair {
            socat,
            _dir: dir,
            a,
            b,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.socat.start_kill();
    }
}

/// A device for the driver: `protocol` configData and `(name, type, visitor configData)`.
pub fn device(
    name: &str,
    protocol: Json,
    points: &[(impl AsRef<str>, PropertyType, Json)],
) -> DeviceConfig<ProtocolConfig, VisitorConfig> {
    edgetwin_sdk::testkit::device_config(name, protocol, points)
}

/// `count` INT properties `r0`, `r1`, … on adjacent holding registers from address 0.
pub fn adjacent_registers(count: u16) -> Vec<(String, PropertyType, Json)> {
    (0..count)
        .map(|i| {
            (
                format!("r{i}"),
                PropertyType::Int,
                json!({"register": "HoldingRegister", "offset": i, "limit": 1}),
            )
        })
        .collect()
}

/// The Device and DeviceModel of `files` (v1beta1 loaded, v1alpha2 converted).
pub fn load_pair(dir: &Path, files: [&str; 2]) -> (Device, DeviceModel) {
    let mut device = None;
    let mut model = None;
    for file in files {
        let path = dir.join(file);
        let manifests: Vec<Manifest> = if file.starts_with("v1alpha2") {
            convert::from_str(&read(&path), file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .manifests
        } else {
            load::from_str(&read(&path), file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .into_iter()
                .map(|document| document.manifest)
                .collect()
        };
        for manifest in manifests {
            match manifest {
                Manifest::Device(d) => device = Some(d),
                Manifest::DeviceModel(m) => model = Some(m),
            }
        }
    }
    (device.expect("a Device"), model.expect("a DeviceModel"))
}

/// The driver's view of a Device: its protocol configData and, per property with visitors,
/// the model's type and the visitor configData.
pub fn driver_config(
    device: &Device,
    model: &DeviceModel,
    address: Option<(&str, u16)>,
) -> DeviceConfig<ProtocolConfig, VisitorConfig> {
    let mut protocol = device
        .spec
        .protocol
        .as_ref()
        .and_then(|p| p.config_data.clone())
        .unwrap_or_default();
    if let Some((ip, port)) = address {
        protocol.insert("ip".into(), json!(ip));
        protocol.insert("port".into(), json!(port.to_string()));
    }
    let points = device
        .spec
        .properties
        .iter()
        .filter_map(|p| Some((p, p.visitors.as_ref()?.config_data.clone()?)))
        .enumerate()
        .map(|(i, (property, visitor))| {
            let ty = model
                .spec
                .properties
                .iter()
                .find(|m| m.name == property.name)
                .map(|m| m.property_type)
                .expect("the model types every property");
            Point {
                id: PointId(i),
                property: property.name.clone(),
                ty,
                writable: true,
                limits: Default::default(),
                visitor: serde_json::from_value(Json::Object(visitor))
                    .unwrap_or_else(|e| panic!("{}: {e}", property.name)),
            }
        })
        .collect();
    DeviceConfig {
        id: DeviceId::new("default", device.metadata.name.clone().unwrap_or_default()),
        protocol: serde_json::from_value(Json::Object(protocol)).expect("protocol parses"),
        points,
    }
}

/// Validates and connects a device.
pub async fn connect(
    driver: &ModbusDriver,
    config: &DeviceConfig<ProtocolConfig, VisitorConfig>,
) -> ModbusSession {
    driver.validate(config).expect("valid configuration");
    driver.connect(config).await.expect("device answers")
}

/// Reads every point of a device in one batched read.
pub async fn read_all(
    session: &mut ModbusSession,
    config: &DeviceConfig<ProtocolConfig, VisitorConfig>,
) -> Vec<Result<Value, DriverError>> {
    let points: Vec<&Point<VisitorConfig>> = config.points.iter().collect();
    session.read(&points).await
}

/// A fixture file's text.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
