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
    fn the_failure_names_the_peer_the_reason_and_the_remedy() {
        let message = failure_message("broker_test", "mosquitto", "not on PATH");
        assert!(message.starts_with("broker_test: mosquitto is missing (not on PATH)"));
        assert!(message.contains("cargo xtask provision"));
    }
}
