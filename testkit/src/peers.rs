//! Outside peers a test needs: fail under `cargo xtask test`, skip (and say so) elsewhere.
//!
//! `cargo xtask test` installs every peer and sets [`REQUIRE_PEERS_ENV`]; a test that finds a
//! peer missing then fails with the reason instead of passing without having run. A quick
//! `cargo test` on a laptop without the peers skips such tests with a line on stderr.

/// Set (to anything but `0`) by `cargo xtask test`: missing peers fail the test.
pub const REQUIRE_PEERS_ENV: &str = "EDGETWIN_REQUIRE_PEERS";

/// Whether missing peers must fail the test ([`REQUIRE_PEERS_ENV`] is set and not `0`).
pub fn required() -> bool {
    std::env::var_os(REQUIRE_PEERS_ENV).is_some_and(|v| v != "0")
}

/// A peer the test needs is missing: panics when peers are [`required`], otherwise prints that
/// `test` skips and returns, so the caller can `return` from the test.
///
/// # Panics
/// When peers are required: the message names the peer, why it is missing and how to get it.
#[track_caller]
pub fn missing(test: &str, peer: &str, why: &str) {
    if required() {
        panic!("{}", failure_message(test, peer, why));
    }
    eprintln!(
        "{test}: skipped: {peer} is missing ({why}); set {REQUIRE_PEERS_ENV}=1 to fail instead"
    );
}

/// The path of `program` (searched in `PATH`, then `/usr/sbin` and `/sbin`, where Debian puts
/// daemons). `None` after reporting it through [`missing`].
///
/// # Panics
/// When the program is missing and peers are required.
#[track_caller]
pub fn program(test: &str, program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        missing(test, program, "not installed");
    }
    found
}

/// The environment variable naming the Python venv of the test peers (`cargo xtask provision`
/// creates it at `target/peers-venv` of the edgetwin workspace, the default).
pub const PEERS_VENV_ENV: &str = "EDGETWIN_PEERS_VENV";

/// The Python of the peers' venv, when it can import `module` (e.g. `pymodbus`, `asyncua`).
/// `None` after reporting it through [`missing`].
///
/// # Panics
/// When the venv or the module is missing and peers are required.
#[track_caller]
pub fn python_with(test: &str, module: &str) -> Option<std::path::PathBuf> {
    let venv = std::env::var_os(PEERS_VENV_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers-venv")
        });
    let python = venv.join("bin/python");
    let imports = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !imports {
        missing(
            test,
            &format!("the Python module {module}"),
            &format!(
                "{} cannot import it (set {PEERS_VENV_ENV})",
                python.display()
            ),
        );
        return None;
    }
    Some(python)
}

fn failure_message(test: &str, peer: &str, why: &str) -> String {
    format!(
        "{test}: {peer} is missing ({why}); `cargo xtask provision` installs the test peers \
         ({REQUIRE_PEERS_ENV} is set, so this fails instead of skipping)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(program("t", "sh").is_some_and(|p| p.is_file()));
    }

    #[test]
    fn the_failure_names_the_peer_the_reason_and_the_remedy() {
        let message = failure_message("broker_test", "mosquitto", "not on PATH");
        assert!(message.starts_with("broker_test: mosquitto is missing (not on PATH)"));
        assert!(message.contains("cargo xtask provision"));
    }
}
