//! `edgetwin cloud`'s configuration (YAML, camelCase keys, every key optional).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::edge::config::ConfigError;

/// The whole cloud configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CloudConfig {
    /// Where the tunnel (the edge nodes' WebSocket endpoint) listens.
    pub listen: SocketAddr,
    /// TLS for the tunnel; without it the tunnel is plain `ws://`, which needs `insecure`.
    pub tls: Option<CloudTlsConfig>,
    /// Allow plain `ws://` (tokens travel in clear: tests and demos only).
    pub insecure: bool,
    /// Directory of the cloud's files: `cloud.db` (node tokens, per-node outboxes) and, for the
    /// embedded registry, its database, API token and URL files.
    pub data_dir: PathBuf,
    /// Where Devices and DeviceModels live.
    pub registry: RegistryConfig,
    /// Status writes are coalesced to at most one per device per this many milliseconds.
    pub status_interval_ms: u64,
    /// Every node gets its complete membership again this often (seconds).
    pub reconcile_interval_secs: u64,
    /// Health (`/healthz`) and Prometheus metrics (`/metrics`); keep it on loopback. `null`: off.
    pub metrics_listen: Option<SocketAddr>,
}

/// Certificate files of the tunnel's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudTlsConfig {
    /// The server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// When set, edge nodes may authenticate with a client certificate issued by this CA.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The registry backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum RegistryConfig {
    /// The embedded sqlite registry with its HTTP API for `edgetwin ctl`.
    Embedded {
        /// Where the registry API listens (plain HTTP: keep it on loopback).
        #[serde(rename = "apiListen")]
        api_listen: SocketAddr,
    },
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 10000)),
            tls: None,
            insecure: false,
            data_dir: PathBuf::from("edgetwin-cloud"),
            registry: RegistryConfig::Embedded {
                api_listen: SocketAddr::from(([127, 0, 0, 1], 7411)),
            },
            status_interval_ms: 1000,
            reconcile_interval_secs: 300,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

impl CloudConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<CloudConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        CloudConfig::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates YAML; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<CloudConfig, ConfigError> {
        let config: CloudConfig = if text.trim().is_empty() {
            CloudConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                source_name: source_name.to_owned(),
                message: e.to_string(),
            })?
        };
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
        if self.tls.is_none() && !self.insecure {
            return Err(invalid(
                "tls",
                "required unless `insecure: true` (plain ws:// sends node tokens in clear)",
            ));
        }
        if self.status_interval_ms == 0 {
            return Err(invalid("statusIntervalMs", "must be at least 1"));
        }
        if self.reconcile_interval_secs == 0 {
            return Err(invalid("reconcileIntervalSecs", "must be at least 1"));
        }
        Ok(())
    }

    /// The status coalescing interval.
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }

    /// The reconcile interval.
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_secs(self.reconcile_interval_secs)
    }

    /// The cloud's own database: node tokens and per-node outboxes.
    pub fn cloud_db(&self) -> PathBuf {
        self.data_dir.join("cloud.db")
    }

    /// The default configuration as commented YAML (`--print-default-config`).
    pub fn default_yaml() -> String {
        r#"# edgetwin cloud configuration. Every key is optional; these are the defaults.

# Where the edge nodes' tunnel (WebSocket) listens.
listen: 0.0.0.0:10000
# TLS for the tunnel. Required unless `insecure: true`.
tls: null
#  certFile: /etc/edgetwin/cloud.crt
#  keyFile: /etc/edgetwin/cloud.key
#  clientCaFile: null   # accept client certificates issued by this CA
# Plain ws:// (node tokens in clear): tests and demos only.
insecure: false
# cloud.db (node tokens: `edgetwin cloud token create NODE --db DATA_DIR/cloud.db`, per-node
# outboxes) and the embedded registry's files.
dataDir: edgetwin-cloud
registry:
  embedded:
    # The HTTP API `edgetwin ctl` talks to (plain HTTP, token protected: keep it on loopback).
    apiListen: 127.0.0.1:7411
# At most one status write per device per this interval.
statusIntervalMs: 1000
# Every node gets its complete device list again this often (drift repair).
reconcileIntervalSecs: 300
# /healthz and /metrics (Prometheus); null: off.
metricsListen: 127.0.0.1:9464
"#
        .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_default_parses_to_the_default_except_tls() {
        let text = CloudConfig::default_yaml().replace("insecure: false", "insecure: true");
        let parsed = CloudConfig::from_yaml(&text, "default").expect("parses");
        assert_eq!(
            parsed,
            CloudConfig {
                insecure: true,
                ..CloudConfig::default()
            }
        );
    }

    #[test]
    fn errors_name_the_source_and_field() {
        let error = CloudConfig::from_yaml("statusIntervalMs: 5\n", "c.yaml").expect_err("no tls");
        assert_eq!(
            error.to_string(),
            "c.yaml: `tls`: required unless `insecure: true` (plain ws:// sends node tokens in clear)"
        );
        let error = CloudConfig::from_yaml("insecure: true\nstatusIntervalMs: 0\n", "c.yaml")
            .expect_err("zero");
        assert!(error.to_string().contains("statusIntervalMs"), "{error}");
        let error = CloudConfig::from_yaml("insecure: true\nlisten: nowhere\n", "c.yaml")
            .expect_err("bad address");
        assert!(error.to_string().starts_with("c.yaml:"), "{error}");
        let error =
            CloudConfig::from_yaml("insecure: true\nbogus: 1\n", "c.yaml").expect_err("unknown");
        assert!(error.to_string().contains("bogus"), "{error}");
    }
}
