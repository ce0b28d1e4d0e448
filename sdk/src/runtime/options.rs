//! The runtime's settings, with the defaults a mapper binary starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use edgetwin_model::wire;
use edgetwin_model::wire::spec_auth::BusCredentials;

use crate::driver::DeviceId;
use crate::mqtt::BrokerAddr;

/// Where device specs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSource {
    /// The edgetwin edge agent: retained messages on
    /// `edgetwin/v1/node/{node}/device/{namespace}/{name}/spec` (an empty payload removes the
    /// device). Devices come and go while the mapper runs.
    SpecTopic,
    /// A directory of Device and DeviceModel YAML (standalone, or next to KubeEdge's edgecore),
    /// read once at start.
    Directory(PathBuf),
    /// KubeEdge's v1alpha2 `deviceProfile.json` (the ConfigMap mounted at
    /// `/opt/kubeedge/deviceProfile.json`), read once at start.
    DeviceProfile(PathBuf),
}

/// Which device id the KubeEdge topics carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdForm {
    /// `$hw/events/device/{namespace}/{name}/…` (KubeEdge ≥ 1.17).
    #[default]
    Namespaced,
    /// `$hw/events/device/{name}/…` (KubeEdge ≤ 1.16).
    NameOnly,
}

impl IdForm {
    /// The topic id of a device in this form.
    pub fn topic_id(self, id: &DeviceId) -> Result<wire::DeviceId, wire::topic::LevelError> {
        match self {
            IdForm::Namespaced => wire::DeviceId::namespaced(&id.namespace, &id.name),
            IdForm::NameOnly => wire::DeviceId::named(&id.name),
        }
    }
}

/// Which devices of the protocol this mapper instance serves, so that several instances can
/// split them. Empty: all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Every label must be present with this value.
    pub labels: BTreeMap<String, String>,
    /// When not empty, only these devices (`name` or `namespace/name`).
    pub devices: BTreeSet<String>,
}

impl Selector {
    /// Whether a device with these labels is selected.
    pub fn matches(&self, id: &DeviceId, labels: &BTreeMap<String, String>) -> bool {
        let labels_match = self
            .labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value));
        let listed = self.devices.is_empty()
            || self.devices.contains(&id.name)
            || self.devices.contains(&id.to_string());
        labels_match && listed
    }

    /// Parses `key=value` into a label requirement.
    pub fn add_label(&mut self, requirement: &str) -> Result<(), String> {
        match requirement.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                self.labels.insert(key.to_owned(), value.to_owned());
                Ok(())
            }
            _ => Err(format!("selector {requirement:?} is not key=value")),
        }
    }
}

/// Every setting of the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The edge node this mapper runs on.
    pub node: String,
    /// The MQTT broker of the node.
    pub broker: BrokerAddr,
    /// The MQTT client id (default: `edgetwin-mapper-{protocol}-{node}-{pid}`).
    pub client_id: Option<String>,
    /// The node's bus credentials (the agent writes them; `--credentials FILE`): the MQTT login,
    /// and the key without which no spec message is applied. Without them the mapper connects
    /// anonymously and applies unsealed spec messages (a broker that lets only the agent publish
    /// specs must then guard them; docs/security.md).
    pub credentials: Option<BusCredentials>,
    /// Where device specs come from.
    pub source: DeviceSource,
    /// Which devices this instance serves.
    pub selector: Selector,
    /// The device id form of the KubeEdge topics.
    pub id_form: IdForm,
    /// Re-report every value this often even when unchanged (`None`: only changes).
    pub heartbeat: Option<Duration>,
    /// Collect cycle of properties without `collectCycle`.
    pub default_collect_cycle: Duration,
    /// Report cycle of properties without `reportCycle`.
    pub default_report_cycle: Duration,
    /// Longest wait for [`crate::Driver::connect`].
    pub connect_timeout: Duration,
    /// Longest wait for one batched read (and for a health check).
    pub read_timeout: Duration,
    /// Longest wait for one write.
    pub write_timeout: Duration,
    /// How often [`crate::Session::health`] is asked.
    pub health_interval: Duration,
    /// Consecutive failed read cycles that open a device's circuit breaker.
    pub breaker_threshold: u32,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// How long the devices and sinks get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// A directory of secret files for the database sinks, one per variable name (e.g.
    /// `EDGETWIN_REDIS_PASSWORD`), looked at before the environment (a mounted Secret).
    pub secrets_dir: Option<PathBuf>,
    /// How long after connecting to the broker a mapper that serves no device says so (a
    /// warning naming the node and where devices come from).
    pub no_devices_warning: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node: String::new(),
            broker: BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1883,
            },
            client_id: None,
            credentials: None,
            source: DeviceSource::SpecTopic,
            selector: Selector::default(),
            id_form: IdForm::default(),
            heartbeat: None,
            default_collect_cycle: Duration::from_secs(1),
            default_report_cycle: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(30),
            breaker_threshold: 3,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            metrics_addr: None,
            shutdown_grace: Duration::from_secs(5),
            secrets_dir: None,
            no_devices_warning: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_listed_devices() {
        let id = DeviceId::new("plant", "pump");
        let labels = BTreeMap::from([("line".to_owned(), "north".to_owned())]);
        assert!(Selector::default().matches(&id, &labels));

        let mut by_label = Selector::default();
        by_label.add_label("line=north").expect("valid");
        assert!(by_label.matches(&id, &labels));
        by_label.add_label("floor=2").expect("valid");
        assert!(!by_label.matches(&id, &labels));
        assert!(by_label.add_label("floor").is_err());
        assert!(by_label.add_label("=2").is_err());

        let listed = Selector {
            devices: BTreeSet::from(["plant/pump".to_owned()]),
            ..Selector::default()
        };
        assert!(listed.matches(&id, &labels));
        assert!(!listed.matches(&DeviceId::new("other", "pump"), &labels));
        let by_name = Selector {
            devices: BTreeSet::from(["pump".to_owned()]),
            ..Selector::default()
        };
        assert!(by_name.matches(&DeviceId::new("other", "pump"), &labels));
    }

    #[test]
    fn id_forms_build_topic_ids() {
        let id = DeviceId::new("plant", "pump");
        assert_eq!(
            IdForm::Namespaced.topic_id(&id).map(|t| t.to_string()),
            Ok("plant/pump".to_owned())
        );
        assert_eq!(
            IdForm::NameOnly.topic_id(&id).map(|t| t.to_string()),
            Ok("pump".to_owned())
        );
        assert!(
            IdForm::Namespaced
                .topic_id(&DeviceId::new("a", "b+c"))
                .is_err()
        );
    }
}
