//! The `bus` section of the agent's configuration: the clients that may use the node's broker,
//! anonymous access, the clients' own data topics (re-exported by `edge::config`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Who may use the node's MQTT bus besides the agent, and for what. The embedded broker enforces
/// it; `edge::access::mosquitto` renders the same policy as mosquitto's password and ACL
/// files. See docs/security.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BusConfig {
    /// Mappers and apps that may connect, each with a credentials file the agent writes.
    pub clients: Vec<BusClientConfig>,
    /// Let clients without credentials connect (unmodified KubeEdge mappers): they may report
    /// for the node's devices (`twin/update` only for devices that take no desired values from
    /// the edge), ask for twins and the membership, but never write specs or desired values.
    pub anonymous: bool,
    /// Topic filters the clients may publish and subscribe to for their own data (e.g. a
    /// `pushMethod` MQTT topic), besides the twin topics. Never `$…` or `edgetwin/…`.
    pub data_topics: Vec<String>,
}

/// Client ids starting with this are the agent's (its default id is `edgetwin-edge-{node}`).
pub const AGENT_CLIENT_ID_PREFIX: &str = "edgetwin-edge-";

impl BusConfig {
    /// Checks the clients and data topics; the error names the key. `agent_user` is the
    /// agent's own username on an external broker, which no client may take.
    pub fn check(&self, agent_user: Option<&str>) -> Result<(), (&'static str, String)> {
        let mut names = std::collections::BTreeSet::new();
        for client in &self.clients {
            let name = &client.name;
            let well_formed = !name.is_empty()
                && name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !well_formed {
                return Err((
                    "bus.clients[].name",
                    format!("{name:?}: use 1 to 64 lower-case letters, digits and `-`"),
                ));
            }
            if name.starts_with(AGENT_CLIENT_ID_PREFIX) || Some(name.as_str()) == agent_user {
                return Err((
                    "bus.clients[].name",
                    format!("{name:?} is the agent's own name on the bus"),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(("bus.clients[].name", format!("{name:?} is listed twice")));
            }
            if let Some(device) = client.devices.iter().find(|d| {
                d.split_once('/')
                    .is_none_or(|(ns, n)| ns.is_empty() || n.is_empty() || n.contains('/'))
            }) {
                return Err((
                    "bus.clients[].devices",
                    format!("{device:?} is not namespace/name"),
                ));
            }
        }
        for filter in &self.data_topics {
            let first = filter.split('/').next().unwrap_or_default();
            let reserved = filter.starts_with('$') || matches!(first, "#" | "+" | "edgetwin");
            let levels: Vec<&str> = filter.split('/').collect();
            let malformed = filter.is_empty()
                || filter.contains('\0')
                || levels.iter().enumerate().any(|(i, level)| {
                    (level.contains(['#', '+']) && level.len() > 1)
                        || (*level == "#" && i + 1 != levels.len())
                });
            if reserved || malformed {
                return Err((
                    "bus.dataTopics",
                    format!(
                        "{filter:?}: a topic filter of the clients' own, which cannot match \
                         `$…` or `edgetwin/…` topics (start it with a name, e.g. `data/#`)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A mapper or app that may use the bus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BusClientConfig {
    /// Its MQTT username (lower-case letters, digits and `-`). Client ids equal to it or starting
    /// with `{name}-` are reserved to it.
    pub name: String,
    /// It reports for the node's devices of these protocols (`*`: every device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
    /// And for these devices (`namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Where the agent writes its credentials file (default `{dataDir}/bus/{name}.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}
