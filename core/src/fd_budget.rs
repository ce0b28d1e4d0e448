//! How many connections each listener of this process may hold, from the process's file
//! descriptor limit, so that no listener can take the descriptors the others, the stores and the
//! tunnel need (an idle-connection flood must not make `ctl set` hang or `twin/get` go
//! unanswered).
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit (at most [`RAISE_UP_TO`]), as
//! Go's runtime and many servers do. Of what is left after [`RESERVED`] descriptors (sqlite
//! files, the runtime, the tunnel, the mapper's pipes, logs), each listener gets a fixed share
//! ([`Listener::share_percent`]), whatever else runs in the process: the shares add up to 100 %,
//! so `edgetwin up` (all of them in one process) stays within the limit, and `edgetwin edge` or
//! `edgetwin cloud` alone only leave more room. A listener's cap is its configured maximum or its
//! share, whichever is smaller.

use std::sync::OnceLock;

/// Descriptors kept out of every listener's share.
pub const RESERVED: u64 = 64;

/// The soft limit is raised to the hard limit, but not beyond this.
pub const RAISE_UP_TO: u64 = 65_536;

/// The default cap on the embedded broker's open connections (mappers and tools), before its
/// share of the descriptors caps it further.
pub const DEFAULT_BROKER_CONNECTIONS: usize = 256;

/// A listener that takes a share of the descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The embedded MQTT broker (mappers).
    Broker,
    /// The registry API and the dashboard (their HTTP listener).
    RegistryApi,
    /// The tunnel hub (edge nodes).
    Tunnel,
}

impl Listener {
    /// This listener's share of the descriptors left after [`RESERVED`], in percent.
    pub fn share_percent(self) -> u64 {
        match self {
            Listener::Broker => 40,
            Listener::RegistryApi => 20,
            Listener::Tunnel => 40,
        }
    }
}

/// The process's descriptor limit after [`raise`] (once per process).
pub fn limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(raise)
}

/// The connection cap of `listener`: `wanted`, or its share of the descriptors when that is
/// smaller (at least 1). Logs when the share is the smaller one.
pub fn cap(listener: Listener, wanted: usize) -> usize {
    let capped = share(limit(), listener, wanted);
    if capped < wanted {
        tracing::warn!(
            ?listener,
            wanted,
            cap = capped,
            descriptor_limit = limit(),
            "the descriptor limit (ulimit -n) caps this listener's connections"
        );
    }
    capped
}

fn share(limit: u64, listener: Listener, wanted: usize) -> usize {
    let available = limit.saturating_sub(RESERVED);
    let share = available * listener.share_percent() / 100;
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .clamp(1, wanted.max(1))
}

/// Raises the soft `RLIMIT_NOFILE` towards the hard limit and returns the soft limit in force.
fn raise() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(RAISE_UP_TO);
    let wanted = now.maximum.unwrap_or(RAISE_UP_TO).min(RAISE_UP_TO);
    if wanted <= soft {
        return soft;
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => wanted,
        Err(error) => {
            tracing::debug!(%error, soft, wanted, "cannot raise the descriptor limit");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_fit_the_limit_together() {
        let all = [Listener::Broker, Listener::RegistryApi, Listener::Tunnel];
        assert_eq!(all.iter().map(|l| l.share_percent()).sum::<u64>(), 100);
        for limit in [256, 1024, 65_536] {
            let total: usize = all.iter().map(|&l| share(limit, l, usize::MAX)).sum();
            assert!(total as u64 + RESERVED <= limit, "{limit}: {total}");
        }
    }

    #[test]
    fn the_cap_is_the_wanted_number_or_the_share() {
        assert_eq!(share(256, Listener::RegistryApi, 1000), 38);
        assert_eq!(share(256, Listener::Broker, 10), 10);
        assert_eq!(share(65_536, Listener::Tunnel, 4096), 4096);
        assert_eq!(share(10, Listener::Broker, 100), 1, "never zero");
    }
}
