//! Installs what the test suite needs on a fresh Debian machine. Idempotent: each step checks
//! first and does nothing when the tool is already there.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages the build and the tests use, with a shell test that proves each is
/// installed. Chromium and its WebDriver drive the dashboard's browser test; libdbus-1-dev
/// builds the BLE mapper (BlueZ is on D-Bus), whose tests run python-dbusmock's BlueZ on a
/// private dbus-daemon. Redis and MariaDB are the servers the database sinks are tested
/// against (started by the tests themselves); `systemd-analyze` checks the units `edgetwin
/// install` writes. (The cross toolchain for the HIL suite's arm binaries is installed by
/// `cross::provision`.)
const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "mosquitto",
        "command -v mosquitto || test -x /usr/sbin/mosquitto",
    ),
    ("socat", "command -v socat"),
    ("chromium", "command -v chromium"),
    ("chromium-driver", "command -v chromedriver"),
    ("libdbus-1-dev", "pkg-config --exists dbus-1"),
    ("dbus", "command -v dbus-daemon"),
    (
        "python3-dbusmock",
        "/usr/bin/python3 -c 'import dbus, dbusmock, gi'",
    ),
    ("redis-server", "command -v redis-server"),
    (
        "mariadb-server",
        "command -v mariadbd || test -x /usr/sbin/mariadbd",
    ),
    ("systemd", "command -v systemd-analyze"),
];

/// Where the Python venv for test peers (pymodbus, asyncua, the OTLP receiver, paho-mqtt) lives,
/// relative to the workspace root.
pub const VENV_DIR: &str = "target/peers-venv";

/// Python packages for test peers, pinned (pymodbus 4 drops the datastore API the peers use;
/// asyncua is the OPC UA server the OPC-UA mapper is tested against; opentelemetry-proto decodes
/// what the OpenTelemetry sink exports; paho-mqtt is the MQTT client that is not ours in the edge
/// bench, `core/benches/paho_mapper.py`).
const PIP_PACKAGES: &[&str] = &[
    "pymodbus[serial]==3.16.1",
    "asyncua==2.1.0",
    "opentelemetry-proto==1.45.2",
    "paho-mqtt==2.1.0",
];

/// Installs every missing apt package, then the Python venv with the test peers.
pub fn all(root: &Path) -> Result<()> {
    apt(APT_PACKAGES)?;
    venv(&root.join(VENV_DIR))
}

/// Creates `dir` as a Python venv (if missing) and installs [`PIP_PACKAGES`] into it (if missing).
fn venv(dir: &Path) -> Result<()> {
    let python = dir.join("bin/python");
    if !python.exists() {
        println!("xtask: creating Python venv {}", dir.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(dir))?;
    }
    let marker = dir.join(".edgetwin-peers");
    let wanted = PIP_PACKAGES.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    println!(
        "xtask: installing into the venv: {}",
        PIP_PACKAGES.join(" ")
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PIP_PACKAGES))?;
    std::fs::write(&marker, wanted).context("writing the venv marker")?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Whether `cmd` is on `PATH` (or in `/usr/sbin`).
pub fn have_command(cmd: &str) -> bool {
    have(&format!("command -v {cmd} || test -x /usr/sbin/{cmd}"))
}

/// Whether the shell test `probe` succeeds.
fn have(probe: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("({probe}) >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn apt(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, probe)| !have(probe))
        .map(|(pkg, _)| *pkg)
        .collect();
    apt_install(&missing)
}

/// Adds `arch` (`arm64`, `armhf`) to dpkg's architectures unless it is there, so that apt can
/// install that architecture's packages (the next `apt_install` updates the package lists).
pub fn dpkg_architecture(arch: &str) -> Result<()> {
    let output = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .context("running dpkg --print-foreign-architectures")?;
    if String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .any(|a| a == arch)
    {
        return Ok(());
    }
    println!("xtask: adding the {arch} architecture to dpkg");
    let sudo = if is_root() { "" } else { "sudo " };
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{sudo}dpkg --add-architecture {arch}"))
        .status()
        .context("running dpkg --add-architecture")?;
    if !status.success() {
        bail!("dpkg --add-architecture {arch} failed ({status})");
    }
    Ok(())
}

/// Installs `missing` Debian packages (after updating the package lists); nothing to do when
/// the list is empty.
pub fn apt_install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    let sudo = if is_root() { "" } else { "sudo " };
    let script = format!(
        "{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq --no-install-recommends {}",
        missing.join(" ")
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}
