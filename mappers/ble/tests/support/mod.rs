//! Test peers: a private D-Bus system bus (Debian's dbus-daemon) and BlueZ's D-Bus API on it
//! (`tests/peers/bluez_peer.py`: python-dbusmock's bluez5 template with GATT).
//!
//! BlueZ clients find the system bus through `DBUS_SYSTEM_BUS_ADDRESS`, which a process can only
//! be given when it starts. So each test is two: a plain test starts a dbus-daemon on a socket in
//! a temp dir and runs the ignored test of the same name (with an `inner_` prefix) in a child
//! process whose environment points there; the child starts the BlueZ peer and does the work.
//! Both processes are killed by pid when dropped.
//!
//! A missing peer (dbus-daemon, python3-dbusmock) skips the test with a message, or fails it
//! when `EDGETWIN_REQUIRE_PEERS` is set, as `cargo xtask test` does.

#![allow(dead_code)] // Each test binary uses part of the support module.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader, Lines};
use tokio::process::{Child as AsyncChild, ChildStdin, ChildStdout};

/// Set in the child process: its system bus is a private one.
pub const ON_PRIVATE_BUS: &str = "EDGETWIN_BLE_TEST_PRIVATE_BUS";

/// The Python with python3-dbus and python3-gi (Debian's, not a venv).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Runs the ignored test `inner` of this test binary in a child process on a private system
/// bus. Skips (or fails under `EDGETWIN_REQUIRE_PEERS`) when the peers are not installed.
pub fn run_on_private_bus(inner: &str) {
    if !peers_installed() {
        return;
    }
    let bus = PrivateBus::start();
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            inner,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env(ON_PRIVATE_BUS, "1")
        .stdin(Stdio::null())
        .status()
        .expect("the test binary runs");
    drop(bus);
    assert!(
        status.success(),
        "{inner} failed on the private bus ({status})"
    );
}

/// In the child: whether the system bus is the private one. An ignored test run by hand
/// (`--ignored`) must not talk to the machine's real BlueZ.
pub fn on_private_bus() -> bool {
    let yes = std::env::var_os(ON_PRIVATE_BUS).is_some();
    if !yes {
        eprintln!("not on a private bus: run the test without the `inner_` prefix");
    }
    yes
}

/// Whether dbus-daemon and python3-dbusmock are there; says what is missing.
pub fn peers_installed() -> bool {
    let daemon = Command::new("dbus-daemon")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let dbusmock = Command::new(SYSTEM_PYTHON)
        .args(["-c", "import dbus, dbusmock, gi"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if daemon && dbusmock {
        return true;
    }
    let missing = match (daemon, dbusmock) {
        (false, false) => "dbus-daemon and python3-dbusmock",
        (false, true) => "dbus-daemon",
        _ => "python3-dbusmock (for /usr/bin/python3)",
    };
    edgetwin_sdk::testkit::kit::peers::missing(
        "BLE tests",
        missing,
        "Debian packages dbus and python3-dbusmock",
    );
    false
}

/// A dbus-daemon of type `system` on a socket in a temp dir.
pub struct PrivateBus {
    child: Child,
    _dir: tempfile::TempDir,
    /// `unix:path=…`.
    pub address: String,
}

impl PrivateBus {
    /// Starts it and waits for its address.
    pub fn start() -> PrivateBus {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It says that it cannot raise its fd limit when not run by root's init.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("dbus-daemon prints its address");
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {line:?}");
        PrivateBus {
            child,
            _dir: dir,
            address,
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BlueZ's D-Bus API on the (private) system bus of this process, with a control channel.
pub struct BluezPeer {
    child: AsyncChild,
    stdin: ChildStdin,
    stdout: Lines<AsyncBufReader<ChildStdout>>,
}

/// A GATT characteristic of a mocked device: `(uuid, flags, value)`.
pub type CharSpec<'a> = (&'a str, &'a [&'a str], &'a [u8]);

impl BluezPeer {
    /// Starts the peer with adapter `hci0` on this process's system bus and waits until it
    /// serves.
    pub async fn start() -> BluezPeer {
        BluezPeer::start_on(None).await
    }

    /// Starts the peer on the bus at `address` (default: this process's system bus).
    pub async fn start_on(address: Option<&str>) -> BluezPeer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/bluez_peer.py");
        let mut command = tokio::process::Command::new(SYSTEM_PYTHON);
        if let Some(address) = address {
            command.env("DBUS_SYSTEM_BUS_ADDRESS", address);
        }
        let mut child = command
            .arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the BlueZ peer starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = AsyncBufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("the BlueZ peer is ready in time");
        assert_eq!(
            ready.expect("peer stdout").as_deref(),
            Some("READY"),
            "the BlueZ peer did not start"
        );
        let mut peer = BluezPeer {
            child,
            stdin,
            stdout,
        };
        peer.command(json!({"cmd": "adapter", "name": "hci0"}))
            .await;
        peer
    }

    /// Sends one command and returns its answer (an `error` answer fails the test).
    pub async fn command(&mut self, command: Json) -> Json {
        let answer = self.try_command(command.clone()).await;
        assert!(answer.get("error").is_none(), "{command}: {answer}");
        answer
    }

    /// Sends one command and returns its answer, errors included.
    pub async fn try_command(&mut self, command: Json) -> Json {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("peer stdin");
        self.stdin.flush().await.expect("peer stdin");
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .expect("the peer answers in time")
            .expect("peer stdout")
            .expect("the peer is running");
        serde_json::from_str(&line).expect("a JSON answer")
    }

    /// Adds a device on `adapter` with one service holding `chars`.
    pub async fn device(
        &mut self,
        adapter: &str,
        address: &str,
        name: &str,
        service: &str,
        chars: &[CharSpec<'_>],
    ) {
        let characteristics: Vec<Json> = chars
            .iter()
            .map(|(uuid, flags, value)| json!({"uuid": uuid, "flags": flags, "value": value}))
            .collect();
        self.command(
            json!({"cmd": "device", "adapter": adapter, "address": address,
                            "name": name,
                            "services": [{"uuid": service, "characteristics": characteristics}]}),
        )
        .await;
    }

    /// Sends a notification (when the client subscribed); returns when it was emitted (Unix
    /// seconds) and whether it was.
    pub async fn notify(&mut self, address: &str, uuid: &str, value: &[u8]) -> (f64, bool) {
        let answer = self
            .command(json!({"cmd": "notify", "address": address, "uuid": uuid, "value": value}))
            .await;
        (
            answer["at"].as_f64().expect("a time"),
            answer["sent"].as_bool().expect("sent"),
        )
    }

    /// Changes a value without notifying.
    pub async fn set(&mut self, address: &str, uuid: &str, value: &[u8]) {
        self.command(json!({"cmd": "set", "address": address, "uuid": uuid, "value": value}))
            .await;
    }

    /// The characteristic's value, writes (`{value, type, offset}`), reads and notifying flag.
    pub async fn get(&mut self, address: &str, uuid: &str) -> Json {
        self.command(json!({"cmd": "get", "address": address, "uuid": uuid}))
            .await
    }

    /// The device stops answering (after `delay_ms`) and drops its link; it refuses to connect
    /// until [`BluezPeer::come_back`].
    pub async fn vanish(&mut self, address: &str, delay_ms: u64) {
        self.command(json!({"cmd": "vanish", "address": address, "delay_ms": delay_ms}))
            .await;
    }

    /// The device is in range again.
    pub async fn come_back(&mut self, address: &str) {
        self.command(json!({"cmd": "return", "address": address}))
            .await;
    }

    /// Connects, disconnects, whether it is connected, and the most devices connected at once.
    pub async fn stats(&mut self, address: &str) -> Json {
        self.command(json!({"cmd": "stats", "address": address}))
            .await
    }

    /// Kills the peer by pid.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The workspace's target directory holding this test binary (`target/debug`).
pub fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent()?.parent().map(Path::to_path_buf)
}
