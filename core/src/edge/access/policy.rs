//! The bus policy: who may connect to the node's broker, and what each client may publish and
//! subscribe to. Pure: the embedded broker asks it per CONNECT, PUBLISH and SUBSCRIBE
//! (`edge::broker`), and [`super::mosquitto`] writes the same rules as mosquitto's files.
//!
//! | who | connects with | may publish | may subscribe to |
//! |---|---|---|---|
//! | the agent | (embedded: in-process link; mosquitto: its own login) | everything | everything |
//! | a client of `bus.clients` | its username and password | `twin/update`, `twin/get`, `state/update`, `$ke/…/data/update` of **its** devices (by protocol or name; protocol `*`: any device), `membership/get` of this node, `bus.dataTopics` | `$hw/events/device/#`, `$hw/events/node/{node}/#`, the node's spec topics, `bus.dataTopics` |
//! | anonymous (`bus.anonymous`) | no login | the same for any device, except `twin/update` of a device that takes desired values from the edge | the same, without the spec topics |
//!
//! Nobody but the agent publishes results, deltas, documents, `membership/updated`, spec
//! messages or `twin/cloud_updated`, or anything else under `$hw/`, `$ke/` and `edgetwin/`. The
//! agent's client id (and every id starting with `edgetwin-edge-`) is refused to every network
//! client, and a client's own name (and `{name}-…`) to everyone but that client, so no client can
//! take over another's session.
//!
//! What a client may write *into* a twin/update (`expected` or only `actual`) is the twin
//! service's decision, per property (`spec.desiredPolicy`): the broker cannot see it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::mac::equal_macs;
use edgetwin_model::wire::topic::{
    DeviceEvent, DeviceId, NodeEvent, Topic, TopicLevel, filter_covers, filter_matches, spec_filter,
};

use super::config::{AGENT_CLIENT_ID_PREFIX, BusConfig};
use crate::edge::store::DeviceKey;

/// Matches every protocol in a client's `protocols`.
pub const ANY_PROTOCOL: &str = "*";

/// A client of `bus.clients`, with its password.
#[derive(Clone)]
pub struct ClientGrant {
    /// Its username.
    pub name: String,
    /// It serves the devices of these protocols ([`ANY_PROTOCOL`]: all).
    pub protocols: BTreeSet<String>,
    /// And these devices (`namespace/name`).
    pub devices: BTreeSet<String>,
    /// Its password.
    password: String,
}

impl std::fmt::Debug for ClientGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientGrant")
            .field("name", &self.name)
            .field("protocols", &self.protocols)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl ClientGrant {
    /// A grant from the configuration and the client's password.
    pub fn new(config: &super::config::BusClientConfig, password: String) -> ClientGrant {
        ClientGrant {
            name: config.name.clone(),
            protocols: config.protocols.iter().cloned().collect(),
            devices: config.devices.iter().cloned().collect(),
            password,
        }
    }

    /// The password (for mosquitto's password file).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Whether the client serves every device of the node.
    pub fn serves_any(&self) -> bool {
        self.protocols.contains(ANY_PROTOCOL)
    }

    /// Whether the client serves `device`.
    fn serves(&self, key: &DeviceKey, facts: &DeviceFacts) -> bool {
        self.serves_any()
            || facts
                .protocol
                .as_ref()
                .is_some_and(|p| self.protocols.contains(p))
            || self.devices.contains(&key.to_string())
    }

    /// Whether `client_id` is one this client owns (its name, or `{name}-…`).
    fn owns_client_id(&self, client_id: &str) -> bool {
        client_id
            .strip_prefix(self.name.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    }
}

/// Who a connected network client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A client of `bus.clients` (its index).
    Client(usize),
    /// A client without credentials (`bus.anonymous`).
    Anonymous,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Unknown username or wrong password.
    #[error("bad username or password")]
    BadLogin,
    /// No credentials, and `bus.anonymous` is off.
    #[error("no credentials, and anonymous clients are not allowed (bus.anonymous)")]
    AnonymousNotAllowed,
    /// The client id is the agent's, or another client's.
    #[error("the client id is reserved to another client")]
    ReservedClientId,
}

/// What the policy needs to know of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Its protocol (the Device's, else its model's).
    pub protocol: Option<String>,
    /// Whether some property takes desired values from the edge (`desiredPolicy`).
    pub takes_edge_desired: bool,
}

/// The node's devices, as the policy sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIndex {
    devices: BTreeMap<DeviceKey, DeviceFacts>,
    by_name: HashMap<String, Vec<DeviceKey>>,
}

impl DeviceIndex {
    /// The index of `devices` (each with its model, when known).
    pub fn of<'a>(
        devices: impl IntoIterator<Item = (&'a Device, Option<&'a DeviceModel>)>,
    ) -> DeviceIndex {
        let mut index = DeviceIndex::default();
        for (device, model) in devices {
            let key = DeviceKey::new(device.namespace(), device.name());
            let protocol = device
                .protocol_name()
                .or_else(|| model.and_then(|m| m.spec.protocol.as_deref()))
                .map(str::to_owned);
            index
                .by_name
                .entry(key.name.clone())
                .or_default()
                .push(key.clone());
            index.devices.insert(
                key,
                DeviceFacts {
                    protocol,
                    takes_edge_desired: device.takes_edge_desired(),
                },
            );
        }
        index
    }

    /// Every device.
    pub fn iter(&self) -> impl Iterator<Item = (&DeviceKey, &DeviceFacts)> {
        self.devices.iter()
    }

    /// The one device a topic id names; `None` when unknown or ambiguous.
    fn resolve(&self, id: &DeviceId) -> Option<(&DeviceKey, &DeviceFacts)> {
        match id.namespace() {
            Some(namespace) => self
                .devices
                .get_key_value(&DeviceKey::new(namespace, id.name())),
            None => match self.by_name.get(id.name()).map(Vec::as_slice) {
                Some([key]) => self.devices.get_key_value(key),
                _ => None,
            },
        }
    }

    /// Whether a `{name}` id names one device only (so it may appear in ACLs).
    pub fn name_is_unique(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|keys| keys.len() == 1)
    }
}

/// The policy of one node's bus.
#[derive(Debug, Clone)]
pub struct BusPolicy {
    node: TopicLevel,
    agent_client_id: String,
    clients: Vec<ClientGrant>,
    anonymous: bool,
    data_topics: Vec<String>,
}

impl BusPolicy {
    /// The policy of `config` for `node`, whose agent uses `agent_client_id`; `clients` are the
    /// grants of `config.clients` with their passwords.
    pub fn new(
        node: TopicLevel,
        agent_client_id: String,
        config: &BusConfig,
        clients: Vec<ClientGrant>,
    ) -> BusPolicy {
        BusPolicy {
            node,
            agent_client_id,
            clients,
            anonymous: config.anonymous,
            data_topics: config.data_topics.clone(),
        }
    }

    /// The node.
    pub fn node(&self) -> &TopicLevel {
        &self.node
    }

    /// The clients.
    pub fn clients(&self) -> &[ClientGrant] {
        &self.clients
    }

    /// Whether clients without credentials may connect.
    pub fn anonymous(&self) -> bool {
        self.anonymous
    }

    /// The clients' data topic filters.
    pub fn data_topics(&self) -> &[String] {
        &self.data_topics
    }

    /// The name of a principal, for logs.
    pub fn name_of(&self, who: Principal) -> &str {
        match who {
            Principal::Client(index) => self.clients.get(index).map_or("?", |c| c.name.as_str()),
            Principal::Anonymous => "anonymous",
        }
    }

    /// Decides a network client's CONNECT.
    pub fn authenticate(
        &self,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Principal, Refusal> {
        if client_id == self.agent_client_id || client_id.starts_with(AGENT_CLIENT_ID_PREFIX) {
            return Err(Refusal::ReservedClientId);
        }
        let who = match login {
            Some((username, password)) => {
                let index = self
                    .clients
                    .iter()
                    .position(|c| c.name == username)
                    .ok_or(Refusal::BadLogin)?;
                if !equal_macs(self.clients[index].password.as_bytes(), password.as_bytes()) {
                    return Err(Refusal::BadLogin);
                }
                Principal::Client(index)
            }
            None if self.anonymous => Principal::Anonymous,
            None => return Err(Refusal::AnonymousNotAllowed),
        };
        let owner = self
            .clients
            .iter()
            .position(|c| c.owns_client_id(client_id));
        match (owner, who) {
            (Some(owner), Principal::Client(index)) if owner != index => {
                Err(Refusal::ReservedClientId)
            }
            (Some(_), Principal::Anonymous) => Err(Refusal::ReservedClientId),
            _ => Ok(who),
        }
    }

    /// Whether `who` may publish on `topic`, with the node's `devices` as they are now.
    pub fn may_publish(&self, who: Principal, topic: &str, devices: &DeviceIndex) -> bool {
        if !is_reserved(topic) {
            return self.data_topics.iter().any(|f| filter_matches(f, topic));
        }
        // The device the topic names, when `who` may speak for it. A client of every protocol,
        // and an anonymous one, may also name devices the node does not have (the agent answers
        // 404); any other client only its own devices.
        let serves = |id: &DeviceId| -> Option<&DeviceFacts> {
            let known = devices.resolve(id);
            match who {
                Principal::Client(index) => {
                    let client = self.clients.get(index)?;
                    match known {
                        Some((key, facts)) => client.serves(key, facts).then_some(facts),
                        None => client.serves_any().then_some(&NO_FACTS),
                    }
                }
                Principal::Anonymous => Some(known.map_or(&NO_FACTS, |(_, facts)| facts)),
            }
        };
        match Topic::parse(topic) {
            Ok(Topic::Device { id, event }) => match event {
                DeviceEvent::TwinGet | DeviceEvent::StateUpdate => serves(&id).is_some(),
                DeviceEvent::TwinUpdate => serves(&id).is_some_and(|facts| {
                    matches!(who, Principal::Client(_)) || !facts.takes_edge_desired
                }),
                _ => false,
            },
            Ok(Topic::DataUpdate { id }) => serves(&id).is_some(),
            Ok(Topic::Node {
                node,
                event: NodeEvent::MembershipGet,
            }) => node == self.node,
            _ => false,
        }
    }

    /// Whether `who` may subscribe to `filter`.
    pub fn may_subscribe(&self, who: Principal, filter: &str) -> bool {
        self.read_grants(who)
            .iter()
            .chain(&self.data_topics)
            .any(|grant| filter_covers(grant, filter))
    }

    /// The filters `who` may read (besides the data topics).
    pub fn read_grants(&self, who: Principal) -> Vec<String> {
        let mut grants = vec![
            "$hw/events/device/#".to_owned(),
            format!("$hw/events/node/{}/#", self.node),
            "$ke/events/device/#".to_owned(),
        ];
        if matches!(who, Principal::Client(_)) {
            grants.push(spec_filter(&self.node));
        }
        grants
    }
}

/// Facts of a device the node does not have (anonymous requests for it get a 404 answer).
static NO_FACTS: DeviceFacts = DeviceFacts {
    protocol: None,
    takes_edge_desired: false,
};

/// Whether `topic` is in a namespace the policy governs (`$…` and `edgetwin/…`); any other topic
/// is a data topic.
pub fn is_reserved(topic: &str) -> bool {
    topic.starts_with('$') || topic == "edgetwin" || topic.starts_with("edgetwin/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::access::config::BusClientConfig;

    const NODE: &str = "n1";

    fn device(namespace: &str, name: &str, protocol: &str, edge_desired: bool) -> Device {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": NODE,
                "protocol": {"protocolName": protocol},
                "desiredPolicy": if edge_desired { "EdgeMayWrite" } else { "CloudWins" },
            }
        }))
        .expect("device")
    }

    fn node_policy(anonymous: bool) -> (BusPolicy, DeviceIndex) {
        let config = BusConfig {
            clients: vec![],
            anonymous,
            data_topics: vec!["data/#".into()],
        };
        let gpio = BusClientConfig {
            name: "gpio".into(),
            protocols: vec!["gpio".into()],
            ..BusClientConfig::default()
        };
        let app = BusClientConfig {
            name: "app".into(),
            devices: vec!["plant/pump".into()],
            ..BusClientConfig::default()
        };
        let clients = vec![
            ClientGrant::new(&gpio, "gpio-secret".into()),
            ClientGrant::new(&app, "app-secret".into()),
        ];
        let policy = BusPolicy::new(
            TopicLevel::new(NODE).expect("node"),
            "edgetwin-edge-n1".into(),
            &config,
            clients,
        );
        let devices = [
            device("default", "light", "gpio", false),
            device("plant", "pump", "modbus", true),
            device("plant", "light", "modbus", false),
        ];
        let index = DeviceIndex::of(devices.iter().map(|d| (d, None)));
        (policy, index)
    }

    #[test]
    fn clients_authenticate_with_their_password_and_reserved_ids_are_refused() {
        let (policy, _) = node_policy(false);
        assert_eq!(
            policy.authenticate("gpio-1234", Some(("gpio", "gpio-secret"))),
            Ok(Principal::Client(0))
        );
        assert_eq!(
            policy.authenticate("anything", Some(("gpio", "wrong"))),
            Err(Refusal::BadLogin)
        );
        assert_eq!(
            policy.authenticate("anything", Some(("nobody", "gpio-secret"))),
            Err(Refusal::BadLogin)
        );
        assert_eq!(
            policy.authenticate("anything", None),
            Err(Refusal::AnonymousNotAllowed)
        );
        for (id, login) in [
            ("edgetwin-edge-n1", Some(("gpio", "gpio-secret"))),
            ("edgetwin-edge-other", Some(("app", "app-secret"))),
            ("gpio", Some(("app", "app-secret"))),
            ("gpio-42", Some(("app", "app-secret"))),
        ] {
            assert_eq!(
                policy.authenticate(id, login),
                Err(Refusal::ReservedClientId),
                "{id}"
            );
        }
        // `gpiox` is not `gpio`'s.
        assert!(
            policy
                .authenticate("gpiox", Some(("app", "app-secret")))
                .is_ok()
        );
        let (open, _) = node_policy(true);
        assert_eq!(
            open.authenticate("kubeedge-mapper", None),
            Ok(Principal::Anonymous)
        );
        assert_eq!(
            open.authenticate("gpio-1", None),
            Err(Refusal::ReservedClientId)
        );
        assert_eq!(
            open.authenticate("edgetwin-edge-n1", None),
            Err(Refusal::ReservedClientId)
        );
    }

    #[test]
    fn a_client_reports_for_its_own_devices_only_and_never_writes_what_the_agent_owns() {
        let (policy, devices) = node_policy(false);
        let gpio = Principal::Client(0);
        let app = Principal::Client(1);
        let allowed = |who, topic: &str| policy.may_publish(who, topic, &devices);
        for topic in [
            "$hw/events/device/default/light/twin/update",
            "$hw/events/device/default/light/twin/get",
            "$hw/events/device/default/light/state/update",
            // Another protocol's device.
            "$hw/events/device/plant/light/twin/get",
            "$ke/events/device/default/light/data/update",
            "$hw/events/node/n1/membership/get",
            "data/lamp/brightness",
        ] {
            let expected = !topic.contains("plant/light");
            assert_eq!(allowed(gpio, topic), expected, "{topic}");
        }
        assert!(allowed(app, "$hw/events/device/plant/pump/twin/update"));
        assert!(allowed(app, "$hw/events/device/pump/twin/update"));
        assert!(!allowed(app, "$hw/events/device/default/light/twin/update"));
        // `light` is in two namespaces: the name-only form names no one device.
        assert!(!allowed(gpio, "$hw/events/device/light/twin/update"));
        for topic in [
            "edgetwin/v1/node/n1/device/default/light/spec",
            "$hw/events/device/default/light/twin/update/delta",
            "$hw/events/device/default/light/twin/update/result",
            "$hw/events/device/default/light/twin/update/document",
            "$hw/events/device/default/light/twin/get/result",
            "$hw/events/device/default/light/twin/cloud_updated",
            "$hw/events/node/n1/membership/updated",
            "$hw/events/node/n2/membership/get",
            "$hw/events/upload/anything",
            "$SYS/broker",
            "edgetwin/anything",
            "other/topic",
            "$hw/events/device/default/unknown/twin/update",
        ] {
            assert!(!allowed(gpio, topic), "{topic}");
            assert!(!allowed(app, topic), "{topic}");
        }
    }

    #[test]
    fn anonymous_clients_report_but_never_write_desired_values() {
        let (policy, devices) = node_policy(true);
        let allowed = |topic: &str| policy.may_publish(Principal::Anonymous, topic, &devices);
        assert!(allowed("$hw/events/device/default/light/twin/update"));
        assert!(allowed("$hw/events/device/plant/pump/twin/get"));
        assert!(allowed("$hw/events/device/plant/pump/state/update"));
        // The pump takes desired values from the edge: anonymous clients may not write it.
        assert!(!allowed("$hw/events/device/plant/pump/twin/update"));
        assert!(!allowed("$hw/events/device/pump/twin/update"));
        assert!(!allowed("edgetwin/v1/node/n1/device/default/light/spec"));
        assert!(!allowed(
            "$hw/events/device/default/light/twin/update/delta"
        ));
    }

    #[test]
    fn subscriptions_stay_within_what_each_may_read() {
        let (policy, _) = node_policy(true);
        let gpio = Principal::Client(0);
        let anonymous = Principal::Anonymous;
        for filter in [
            "$hw/events/device/+/+/twin/update/delta",
            "$hw/events/device/#",
            "$hw/events/node/n1/membership/updated",
            "data/#",
        ] {
            assert!(policy.may_subscribe(gpio, filter), "{filter}");
            assert!(policy.may_subscribe(anonymous, filter), "{filter}");
        }
        let specs = "edgetwin/v1/node/n1/device/+/+/spec";
        assert!(policy.may_subscribe(gpio, specs));
        assert!(!policy.may_subscribe(anonymous, specs));
        for filter in [
            "#",
            "+/#",
            "edgetwin/#",
            "$hw/#",
            "$hw/events/node/n2/#",
            "$SYS/#",
        ] {
            assert!(!policy.may_subscribe(gpio, filter), "{filter}");
        }
    }
}
