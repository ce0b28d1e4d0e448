//! Logging for the long-running subcommands: `tracing` to stderr, filtered by `RUST_LOG`.
//!
//! The filter is `tracing_subscriber`'s `Targets` (`level` and `target=level` directives), not
//! `EnvFilter`: `EnvFilter` brings a regex engine into the edge binary, whose code pages are most
//! of its resident memory (see docs/architecture.md, "Memory").

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Used when `RUST_LOG` is unset or not understood.
const DEFAULT_FILTER: &str = "info,rumqttd=warn";

/// Installs the subscriber; `RUST_LOG` overrides the default `info` (rumqttd: `warn`). Colours
/// only when stderr is a terminal: log files and journals get plain text.
pub fn init() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => directives.parse::<Targets>().unwrap_or_else(|error| {
            eprintln!(
                "RUST_LOG={directives:?} not understood ({error}): logging with {DEFAULT_FILTER:?}"
            );
            default_filter()
        }),
        Err(_) => default_filter(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
}

fn default_filter() -> Targets {
    DEFAULT_FILTER.parse().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_default_filter_logs_info_and_only_warnings_of_the_embedded_broker() {
        let filter: Targets = DEFAULT_FILTER.parse().unwrap();
        assert!(filter.would_enable("edgetwin_core::edge", &Level::INFO));
        assert!(!filter.would_enable("edgetwin_core::edge", &Level::DEBUG));
        assert!(filter.would_enable("rumqttd::router", &Level::WARN));
        assert!(!filter.would_enable("rumqttd::router", &Level::INFO));
    }
}
