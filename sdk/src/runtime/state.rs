//! A device's state as the mapper publishes it on `state/update`.

use std::fmt;

/// The state of a device, with the reason when it is not `online`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// Connected and answering.
    Online,
    /// Not connected (unreachable, connecting, or the mapper stopped).
    Offline(String),
    /// Connected or not, the device cannot be served as configured (bad configuration, failing
    /// health check).
    Unhealthy(String),
}

impl DeviceState {
    /// The state name on the wire: `online`, `offline` or `unhealthy`.
    pub fn name(&self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Offline(_) => "offline",
            DeviceState::Unhealthy(_) => "unhealthy",
        }
    }

    /// Why the device is in this state (not for `online`).
    pub fn reason(&self) -> Option<&str> {
        match self {
            DeviceState::Online => None,
            DeviceState::Offline(reason) | DeviceState::Unhealthy(reason) => Some(reason),
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{} ({reason})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}
