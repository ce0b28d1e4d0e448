//! The edge agent's YAML configuration: defaults, loading with clear errors, validation, and the
//! commented default file that `edgetwin edge --print-default-config` prints.
//!
//! Keys are camelCase (like KubeEdge's edgecore config); unknown keys are errors, so a typo is
//! caught at start instead of silently ignored. Every key has a default; an empty file is valid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bus::{BusOptions, Endpoint, TlsFiles};
use crate::edge::store::{StoreOptions, Synchronous};

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// The edge node's name: membership topics and the cloud address this node by it.
    pub node_name: String,
    /// Directory of the store (`edge.db`); created when missing.
    pub data_dir: PathBuf,
    /// The MQTT broker the agent and the mappers meet on.
    pub broker: BrokerConfig,
    /// The cloud tunnel.
    pub cloud: CloudConfig,
    /// The sqlite store.
    pub store: StoreConfig,
    /// Limits on what mappers may send.
    pub limits: LimitsConfig,
    /// The loopback HTTP endpoint for health and metrics.
    pub http: HttpConfig,
}

/// Which broker, and how the agent's client behaves on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Run rumqttd inside the agent (the default when `external` is not set).
    pub embedded: Option<EmbeddedBrokerConfig>,
    /// Use another broker instead.
    pub external: Option<ExternalBrokerConfig>,
    /// The agent's MQTT client id; default `edgetwin-edge-{nodeName}`. Keep it stable: the broker
    /// keeps the agent's session (and undelivered messages) under it.
    pub client_id: Option<String>,
    /// MQTT keep-alive in seconds.
    pub keep_alive_secs: u64,
    /// Largest MQTT packet the agent (and the embedded broker) accepts, in bytes.
    pub max_packet_bytes: usize,
    /// QoS of the messages the agent publishes (0 or 1).
    pub qos: u8,
    /// First reconnect delay in milliseconds (doubles per failure).
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay in milliseconds.
    pub reconnect_max_ms: u64,
}

/// The embedded broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    /// Address to listen on; loopback by default (mappers run on the same host).
    pub listen: SocketAddr,
}

/// An external broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalBrokerConfig {
    /// `mqtt://host:port` (also `tcp://`) or `mqtts://host:port` (also `ssl://`) for TLS.
    pub url: String,
    /// Username, if the broker wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS files (required for `mqtts://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// TLS files for an external broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) that sign the broker's certificate (PEM).
    pub ca_file: PathBuf,
    /// Client certificate chain (PEM), for brokers that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// The cloud tunnel: with a `url`, the node's membership comes from the cloud and its twin
/// changes go there (see `edge::hub_link`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CloudConfig {
    /// The cloud's tunnel URL, e.g. `wss://cloud.example:10000`; none: run without a cloud.
    pub url: Option<String>,
    /// The CA the cloud's certificate must chain to (PEM); required for `wss://`.
    pub ca_file: Option<PathBuf>,
    /// The node's token (from `edgetwin cloud token create NODE`).
    pub token: Option<String>,
    /// A file holding the node's token (instead of `token`).
    pub token_file: Option<PathBuf>,
    /// A client certificate naming the node (PEM), instead of a token.
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub client_key_file: Option<PathBuf>,
    /// Allow a plain `ws://` URL (the token travels in clear): tests and demos only.
    pub insecure: bool,
    /// First reconnect delay ceiling (ms); it doubles up to `reconnectMaxMs`, with jitter.
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay ceiling (ms).
    pub reconnect_max_ms: u64,
    /// The edge sends the cloud its version summary on every connection and this often (s);
    /// the cloud resends what differs.
    pub reconcile_interval_secs: u64,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            url: None,
            ca_file: None,
            token: None,
            token_file: None,
            client_cert_file: None,
            client_key_file: None,
            insecure: false,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            reconcile_interval_secs: 300,
        }
    }
}

/// The sqlite store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `normal`: a committed change survives the agent's death (crash, SIGKILL, OOM kill);
    /// `full`: it also survives power loss, at the cost of an fsync per commit.
    pub synchronous: Synchronous,
    /// Maximum number of cloud-bound outbox entries (one per device property at most).
    pub outbox_capacity: u64,
    /// Maximum number of inbound messages applied in one transaction.
    pub batch_max: usize,
}

/// Limits on what mappers may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest payload the agent parses; larger ones are answered with an error.
    pub max_payload_bytes: usize,
    /// Largest twin value, in bytes of UTF-8.
    pub max_value_bytes: usize,
}

/// The loopback HTTP endpoint (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on; `null` turns the endpoint off.
    pub listen: Option<SocketAddr>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse into the configuration (the message names line and column).
    #[error("{source_name}: {message}")]
    Parse {
        /// The file (or `<string>`).
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{source_name}: `{field}`: {reason}")]
    Invalid {
        /// The file (or `<string>`).
        source_name: String,
        /// The key path, e.g. `broker.external.url`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The broker the agent uses, resolved from [`BrokerConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// Start rumqttd on this address.
    Embedded(SocketAddr),
    /// Connect to this broker.
    External(Endpoint),
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            node_name: default_node_name(),
            data_dir: PathBuf::from("/var/lib/edgetwin"),
            broker: BrokerConfig::default(),
            cloud: CloudConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            embedded: None,
            external: None,
            client_id: None,
            keep_alive_secs: 30,
            max_packet_bytes: 2 << 20,
            qos: 1,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            synchronous: Synchronous::Normal,
            outbox_capacity: StoreOptions::default().outbox_capacity,
            batch_max: 256,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_payload_bytes: 512 * 1024,
            max_value_bytes: 64 * 1024,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 10550))),
        }
    }
}

/// The default embedded broker address.
pub const DEFAULT_BROKER_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1883);

/// The host name, which KubeEdge also uses as the default node name.
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "edge-node".to_owned())
}

/// Reads a config file: its text, and the name errors give it (the path).
pub fn read_config_file(path: &Path) -> Result<(String, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok((text, path.display().to_string()))
}

/// Parses a YAML configuration (empty text: the defaults); errors name `source_name`, line and
/// column.
pub fn parse_config<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    source_name: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        source_name: source_name.to_owned(),
        message: e.to_string(),
    })
}

impl EdgeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<EdgeConfig, ConfigError> {
        let (text, source_name) = read_config_file(path)?;
        EdgeConfig::from_yaml(&text, &source_name)
    }

    /// Parses and validates YAML; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<EdgeConfig, ConfigError> {
        let config: EdgeConfig = parse_config(text, source_name)?;
        config.validate(source_name)?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            source_name: source_name.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        if let Err(e) = edgetwin_model::wire::topic::TopicLevel::new(self.node_name.clone()) {
            return Err(invalid(
                "nodeName",
                &format!("cannot be an MQTT topic level: {e}"),
            ));
        }
        if self.cloud.url.is_some()
            && self.cloud.token.is_none()
            && self.cloud.token_file.is_none()
            && self.cloud.client_cert_file.is_none()
        {
            return Err(invalid(
                "cloud.url",
                "needs a node credential: `token`, `tokenFile` or `clientCertFile`",
            ));
        }
        if self.cloud.token.is_some() && self.cloud.token_file.is_some() {
            return Err(invalid(
                "cloud.token",
                "set either `token` or `tokenFile`, not both",
            ));
        }
        if self.cloud.client_cert_file.is_some() != self.cloud.client_key_file.is_some() {
            return Err(invalid(
                "cloud.clientCertFile",
                "`clientCertFile` and `clientKeyFile` go together",
            ));
        }
        if self.cloud.reconnect_min_ms == 0
            || self.cloud.reconnect_min_ms > self.cloud.reconnect_max_ms
        {
            return Err(invalid(
                "cloud.reconnectMinMs",
                "must be at least 1 and at most cloud.reconnectMaxMs",
            ));
        }
        if self.cloud.reconcile_interval_secs == 0 {
            return Err(invalid("cloud.reconcileIntervalSecs", "must be at least 1"));
        }
        if self.broker.embedded.is_some() && self.broker.external.is_some() {
            return Err(invalid(
                "broker",
                "set either `embedded` or `external`, not both",
            ));
        }
        if self.broker.qos > 1 {
            return Err(invalid("broker.qos", "must be 0 or 1"));
        }
        if self.broker.max_packet_bytes <= self.limits.max_payload_bytes {
            return Err(invalid(
                "broker.maxPacketBytes",
                "must be larger than limits.maxPayloadBytes, so oversize payloads reach the \
                 agent and get an answer instead of breaking the connection",
            ));
        }
        if self.broker.reconnect_min_ms == 0
            || self.broker.reconnect_min_ms > self.broker.reconnect_max_ms
        {
            return Err(invalid(
                "broker.reconnectMinMs",
                "must be at least 1 and at most reconnectMaxMs",
            ));
        }
        if self.store.batch_max == 0 {
            return Err(invalid("store.batchMax", "must be at least 1"));
        }
        if self.store.outbox_capacity == 0 {
            return Err(invalid("store.outboxCapacity", "must be at least 1"));
        }
        if self.limits.max_value_bytes == 0
            || self.limits.max_value_bytes > self.limits.max_payload_bytes
        {
            return Err(invalid(
                "limits.maxValueBytes",
                "must be at least 1 and at most limits.maxPayloadBytes",
            ));
        }
        self.broker_mode()
            .map_err(|reason| invalid("broker.external", &reason))?;
        Ok(())
    }

    /// The broker to use: the embedded one unless `external` is set.
    pub fn broker_mode(&self) -> Result<BrokerMode, String> {
        match (&self.broker.external, &self.broker.embedded) {
            (Some(external), _) => {
                let tls = external.tls.as_ref().map(|tls| TlsFiles {
                    ca_file: tls.ca_file.clone(),
                    cert_file: tls.cert_file.clone(),
                    key_file: tls.key_file.clone(),
                });
                Ok(BrokerMode::External(parse_broker_url(&external.url, tls)?))
            }
            (None, Some(embedded)) => Ok(BrokerMode::Embedded(embedded.listen)),
            (None, None) => Ok(BrokerMode::Embedded(DEFAULT_BROKER_LISTEN)),
        }
    }

    /// The agent's MQTT client id.
    pub fn client_id(&self) -> String {
        self.broker
            .client_id
            .clone()
            .unwrap_or_else(|| format!("edgetwin-edge-{}", self.node_name))
    }

    /// The path of the store file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("edge.db")
    }

    /// Store options from this configuration.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            synchronous: self.store.synchronous,
            outbox_capacity: self.store.outbox_capacity,
        }
    }

    /// Bus options for a broker at `endpoint`, subscribing to `subscriptions`.
    pub fn bus_options(&self, endpoint: Endpoint, subscriptions: Vec<String>) -> BusOptions {
        let credentials = self.broker.external.as_ref().and_then(|external| {
            external
                .username
                .clone()
                .map(|user| (user, external.password.clone().unwrap_or_default()))
        });
        BusOptions {
            endpoint,
            client_id: self.client_id(),
            credentials,
            keep_alive: Duration::from_secs(self.broker.keep_alive_secs),
            max_packet_bytes: self.broker.max_packet_bytes,
            reconnect_min: Duration::from_millis(self.broker.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.broker.reconnect_max_ms),
            subscriptions,
        }
    }

    /// The default configuration as commented YAML (what `--print-default-config` prints). It
    /// parses back to [`EdgeConfig::default`].
    pub fn default_yaml() -> String {
        let d = EdgeConfig::default();
        let listen = DEFAULT_BROKER_LISTEN;
        let http = d.http.listen.map_or("null".to_owned(), |a| a.to_string());
        format!(
            "\
# edgetwin edge agent configuration. Every key is optional; shown are the defaults.
# Run: edgetwin edge --config THIS_FILE [--devices DEVICES.yaml]

# The edge node's name (default: the host name). Membership topics use it.
nodeName: {node}
# Where the store (edge.db, sqlite) lives.
dataDir: {data_dir}

broker:
  # The MQTT broker mappers and the agent meet on. Default: rumqttd inside the agent.
  embedded:
    listen: {listen}
  # Or an external broker (then remove `embedded`):
  # external:
  #   url: mqtts://broker.local:8883     # mqtt:// (tcp://) or mqtts:// (ssl://)
  #   username: edgetwin
  #   password: secret
  #   tls:
  #     caFile: /etc/edgetwin/ca.pem
  #     certFile: /etc/edgetwin/client.pem   # client certificate, if the broker asks for one
  #     keyFile: /etc/edgetwin/client.key
  # clientId: edgetwin-edge-{node}   # keep stable: the broker keeps the session under it
  keepAliveSecs: {keep_alive}
  maxPacketBytes: {max_packet}
  qos: {qos}
  reconnectMinMs: {rmin}
  reconnectMaxMs: {rmax}

cloud:
  # The cloud tunnel URL (wss://host:10000); null: the edge runs alone from its store.
  url: null
  # The CA the cloud's certificate must chain to (PEM); required for wss://.
  caFile: null
  # The node's token (`edgetwin cloud token create NODE`), inline or from a file.
  token: null
  tokenFile: null
  # Or a client certificate naming the node.
  clientCertFile: null
  clientKeyFile: null
  # Allow plain ws:// (the token travels in clear): tests and demos only.
  insecure: false
  reconnectMinMs: 500
  reconnectMaxMs: 30000
  # The node's version summary goes to the cloud on every connection and this often; the
  # cloud resends what differs (repairs drift after crashes or restores).
  reconcileIntervalSecs: 300

store:
  # normal: a committed change survives the agent's death (crash, SIGKILL).
  # full: it also survives power loss (an fsync per commit; see BENCHMARKS.md, Edge agent).
  synchronous: {sync}
  # Maximum cloud-bound entries (coalesced: at most one per device property).
  outboxCapacity: {outbox}
  # Maximum inbound messages applied in one transaction.
  batchMax: {batch}

limits:
  # Larger payloads are answered with a 400 result and not parsed.
  maxPayloadBytes: {max_payload}
  # Largest twin value (UTF-8 bytes).
  maxValueBytes: {max_value}

http:
  # /healthz, /readyz and /metrics (Prometheus); null turns it off.
  listen: {http}
",
            node = d.node_name,
            data_dir = d.data_dir.display(),
            keep_alive = d.broker.keep_alive_secs,
            max_packet = d.broker.max_packet_bytes,
            qos = d.broker.qos,
            rmin = d.broker.reconnect_min_ms,
            rmax = d.broker.reconnect_max_ms,
            sync = match d.store.synchronous {
                Synchronous::Normal => "normal",
                Synchronous::Full => "full",
            },
            outbox = d.store.outbox_capacity,
            batch = d.store.batch_max,
            max_payload = d.limits.max_payload_bytes,
            max_value = d.limits.max_value_bytes,
        )
    }
}

/// Parses `mqtt://host[:port]` (also `tcp://`) and `mqtts://host[:port]` (also `ssl://`).
pub fn parse_broker_url(url: &str, tls: Option<TlsFiles>) -> Result<Endpoint, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a URL like mqtt://host:1883"))?;
    let secure = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => {
            return Err(format!(
                "unsupported scheme `{other}` (use mqtt://, tcp://, mqtts:// or ssl://)"
            ));
        }
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains(['/', '?', '@']) {
        return Err(format!(
            "`{url}`: only scheme://host:port is supported (credentials go in username/password)"
        ));
    }
    let default_port = if secure { 8883 } else { 1883 };
    let (host, port) = split_host_port(authority, default_port)
        .ok_or_else(|| format!("`{url}`: cannot read host and port"))?;
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let tls = match (secure, tls) {
        (true, Some(tls)) => Some(tls),
        (true, None) => return Err(format!("`{url}` uses TLS: set broker.external.tls.caFile")),
        (false, Some(_)) => {
            return Err(format!(
                "`{url}` is plain TCP but tls is set: use mqtts:// for TLS"
            ));
        }
        (false, None) => None,
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, port.parse().ok()?)),
            None if after.is_empty() => Some((host, default_port)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_default_config_parses_back_to_the_defaults() {
        let parsed = EdgeConfig::from_yaml(&EdgeConfig::default_yaml(), "default").unwrap();
        let mut expected = EdgeConfig::default();
        expected.broker.embedded = Some(EmbeddedBrokerConfig {
            listen: DEFAULT_BROKER_LISTEN,
        });
        assert_eq!(parsed, expected);
        assert_eq!(
            parsed.broker_mode().unwrap(),
            EdgeConfig::default().broker_mode().unwrap()
        );
    }

    #[test]
    fn an_empty_file_is_the_default_with_the_embedded_broker() {
        let config = EdgeConfig::from_yaml("", "empty.yaml").unwrap();
        assert_eq!(config, EdgeConfig::default());
        assert_eq!(
            config.broker_mode().unwrap(),
            BrokerMode::Embedded(DEFAULT_BROKER_LISTEN)
        );
        assert_eq!(
            config.client_id(),
            format!("edgetwin-edge-{}", config.node_name)
        );
    }

    #[test]
    fn an_external_broker_with_tls_and_credentials() {
        let yaml = "
nodeName: edge-1
broker:
  external:
    url: mqtts://broker.local
    username: edge
    password: s3cret
    tls:
      caFile: /etc/ca.pem
      certFile: /etc/c.pem
      keyFile: /etc/c.key
";
        let config = EdgeConfig::from_yaml(yaml, "edge.yaml").unwrap();
        let BrokerMode::External(endpoint) = config.broker_mode().unwrap() else {
            panic!("external broker expected");
        };
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port),
            ("broker.local", 8883)
        );
        let bus = config.bus_options(endpoint, vec![]);
        assert_eq!(bus.credentials, Some(("edge".into(), "s3cret".into())));
        assert_eq!(bus.client_id, "edgetwin-edge-edge-1");
        assert!(
            !format!("{bus:?}").contains("s3cret"),
            "no password in debug output"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_file_and_line() {
        let err = EdgeConfig::from_yaml("nodeName: a\nbrokr:\n  qos: 1\n", "edge.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("edge.yaml: "), "{err}");
        assert!(err.contains("brokr") && err.contains("line 2"), "{err}");
        let err = EdgeConfig::from_yaml("store:\n  batchMax: lots\n", "edge.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn values_that_cannot_work_are_refused_with_the_key_named() {
        for (yaml, field) in [
            ("nodeName: a/b", "nodeName"),
            ("nodeName: '+'", "nodeName"),
            (
                "broker:\n  embedded: {listen: '127.0.0.1:1'}\n  external: {url: 'mqtt://x'}",
                "broker",
            ),
            ("broker:\n  qos: 2", "broker.qos"),
            ("broker:\n  maxPacketBytes: 1000", "broker.maxPacketBytes"),
            ("broker:\n  reconnectMinMs: 0", "broker.reconnectMinMs"),
            ("store:\n  batchMax: 0", "store.batchMax"),
            ("store:\n  outboxCapacity: 0", "store.outboxCapacity"),
            ("limits:\n  maxValueBytes: 0", "limits.maxValueBytes"),
            ("broker:\n  external: {url: 'http://x'}", "broker.external"),
            ("broker:\n  external: {url: 'mqtts://x'}", "broker.external"),
        ] {
            let err = EdgeConfig::from_yaml(yaml, "edge.yaml").unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { field: f, .. } if *f == field),
                "{yaml}: {err}"
            );
        }
    }

    #[test]
    fn cloud_settings_that_cannot_work_are_refused_with_the_key_named() {
        for (yaml, field) in [
            ("cloud:\n  url: wss://c:1", "cloud.url"),
            (
                "cloud:\n  url: wss://c:1\n  token: a\n  tokenFile: /t",
                "cloud.token",
            ),
            ("cloud:\n  clientCertFile: /c", "cloud.clientCertFile"),
            ("cloud:\n  reconnectMinMs: 0", "cloud.reconnectMinMs"),
        ] {
            let err = EdgeConfig::from_yaml(yaml, "edge.yaml").unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { field: f, .. } if *f == field),
                "{yaml}: {err}"
            );
        }
        let ok = "cloud:\n  url: wss://c:1\n  caFile: /ca.pem\n  tokenFile: /token";
        let config = EdgeConfig::from_yaml(ok, "edge.yaml").expect("valid");
        assert_eq!(
            config.cloud.token_file.as_deref(),
            Some(Path::new("/token"))
        );
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = EdgeConfig::load(Path::new("/nonexistent/edge.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/edge.yaml"), "{err}");
    }

    #[test]
    fn broker_urls() {
        let ok = |url: &str| {
            let e = parse_broker_url(url, None).unwrap();
            (e.host, e.port)
        };
        assert_eq!(ok("mqtt://127.0.0.1:1884"), ("127.0.0.1".into(), 1884));
        assert_eq!(ok("tcp://broker"), ("broker".into(), 1883));
        assert_eq!(ok("mqtt://[::1]:1999/"), ("::1".into(), 1999));
        assert_eq!(ok("mqtt://[::1]"), ("::1".into(), 1883));
        for bad in [
            "broker:1883",
            "mqtt://",
            "mqtt://host:port",
            "mqtt://user:pw@host",
            "mqtt://host/path",
            "ws://host",
        ] {
            assert!(parse_broker_url(bad, None).is_err(), "{bad}");
        }
        let tls = TlsFiles::default();
        assert!(parse_broker_url("mqtt://h", Some(tls.clone())).is_err());
        assert_eq!(
            parse_broker_url("ssl://h", Some(tls.clone())).unwrap().tls,
            Some(tls)
        );
    }
}
