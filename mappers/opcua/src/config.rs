//! The OPC-UA parts of a Device: `protocol.configData` ([`ProtocolConfig`]) and each property's
//! `visitors.configData` ([`VisitorConfig`]), with KubeEdge's keys and ours, checked into
//! [`DeviceSettings`] and [`PointSettings`] with errors that name the field.
//!
//! KubeEdge's keys are read as KubeEdge documents them: `url`, `securityPolicy`, `securityMode`,
//! `userName`, `certificate`, `privateKey`, `timeout` (seconds) and, per property, `nodeID` and
//! `browseName`. Two deliberate differences: a password is never taken inline (`password` is
//! refused; `passwordFile` or `passwordEnv` name where it is), and the server certificate to trust
//! is named by `serverCertificate` (KubeEdge v1alpha2's `remoteCertificate` is read too).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::node::{NodeAddress, parse_browse_path, parse_node_id};

/// Default timeout of one request (and of the connection's handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default interval of the keep-alive read that detects a dead server.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Default sampling interval of a subscribed property.
pub const DEFAULT_SAMPLING_INTERVAL: Duration = Duration::from_millis(500);
/// Default queue size of a subscribed property's monitored item.
pub const DEFAULT_QUEUE_SIZE: u32 = 1;
/// Longest password file read (a password is short; anything larger is a wrong path).
pub const MAX_PASSWORD_FILE: u64 = 4096;
/// Longest `nodeID` or browse path accepted.
pub const MAX_ADDRESS_LEN: usize = 1024;

/// A configuration problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The key (`url`, `nodeID`, …).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// `protocol.configData` of an OPC-UA device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolConfig {
    /// The server's endpoint, `opc.tcp://host:port[/path]`.
    #[serde(default, alias = "endpoint", alias = "endpointUrl")]
    pub url: Option<String>,
    /// `None` (default), `Basic256Sha256`, `Aes128_Sha256_RsaOaep` or `Aes256_Sha256_RsaPss`.
    #[serde(default)]
    pub security_policy: Option<String>,
    /// `None` (default), `Sign` or `SignAndEncrypt`.
    #[serde(default)]
    pub security_mode: Option<String>,
    /// The user to log in as; without it (and without `userCertificate`) the session is
    /// anonymous.
    #[serde(default, alias = "username")]
    pub user_name: Option<String>,
    /// A file holding the user's password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable of the mapper holding the user's password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Refused: a password written into the Device would be stored and shown with it.
    #[serde(default)]
    pub password: Option<Json>,
    /// X.509 user identity: the user's certificate (DER or PEM).
    #[serde(default)]
    pub user_certificate: Option<PathBuf>,
    /// X.509 user identity: the user's private key (PEM).
    #[serde(default)]
    pub user_private_key: Option<PathBuf>,
    /// The client application's certificate (default: the mapper's own, generated in its data
    /// directory on first start).
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The client application's private key (with `certificate`).
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// The application URI in `certificate` (default: the mapper's own).
    #[serde(default)]
    pub application_uri: Option<String>,
    /// The server certificate(s) to trust, besides those in the data directory's trust list.
    /// KubeEdge v1alpha2: `remoteCertificate`.
    #[serde(default, alias = "remoteCertificate", alias = "serverCertificates")]
    pub server_certificate: Option<OneOrMany>,
    /// Request and connection timeout in seconds (KubeEdge's unit; default 5).
    #[serde(default, deserialize_with = "number")]
    pub timeout: Option<f64>,
    /// The same in milliseconds (wins over `timeout`).
    #[serde(default, deserialize_with = "number")]
    pub timeout_ms: Option<u64>,
    /// How often the session's keep-alive read runs, in milliseconds (default 5000).
    #[serde(default, deserialize_with = "number")]
    pub keep_alive_interval_ms: Option<u64>,
    /// Every other key: ignored, with a warning.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// One path or a list of paths.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One path.
    One(PathBuf),
    /// Several paths.
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<PathBuf> {
        match self {
            OneOrMany::One(path) => vec![path],
            OneOrMany::Many(paths) => paths,
        }
    }
}

/// `properties[].visitors.configData` of an OPC-UA property.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorConfig {
    /// The node, `ns=2;i=7`, `ns=2;s=Line1.Speed`, `ns=3;g=…`, `ns=2;b=…` (base64) or `i=2258`.
    #[serde(default, rename = "nodeID", alias = "nodeId", alias = "nodeid")]
    pub node_id: Option<String>,
    /// A browse path from the Objects folder, e.g. `2:Boiler/2:Temperature` (OPC UA relative
    /// path syntax). Used when there is no `nodeID`.
    #[serde(default)]
    pub browse_path: Option<String>,
    /// KubeEdge's key: with a `nodeID` only a label; alone, read as a browse path.
    #[serde(default)]
    pub browse_name: Option<String>,
    /// Push this property from a monitored item instead of polling it.
    #[serde(default)]
    pub subscribe: Option<SubscribeConfig>,
    /// Every other key: ignored, with a warning.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

/// How a property is monitored (`visitors.configData.subscribe`). `subscribe: {}` takes every
/// default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscribeConfig {
    /// How often the server samples the value, in milliseconds (default 500).
    #[serde(default, deserialize_with = "number")]
    pub sampling_interval: Option<f64>,
    /// How often the server sends changes, in milliseconds (default: the sampling interval).
    /// Properties with the same publishing interval share one subscription.
    #[serde(default, deserialize_with = "number")]
    pub publishing_interval: Option<f64>,
    /// How many changes the server queues between two publishes (default 1: the latest).
    #[serde(default, deserialize_with = "number")]
    pub queue_size: Option<u32>,
    /// Report a change only when it exceeds this absolute amount (`deadband: 0.5`) or, with
    /// `{type: percent, value: 2}`, this percentage of the node's EURange.
    #[serde(default)]
    pub deadband: Option<DeadbandConfig>,
}

/// A deadband: a number (absolute) or `{type, value}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DeadbandConfig {
    /// An absolute deadband.
    Absolute(f64),
    /// `{type: absolute|percent, value}`.
    Typed {
        /// `absolute` or `percent`.
        #[serde(rename = "type")]
        kind: String,
        /// The amount.
        value: f64,
    },
}

/// The security policy of the secure channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityPolicy {
    /// No signing, no encryption.
    None,
    /// Basic256Sha256.
    Basic256Sha256,
    /// Aes128_Sha256_RsaOaep.
    Aes128Sha256RsaOaep,
    /// Aes256_Sha256_RsaPss.
    Aes256Sha256RsaPss,
}

impl SecurityPolicy {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256Sha256 => "Basic256Sha256",
            SecurityPolicy::Aes128Sha256RsaOaep => "Aes128_Sha256_RsaOaep",
            SecurityPolicy::Aes256Sha256RsaPss => "Aes256_Sha256_RsaPss",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let key: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        // Also the policy URI's fragment (`…/SecurityPolicy#Basic256Sha256`).
        let key = key
            .strip_prefix("httpopcfoundationorguasecuritypolicy")
            .unwrap_or(&key);
        match key {
            "" | "none" => Some(SecurityPolicy::None),
            "basic256sha256" => Some(SecurityPolicy::Basic256Sha256),
            "aes128sha256rsaoaep" => Some(SecurityPolicy::Aes128Sha256RsaOaep),
            "aes256sha256rsapss" => Some(SecurityPolicy::Aes256Sha256RsaPss),
            _ => None,
        }
    }
}

impl fmt::Display for SecurityPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message security mode of the secure channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// Messages neither signed nor encrypted.
    None,
    /// Messages signed.
    Sign,
    /// Messages signed and encrypted.
    SignAndEncrypt,
}

impl SecurityMode {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            SecurityMode::None => "None",
            SecurityMode::Sign => "Sign",
            SecurityMode::SignAndEncrypt => "SignAndEncrypt",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text
            .to_ascii_lowercase()
            .replace(['_', '-', ' '], "")
            .as_str()
        {
            "" | "none" => Some(SecurityMode::None),
            "sign" => Some(SecurityMode::Sign),
            "signandencrypt" => Some(SecurityMode::SignAndEncrypt),
            _ => None,
        }
    }
}

impl fmt::Display for SecurityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the user's password is: never the password itself, so that settings can be logged and
/// compared freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file; read at each connect (so a changed password is picked up on the next one).
    File(PathBuf),
    /// An environment variable of the mapper.
    Env(String),
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::File(path) => write!(f, "passwordFile {}", path.display()),
            PasswordSource::Env(name) => write!(f, "passwordEnv {name}"),
        }
    }
}

/// Who the session logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No user.
    Anonymous,
    /// A user name and where its password is.
    UserName {
        /// The user.
        user: String,
        /// Where the password is.
        password: PasswordSource,
    },
    /// An X.509 user certificate and its private key.
    Certificate {
        /// The certificate file.
        certificate: PathBuf,
        /// The private key file.
        private_key: PathBuf,
    },
}

/// The client application's own certificate, when the device names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationCertificate {
    /// The certificate file.
    pub certificate: PathBuf,
    /// The private key file.
    pub private_key: PathBuf,
}

/// A device's checked connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// The endpoint URL.
    pub url: String,
    /// The security policy.
    pub policy: SecurityPolicy,
    /// The message security mode.
    pub mode: SecurityMode,
    /// Who logs in.
    pub identity: Identity,
    /// The device's own client certificate, if not the mapper's.
    pub certificate: Option<ApplicationCertificate>,
    /// The application URI to announce (the mapper's when `None`).
    pub application_uri: Option<String>,
    /// Server certificates to trust besides the data directory's trust list.
    pub server_certificates: Vec<PathBuf>,
    /// Timeout of one request and of the handshake.
    pub timeout: Duration,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

/// A property's checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSettings {
    /// Where the value lives.
    pub address: NodeAddress,
    /// How it is monitored, when pushed rather than polled.
    pub subscribe: Option<Monitoring>,
}

/// A monitored item's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Monitoring {
    /// Sampling interval.
    pub sampling_interval: Duration,
    /// Publishing interval of the subscription the item joins.
    pub publishing_interval: Duration,
    /// Queue size.
    pub queue_size: u32,
    /// Deadband, if any.
    pub deadband: Option<Deadband>,
}

/// A data change deadband.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deadband {
    /// Changes smaller than this amount are not reported.
    Absolute(f64),
    /// Changes smaller than this percentage of the node's EURange are not reported.
    Percent(f64),
}

impl ProtocolConfig {
    /// Checks the configuration into settings; the error names the field.
    pub fn settings(&self) -> Result<DeviceSettings, ConfigError> {
        if self.password.is_some() {
            // Never echo the value: it is a secret.
            return Err(ConfigError::new(
                "password",
                "a password is never taken inline (the Device would store and show it); put it in \
                 a file named by passwordFile, or in an environment variable of the mapper named \
                 by passwordEnv",
            ));
        }
        let url = match self.url.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(ConfigError::new(
                    "url",
                    "missing: the server's endpoint, e.g. opc.tcp://plc.local:4840",
                ));
            }
            Some(url) => url,
        };
        check_url(url)?;
        let policy = match self.security_policy.as_deref() {
            None => SecurityPolicy::None,
            Some(text) => SecurityPolicy::parse(text).ok_or_else(|| {
                ConfigError::new(
                    "securityPolicy",
                    format!(
                        "{text:?} is not supported; use None, Basic256Sha256, \
                         Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss"
                    ),
                )
            })?,
        };
        let mode = match self.security_mode.as_deref() {
            None if policy == SecurityPolicy::None => SecurityMode::None,
            // A security policy without a mode means the stronger one.
            None => SecurityMode::SignAndEncrypt,
            Some(text) => SecurityMode::parse(text).ok_or_else(|| {
                ConfigError::new(
                    "securityMode",
                    format!("{text:?} is not a mode; use None, Sign or SignAndEncrypt"),
                )
            })?,
        };
        match (policy, mode) {
            (SecurityPolicy::None, SecurityMode::Sign | SecurityMode::SignAndEncrypt) => {
                return Err(ConfigError::new(
                    "securityMode",
                    format!("{mode} needs a securityPolicy other than None"),
                ));
            }
            (SecurityPolicy::None, SecurityMode::None) | (_, SecurityMode::Sign) => {}
            (_, SecurityMode::SignAndEncrypt) => {}
            (_, SecurityMode::None) => {
                return Err(ConfigError::new(
                    "securityMode",
                    format!(
                        "None cannot be used with securityPolicy {policy}; use Sign or SignAndEncrypt"
                    ),
                ));
            }
        }
        let identity = self.identity()?;
        let certificate = match (&self.certificate, &self.private_key) {
            (None, None) => None,
            (Some(certificate), Some(private_key)) => Some(ApplicationCertificate {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            }),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "privateKey",
                    "missing: certificate needs its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "certificate",
                    "missing: privateKey needs its certificate",
                ));
            }
        };
        let timeout = match (self.timeout_ms, self.timeout) {
            (Some(ms), _) => positive_duration("timeoutMs", ms as f64 / 1000.0)?,
            (None, Some(seconds)) => positive_duration("timeout", seconds)?,
            (None, None) => DEFAULT_TIMEOUT,
        };
        let keep_alive = match self.keep_alive_interval_ms {
            Some(ms) => positive_duration("keepAliveIntervalMs", ms as f64 / 1000.0)?,
            None => DEFAULT_KEEP_ALIVE,
        };
        Ok(DeviceSettings {
            url: url.to_owned(),
            policy,
            mode,
            identity,
            certificate,
            application_uri: self.application_uri.clone(),
            server_certificates: self
                .server_certificate
                .clone()
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
            timeout,
            keep_alive,
        })
    }

    fn identity(&self) -> Result<Identity, ConfigError> {
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "passwordFile",
                    "give passwordFile or passwordEnv, not both",
                ));
            }
            (Some(path), None) => Some(PasswordSource::File(path.clone())),
            (None, Some(name)) if name.trim().is_empty() => {
                return Err(ConfigError::new("passwordEnv", "empty variable name"));
            }
            (None, Some(name)) => Some(PasswordSource::Env(name.clone())),
            (None, None) => None,
        };
        let user_certificate = match (&self.user_certificate, &self.user_private_key) {
            (None, None) => None,
            (Some(certificate), Some(private_key)) => Some((certificate, private_key)),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "userPrivateKey",
                    "missing: userCertificate needs its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "userCertificate",
                    "missing: userPrivateKey needs its certificate",
                ));
            }
        };
        let user = self.user_name.as_deref().map(str::trim);
        match (user, password, user_certificate) {
            (Some(_), _, Some(_)) => Err(ConfigError::new(
                "userCertificate",
                "give userName or userCertificate, not both",
            )),
            (Some(""), _, None) => Err(ConfigError::new("userName", "empty user name")),
            (Some(user), Some(password), None) => Ok(Identity::UserName {
                user: user.to_owned(),
                password,
            }),
            (Some(_), None, None) => Err(ConfigError::new(
                "passwordFile",
                "missing: userName needs a password, from a file (passwordFile) or an \
                 environment variable (passwordEnv)",
            )),
            (None, Some(_), _) => Err(ConfigError::new(
                "userName",
                "missing: a password is given but no userName",
            )),
            (None, None, Some((certificate, private_key))) => Ok(Identity::Certificate {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            }),
            (None, None, None) => Ok(Identity::Anonymous),
        }
    }

    /// Keys this mapper does not know (reported as warnings).
    pub fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.other.keys().map(String::as_str)
    }
}

impl VisitorConfig {
    /// Checks the visitor into settings; the error names the field.
    pub fn settings(&self) -> Result<PointSettings, ConfigError> {
        let address = match (&self.node_id, &self.browse_path, &self.browse_name) {
            (Some(node_id), _, _) => {
                check_len("nodeID", node_id)?;
                NodeAddress::Id(
                    parse_node_id(node_id)
                        .map_err(|message| ConfigError::new("nodeID", message))?,
                )
            }
            (None, Some(path), _) => browse("browsePath", path)?,
            (None, None, Some(path)) => browse("browseName", path)?,
            (None, None, None) => {
                return Err(ConfigError::new(
                    "nodeID",
                    "missing: name the node by nodeID (e.g. ns=2;s=Temperature) or browsePath \
                     (e.g. 2:Boiler/2:Temperature)",
                ));
            }
        };
        let subscribe = self.subscribe.as_ref().map(monitoring).transpose()?;
        Ok(PointSettings { address, subscribe })
    }

    /// Keys this mapper does not know (reported as warnings).
    pub fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.other.keys().map(String::as_str)
    }
}

fn browse(field: &str, path: &str) -> Result<NodeAddress, ConfigError> {
    check_len(field, path)?;
    parse_browse_path(path)
        .map(NodeAddress::Path)
        .map_err(|message| ConfigError::new(field, message))
}

fn check_len(field: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_ADDRESS_LEN {
        return Err(ConfigError::new(
            field,
            format!("longer than {MAX_ADDRESS_LEN} bytes"),
        ));
    }
    Ok(())
}

fn monitoring(config: &SubscribeConfig) -> Result<Monitoring, ConfigError> {
    let sampling_interval = match config.sampling_interval {
        Some(ms) => non_negative_ms("subscribe.samplingInterval", ms)?,
        None => DEFAULT_SAMPLING_INTERVAL,
    };
    let publishing_interval = match config.publishing_interval {
        Some(ms) => non_negative_ms("subscribe.publishingInterval", ms)?,
        None => sampling_interval,
    };
    let queue_size = match config.queue_size {
        Some(0) => {
            return Err(ConfigError::new(
                "subscribe.queueSize",
                "must be at least 1",
            ));
        }
        Some(size) => size,
        None => DEFAULT_QUEUE_SIZE,
    };
    let deadband = match &config.deadband {
        None => None,
        Some(DeadbandConfig::Absolute(value)) => Some(Deadband::Absolute(*value)),
        Some(DeadbandConfig::Typed { kind, value }) => match kind.to_ascii_lowercase().as_str() {
            "absolute" => Some(Deadband::Absolute(*value)),
            "percent" => Some(Deadband::Percent(*value)),
            other => {
                return Err(ConfigError::new(
                    "subscribe.deadband.type",
                    format!("{other:?}: use absolute or percent"),
                ));
            }
        },
    };
    match deadband {
        Some(Deadband::Absolute(v) | Deadband::Percent(v)) if !(v.is_finite() && v >= 0.0) => {
            return Err(ConfigError::new(
                "subscribe.deadband",
                format!("{v} is not a non-negative number"),
            ));
        }
        Some(Deadband::Percent(v)) if v > 100.0 => {
            return Err(ConfigError::new(
                "subscribe.deadband",
                format!("{v} percent is more than 100"),
            ));
        }
        _ => {}
    }
    Ok(Monitoring {
        sampling_interval,
        publishing_interval,
        queue_size,
        deadband,
    })
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    let Some(rest) = url.strip_prefix("opc.tcp://") else {
        return Err(ConfigError::new(
            "url",
            format!("{url:?} is not an opc.tcp:// URL"),
        ));
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    if host_port.is_empty() {
        return Err(ConfigError::new("url", format!("{url:?} has no host")));
    }
    if let Some((_, port)) = host_port.rsplit_once(':')
        && !host_port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(ConfigError::new(
            "url",
            format!("{url:?}: the port {port:?} is not a number"),
        ));
    }
    Ok(())
}

fn positive_duration(field: &str, seconds: f64) -> Result<Duration, ConfigError> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(ConfigError::new(
            field,
            format!("{seconds} s is not between 0 and one hour"),
        ))
    }
}

fn non_negative_ms(field: &str, ms: f64) -> Result<Duration, ConfigError> {
    if ms.is_finite() && (0.0..=86_400_000.0).contains(&ms) {
        Ok(Duration::from_secs_f64(ms / 1000.0))
    } else {
        Err(ConfigError::new(
            field,
            format!("{ms} ms is not between 0 and one day"),
        ))
    }
}

/// A number, or a string holding one (KubeEdge writes many numbers as strings).
fn number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match Option::<Json>::deserialize(deserializer)? {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{text:?} is not a number"))),
        Some(other) => serde_json::from_value(other)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn protocol(value: Json) -> Result<DeviceSettings, String> {
        let config: ProtocolConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.settings().map_err(|e| e.to_string())
    }

    fn visitor(value: Json) -> Result<PointSettings, String> {
        let config: VisitorConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.settings().map_err(|e| e.to_string())
    }

    #[test]
    fn a_plain_url_is_an_anonymous_session_without_security() {
        let settings = protocol(json!({"url": "opc.tcp://127.0.0.1:4840/"})).expect("valid");
        assert_eq!(settings.policy, SecurityPolicy::None);
        assert_eq!(settings.mode, SecurityMode::None);
        assert_eq!(settings.identity, Identity::Anonymous);
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn kubeedge_security_names_are_read() {
        for (policy, expected) in [
            ("None", SecurityPolicy::None),
            ("Basic256Sha256", SecurityPolicy::Basic256Sha256),
            ("Aes128_Sha256_RsaOaep", SecurityPolicy::Aes128Sha256RsaOaep),
            ("Aes256_Sha256_RsaPss", SecurityPolicy::Aes256Sha256RsaPss),
            (
                "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
                SecurityPolicy::Basic256Sha256,
            ),
        ] {
            let mode = if expected == SecurityPolicy::None {
                "None"
            } else {
                "Sign"
            };
            let settings = protocol(json!({
                "url": "opc.tcp://h:4840", "securityPolicy": policy, "securityMode": mode
            }))
            .unwrap_or_else(|e| panic!("{policy}: {e}"));
            assert_eq!(settings.policy, expected, "{policy}");
        }
        let settings = protocol(json!({
            "url": "opc.tcp://h:4840", "securityPolicy": "Basic256Sha256"
        }))
        .expect("valid");
        assert_eq!(settings.mode, SecurityMode::SignAndEncrypt);
    }

    #[test]
    fn contradictions_and_unknown_names_are_refused_with_the_field() {
        for (config, field) in [
            (json!({}), "url:"),
            (json!({"url": "http://h:80"}), "url:"),
            (json!({"url": "opc.tcp://h:port"}), "url:"),
            (
                json!({"url": "opc.tcp://h", "securityPolicy": "Basic128Rsa15"}),
                "securityPolicy:",
            ),
            (
                json!({"url": "opc.tcp://h", "securityMode": "Sign"}),
                "securityMode:",
            ),
            (
                json!({"url": "opc.tcp://h", "securityPolicy": "Basic256Sha256", "securityMode": "None"}),
                "securityMode:",
            ),
            (
                json!({"url": "opc.tcp://h", "userName": "op"}),
                "passwordFile:",
            ),
            (
                json!({"url": "opc.tcp://h", "passwordFile": "/p"}),
                "userName:",
            ),
            (
                json!({"url": "opc.tcp://h", "userName": "op", "passwordFile": "/p", "passwordEnv": "P"}),
                "passwordFile:",
            ),
            (
                json!({"url": "opc.tcp://h", "certificate": "/c.der"}),
                "privateKey:",
            ),
            (json!({"url": "opc.tcp://h", "timeout": 0}), "timeout:"),
        ] {
            let error = protocol(config.clone()).expect_err("refused");
            assert!(error.starts_with(field), "{config}: {error}");
        }
    }

    #[test]
    fn an_inline_password_is_refused_without_echoing_it() {
        let error = protocol(json!({
            "url": "opc.tcp://h:4840", "userName": "op", "password": "hunter2-secret"
        }))
        .expect_err("refused");
        assert!(error.starts_with("password:"), "{error}");
        assert!(error.contains("passwordFile"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn user_identities_name_where_the_secret_is() {
        let settings = protocol(json!({
            "url": "opc.tcp://h:4840", "userName": "op", "passwordEnv": "PLC_PASSWORD"
        }))
        .expect("valid");
        assert_eq!(
            settings.identity,
            Identity::UserName {
                user: "op".into(),
                password: PasswordSource::Env("PLC_PASSWORD".into())
            }
        );
        let settings = protocol(json!({
            "url": "opc.tcp://h:4840", "userCertificate": "/u.der", "userPrivateKey": "/u.pem"
        }))
        .expect("valid");
        assert!(matches!(settings.identity, Identity::Certificate { .. }));
    }

    #[test]
    fn timeouts_are_seconds_as_in_kubeedge_or_milliseconds_by_name() {
        let settings = protocol(json!({"url": "opc.tcp://h", "timeout": "2"})).expect("valid");
        assert_eq!(settings.timeout, Duration::from_secs(2));
        let settings =
            protocol(json!({"url": "opc.tcp://h", "timeout": 2, "timeoutMs": 250})).expect("valid");
        assert_eq!(settings.timeout, Duration::from_millis(250));
    }

    #[test]
    fn the_kubeedge_v1alpha2_keys_are_read() {
        let settings = protocol(json!({
            "url": "opc.tcp://192.168.56.103:4840",
            "certificate": "/ca/clientcert.pem",
            "privateKey": "/ca/clientkey.pem",
            "securityMode": "Sign",
            "securityPolicy": "Basic256Sha256",
            "remoteCertificate": "/ca/servercert.pem",
        }))
        .expect("valid");
        assert_eq!(
            settings.server_certificates,
            vec![PathBuf::from("/ca/servercert.pem")]
        );
        assert_eq!(
            settings.certificate.map(|c| c.private_key),
            Some(PathBuf::from("/ca/clientkey.pem"))
        );
    }

    #[test]
    fn visitors_take_node_ids_browse_paths_and_subscriptions() {
        let point = visitor(json!({"nodeID": "ns=2;i=2"})).expect("valid");
        assert!(matches!(point.address, NodeAddress::Id(_)));
        assert_eq!(point.subscribe, None);
        let point = visitor(json!({"browseName": "2:Boiler/2:Temperature"})).expect("valid");
        assert!(matches!(point.address, NodeAddress::Path(_)));
        let point = visitor(json!({
            "nodeID": "ns=2;s=T", "browseName": "Temperature",
            "subscribe": {"samplingInterval": 100, "queueSize": "5", "deadband": {"type": "percent", "value": 2}}
        }))
        .expect("valid");
        assert!(matches!(point.address, NodeAddress::Id(_)));
        assert_eq!(
            point.subscribe,
            Some(Monitoring {
                sampling_interval: Duration::from_millis(100),
                publishing_interval: Duration::from_millis(100),
                queue_size: 5,
                deadband: Some(Deadband::Percent(2.0)),
            })
        );
        let point = visitor(json!({"nodeID": "i=2258", "subscribe": {}})).expect("valid");
        assert_eq!(
            point.subscribe.map(|s| s.sampling_interval),
            Some(DEFAULT_SAMPLING_INTERVAL)
        );
    }

    #[test]
    fn bad_visitors_name_the_field() {
        for (config, field) in [
            (json!({}), "nodeID:"),
            (json!({"nodeID": "x=7"}), "nodeID:"),
            (json!({"nodeID": "ns=2;i=notanumber"}), "nodeID:"),
            (
                json!({"nodeID": "ns=2;i=1", "subscribe": {"queueSize": 0}}),
                "subscribe.queueSize:",
            ),
            (
                json!({"nodeID": "ns=2;i=1", "subscribe": {"deadband": {"type": "relative", "value": 1}}}),
                "subscribe.deadband.type:",
            ),
            (
                json!({"nodeID": "ns=2;i=1", "subscribe": {"deadband": -1}}),
                "subscribe.deadband:",
            ),
            (json!({"nodeID": "s".repeat(2000)}), "nodeID:"),
        ] {
            let error = visitor(config.clone()).expect_err("refused");
            assert!(error.starts_with(field), "{config}: {error}");
        }
        assert!(
            visitor(json!({"nodeID": "ns=2;i=1", "subscribe": {"sampling": 1}}))
                .is_err_and(|e| e.contains("sampling"))
        );
    }
}
