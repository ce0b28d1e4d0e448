//! Test peers as real processes: python asyncua (the server we did not write, see
//! `tests/peers/asyncua_server.py`) and our `opcua-sim`. Each prints `READY URL ns=N` when it
//! listens and answers control commands on stdin with one JSON line. Processes are killed by pid
//! (SIGKILL) when dropped, also when a test panics.

#![allow(dead_code)] // Each test binary uses part of the support module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgetwin_mapper_opcua::OpcUaDriver;
use edgetwin_mapper_opcua::config::{ProtocolConfig, VisitorConfig};
use edgetwin_sdk::testkit::kit::{self, PeerProcess};
use edgetwin_sdk::{DeviceConfig, PropertyType};
use serde_json::Value as Json;
use tokio::process::Command;

/// A generous wait for any expected outcome.
pub const WAIT: Duration = Duration::from_secs(20);

/// The Python of the peers' venv with asyncua; `None` when it is missing and peers are not
/// required (the test then skips; see `edgetwin_testkit::peers`).
pub fn asyncua_python() -> Option<PathBuf> {
    kit::peers::python_with("opcua peers", "asyncua")
}

/// A running peer process with its control channel.
pub struct Peer {
    process: PeerProcess,
    /// The endpoint URL from the `READY` line.
    pub url: String,
    /// The namespace index of the peer's nodes.
    pub ns: u16,
}

impl Peer {
    /// Starts `command` and waits for its `READY URL ns=N` line.
    pub async fn start(command: Command) -> Peer {
        let process = PeerProcess::start(command).await;
        let (url, ns) = process.ready().split_once(" ns=").expect("READY URL ns=N");
        let (url, ns) = (url.to_owned(), ns.parse().expect("namespace index"));
        Peer { process, url, ns }
    }

    /// python asyncua on `port` (0: a free one) with its certificates in `certs`, and a user
    /// whose password is in `password_file`.
    pub async fn asyncua(
        python: &Path,
        port: u16,
        certs: &Path,
        user: Option<(&str, &Path)>,
    ) -> Peer {
        Peer::asyncua_with(python, port, certs, user, None).await
    }

    /// [`Peer::asyncua`] that also accepts logins with the user certificate `user_cert`.
    pub async fn asyncua_with(
        python: &Path,
        port: u16,
        certs: &Path,
        user: Option<(&str, &Path)>,
        user_cert: Option<&Path>,
    ) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/asyncua_server.py");
        let mut command = Command::new(python);
        command
            .arg("-u")
            .arg(script)
            .args(["--port", &port.to_string(), "--certs"])
            .arg(certs)
            .env("PYTHONWARNINGS", "ignore");
        if let Some((name, password_file)) = user {
            command
                .args(["--user", name, "--password-file"])
                .arg(password_file);
        }
        if let Some(cert) = user_cert {
            command.arg("--user-cert").arg(cert);
        }
        Peer::start(command).await
    }

    /// Our `opcua-sim` with `variables` Int32 variables.
    pub async fn sim(pki: &Path, variables: usize) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_opcua-sim"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--variables",
                &variables.to_string(),
            ])
            .arg("--pki-dir")
            .arg(pki)
            .env("RUST_LOG", "error");
        Peer::start(command).await
    }

    /// The port of the endpoint URL.
    pub fn port(&self) -> u16 {
        let rest = self.url.trim_start_matches("opc.tcp://");
        let host_port = rest.split('/').next().expect("host:port");
        host_port
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("a port in the URL")
    }

    /// Sends one control command and returns its JSON answer (an `error` answer fails the test).
    pub async fn command(&mut self, line: &str) -> Json {
        self.process.command(line).await
    }

    /// A variable's value as text.
    pub async fn get(&mut self, name: &str) -> String {
        self.command(&format!("get {name}")).await["value"]
            .as_str()
            .expect("a value")
            .to_owned()
    }

    /// Sets a variable on the server side (as the machine would).
    pub async fn set(&mut self, name: &str, value: &str) {
        self.command(&format!("set {name} {value}")).await;
    }

    /// Read service calls naming the peer's nodes since the last reset (asyncua only).
    pub async fn reads(&mut self) -> u64 {
        self.command("reads").await["reads"]
            .as_u64()
            .expect("a count")
    }

    /// Who the last session logged in as: `anonymous`, a user name or `certificate` (asyncua
    /// only).
    pub async fn last_user(&mut self) -> String {
        self.command("user").await["user"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Kills the peer (SIGKILL by pid) and waits for it.
    pub async fn kill(self) {
        self.process.kill().await;
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

/// A driver whose data directory is a fresh temp dir (kept alive by the returned guard).
pub fn driver() -> (OpcUaDriver, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    (OpcUaDriver::new(dir.path()), dir)
}
