//! Access to the node's MQTT bus: who may connect and what each client may publish and subscribe
//! to ([`policy`]), the secrets in the data dir that prove it ([`secrets`]: client credentials
//! and the spec key that seals spec messages), and the same policy as mosquitto files
//! ([`mosquitto`]). docs/security.md describes the threat model.
//!
//! [`BusAccess`] is the running form: the policy, the node's devices as the policy needs them
//! (the twin service replaces them on every membership change) and the counters of refusals.

pub mod config;
pub mod mosquitto;
pub mod policy;
pub mod secrets;

use std::sync::{Arc, RwLock};

use policy::{BusPolicy, DeviceIndex, Principal, Refusal};

use crate::edge::metrics::Metrics;

/// The bus policy in force, with the node's devices.
#[derive(Debug)]
pub struct BusAccess {
    policy: BusPolicy,
    devices: RwLock<Arc<DeviceIndex>>,
    metrics: Arc<Metrics>,
}

impl BusAccess {
    /// `policy` over no devices yet.
    pub fn new(policy: BusPolicy, metrics: Arc<Metrics>) -> BusAccess {
        BusAccess {
            policy,
            devices: RwLock::new(Arc::default()),
            metrics,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &BusPolicy {
        &self.policy
    }

    /// Replaces the node's devices (after a membership change).
    pub fn set_devices(&self, devices: DeviceIndex) {
        let devices = Arc::new(devices);
        match self.devices.write() {
            Ok(mut current) => *current = devices,
            Err(poisoned) => *poisoned.into_inner() = devices,
        }
    }

    /// The node's devices as they are now.
    pub fn devices(&self) -> Arc<DeviceIndex> {
        match self.devices.read() {
            Ok(devices) => Arc::clone(&devices),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Decides a CONNECT; a refusal is logged and counted.
    pub fn authenticate(
        &self,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Principal, Refusal> {
        let decision = self.policy.authenticate(client_id, login);
        match &decision {
            Ok(who) => tracing::debug!(
                client_id,
                client = self.policy.name_of(*who),
                "bus client connected"
            ),
            Err(refusal) => {
                self.metrics.bus_refused("connect");
                tracing::warn!(
                    client_id,
                    username = login.map(|(user, _)| user),
                    reason = %refusal,
                    "bus connection refused"
                );
            }
        }
        decision
    }

    /// Whether `who` may publish on `topic`; a refusal is counted, and logged unless `quiet`.
    pub fn may_publish(&self, who: Principal, topic: &str, quiet: bool) -> bool {
        let allowed = self.policy.may_publish(who, topic, &self.devices());
        if !allowed {
            self.metrics.bus_refused("publish");
            if !quiet {
                tracing::warn!(client = self.policy.name_of(who), topic = ?topic, "publish refused by the bus policy; dropped");
            }
        }
        allowed
    }

    /// Whether `who` may subscribe to `filter`; a refusal is counted and logged.
    pub fn may_subscribe(&self, who: Principal, filter: &str) -> bool {
        let allowed = self.policy.may_subscribe(who, filter);
        if !allowed {
            self.metrics.bus_refused("subscribe");
            tracing::warn!(client = self.policy.name_of(who), filter = ?filter, "subscription refused by the bus policy");
        }
        allowed
    }
}
