//! `edgetwin cloud`'s configuration (YAML, camelCase keys, every key optional).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::edge::config::ConfigError;
use crate::edge::config::{parse_config, read_config_file};

/// The whole cloud configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CloudConfig {
    /// Where the tunnel (the edge nodes' WebSocket endpoint) listens.
    pub listen: SocketAddr,
    /// TLS for the tunnel; without it the tunnel is plain `ws://`, which needs `insecure`.
    pub tls: Option<CloudTlsConfig>,
    /// Allow plain `ws://` (tokens travel in clear: tests and demos only). Only on a loopback
    /// `listen` unless [`insecure_on_network`](Self::insecure_on_network) is also set.
    pub insecure: bool,
    /// Allow `insecure` on an address other hosts can reach: node tokens cross the network in
    /// clear. A second, explicit flag, so that a demo's `insecure: true` never does this alone.
    pub insecure_on_network: bool,
    /// Directory of the cloud's files: `cloud.db` (node tokens, per-node outboxes) and, for the
    /// embedded registry, its database, API token and URL files.
    pub data_dir: PathBuf,
    /// Where Devices and DeviceModels live.
    pub registry: RegistryConfig,
    /// Status writes are coalesced to at most one per device per this many milliseconds.
    pub status_interval_ms: u64,
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
    /// Device and DeviceModel custom resources in a Kubernetes cluster (needs the `kube`
    /// feature); the cluster is found the way kubectl finds it.
    Kubernetes(KubernetesRegistryConfig),
}

/// The Kubernetes registry: which namespace to watch and the leader election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KubernetesRegistryConfig {
    /// Watch Devices and DeviceModels in this namespace only; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Leader election on a Lease, so that only one replica writes status; `None`: no election
    /// (run a single replica).
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Default for KubernetesRegistryConfig {
    fn default() -> Self {
        KubernetesRegistryConfig {
            namespace: None,
            leader_election: Some(LeaderElectionConfig::default()),
        }
    }
}

impl KubernetesRegistryConfig {
    /// Where the Lease lives: `leaseNamespace`, else the watched namespace, else `default`.
    pub fn lease_namespace(&self) -> Option<&str> {
        let election = self.leader_election.as_ref()?;
        Some(
            election
                .lease_namespace
                .as_deref()
                .or(self.namespace.as_deref())
                .unwrap_or("default"),
        )
    }
}

/// The Lease the replicas compete for, and its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease; `None`: the watched namespace, or `default` when watching all.
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    pub lease_name: String,
    /// How long a holder keeps the Lease without renewing it (seconds).
    pub lease_duration_secs: u64,
    /// How often the leader renews and a standby retries (seconds); below the lease duration.
    pub renew_interval_secs: u64,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            lease_namespace: None,
            lease_name: "edgetwin-cloud".to_owned(),
            lease_duration_secs: 15,
            renew_interval_secs: 5,
        }
    }
}

impl LeaderElectionConfig {
    /// The lease duration.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_secs)
    }

    /// The renew interval.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_secs(self.renew_interval_secs)
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 10000)),
            tls: None,
            insecure: false,
            insecure_on_network: false,
            data_dir: PathBuf::from("edgetwin-cloud"),
            registry: RegistryConfig::Embedded {
                api_listen: SocketAddr::from(([127, 0, 0, 1], 7411)),
            },
            status_interval_ms: 1000,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

impl CloudConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<CloudConfig, ConfigError> {
        let (text, source_name) = read_config_file(path)?;
        CloudConfig::from_yaml(&text, &source_name)
    }

    /// Parses and validates YAML; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<CloudConfig, ConfigError> {
        let config: CloudConfig = parse_config(text, source_name)?;
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
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.insecure_on_network {
            return Err(invalid(
                "insecure",
                &format!(
                    "plain ws:// on {}, which other hosts can reach, sends node tokens across the \
                     network in clear: configure `tls`, listen on loopback, or also set \
                     `insecureOnNetwork: true`",
                    self.listen
                ),
            ));
        }
        if self.status_interval_ms == 0 {
            return Err(invalid("statusIntervalMs", "must be at least 1"));
        }
        if let RegistryConfig::Kubernetes(kubernetes) = &self.registry {
            validate_kubernetes(kubernetes).map_err(|(field, reason)| invalid(field, &reason))?;
        }
        Ok(())
    }

    /// The status coalescing interval.
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }

    /// The cloud's own database: node tokens and per-node outboxes.
    pub fn cloud_db(&self) -> PathBuf {
        self.data_dir.join("cloud.db")
    }

    /// The default configuration as commented YAML (`--print-default-config`).
    pub fn default_yaml() -> String {
        r#"# edgetwin cloud configuration. Every key is optional; these are the defaults.

# Where the edge nodes' tunnel (WebSocket) listens: loopback by default; e.g. 0.0.0.0:10000
# for edge nodes on other hosts.
listen: 127.0.0.1:10000
# TLS for the tunnel. Required unless `insecure: true`.
tls: null
#  certFile: /etc/edgetwin/cloud.crt
#  keyFile: /etc/edgetwin/cloud.key
#  clientCaFile: null   # accept client certificates issued by this CA
# Plain ws:// (node tokens in clear): tests and demos only. On a `listen` address other hosts
# can reach, only with `insecureOnNetwork: true` as well.
insecure: false
insecureOnNetwork: false
# cloud.db (node tokens: `edgetwin cloud token create NODE -c THIS_FILE`, per-node
# outboxes) and the embedded registry's files.
dataDir: edgetwin-cloud
# Where Devices and DeviceModels live: one of `embedded` or `kubernetes`.
registry:
  embedded:
    # The HTTP API `edgetwin ctl` talks to (plain HTTP, token protected: keep it on loopback).
    apiListen: 127.0.0.1:7411
  # Or custom resources in a Kubernetes cluster (needs the `kube` feature, in the default
  # build). Install the CRDs first: `kubectl apply -f crds/`. The cluster is found as kubectl
  # finds it: $KUBECONFIG, ~/.kube/config, or the pod's service account.
  # kubernetes:
  #   namespace: null            # watch this namespace only; null: all namespaces
  #   leaderElection:            # null: no election (run a single replica)
  #     leaseNamespace: null     # null: `namespace`, or `default` when watching all
  #     leaseName: edgetwin-cloud
  #     leaseDurationSecs: 15
  #     renewIntervalSecs: 5
# At most one status write per device per this interval.
statusIntervalMs: 1000
# /healthz and /metrics (Prometheus); null: off.
metricsListen: 127.0.0.1:9464
"#
        .to_owned()
    }
}

/// Checks the Kubernetes registry settings; the error is the field and why.
fn validate_kubernetes(config: &KubernetesRegistryConfig) -> Result<(), (&'static str, String)> {
    if let Some(namespace) = &config.namespace {
        check_dns_label(namespace).map_err(|reason| ("registry.kubernetes.namespace", reason))?;
    }
    let Some(election) = &config.leader_election else {
        return Ok(());
    };
    if let Some(namespace) = &election.lease_namespace {
        check_dns_label(namespace)
            .map_err(|reason| ("registry.kubernetes.leaderElection.leaseNamespace", reason))?;
    }
    check_dns_subdomain(&election.lease_name)
        .map_err(|reason| ("registry.kubernetes.leaderElection.leaseName", reason))?;
    if election.renew_interval_secs == 0 {
        return Err((
            "registry.kubernetes.leaderElection.renewIntervalSecs",
            "must be at least 1".to_owned(),
        ));
    }
    if election.lease_duration_secs <= election.renew_interval_secs {
        return Err((
            "registry.kubernetes.leaderElection.leaseDurationSecs",
            format!(
                "must be longer than renewIntervalSecs ({}), or the leader loses the lease between renewals",
                election.renew_interval_secs
            ),
        ));
    }
    Ok(())
}

/// A Kubernetes namespace name: an RFC 1123 label.
fn check_dns_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err(format!("`{name}` is longer than 63 characters"));
    }
    check_dns_subdomain(name)?;
    if name.contains('.') {
        return Err(format!("`{name}` must not contain `.`"));
    }
    Ok(())
}

/// A Kubernetes object name: an RFC 1123 subdomain (lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit).
fn check_dns_subdomain(name: &str) -> Result<(), String> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    if !name
        .chars()
        .all(|c| alphanumeric(c) || c == '-' || c == '.')
        || !name.starts_with(alphanumeric)
        || !name.ends_with(alphanumeric)
    {
        return Err(format!(
            "`{name}` is not a valid name (lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
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

    #[test]
    fn plain_ws_on_the_network_needs_a_second_flag() {
        let error = CloudConfig::from_yaml("insecure: true\nlisten: 0.0.0.0:10000\n", "c.yaml")
            .expect_err("plain ws:// on every interface");
        assert!(
            error.to_string().contains("`insecureOnNetwork: true`"),
            "{error}"
        );
        let both = "insecure: true\ninsecureOnNetwork: true\nlisten: 0.0.0.0:10000\n";
        CloudConfig::from_yaml(both, "c.yaml").expect("explicitly allowed");
        CloudConfig::from_yaml("insecure: true\n", "c.yaml").expect("loopback by default");
    }

    /// The printed default with its commented `kubernetes` block switched on instead of
    /// `embedded`.
    fn default_yaml_with_kubernetes() -> String {
        let text = CloudConfig::default_yaml().replace("insecure: false", "insecure: true");
        let mut out = String::new();
        let mut in_embedded = false;
        for line in text.lines() {
            if line == "  embedded:" {
                in_embedded = true;
                continue;
            }
            if in_embedded && line.starts_with("    ") {
                continue;
            }
            in_embedded = false;
            let line = match line.strip_prefix("  # ") {
                Some(rest) if rest.starts_with("kubernetes:") || rest.starts_with("  ") => {
                    format!("  {rest}")
                }
                _ => line.to_owned(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_commented_kubernetes_option_parses_to_its_defaults() {
        let text = default_yaml_with_kubernetes();
        let parsed = CloudConfig::from_yaml(&text, "default").expect("parses");
        assert_eq!(
            parsed.registry,
            RegistryConfig::Kubernetes(KubernetesRegistryConfig::default()),
            "{text}"
        );
        assert_eq!(
            KubernetesRegistryConfig::default().leader_election,
            Some(LeaderElectionConfig::default())
        );
    }

    #[test]
    fn a_kubernetes_registry_with_a_namespace_and_no_election() {
        let yaml = "insecure: true\nregistry:\n  kubernetes:\n    namespace: plant-a\n    leaderElection: null\n";
        let parsed = CloudConfig::from_yaml(yaml, "c.yaml").expect("parses");
        let expected = KubernetesRegistryConfig {
            namespace: Some("plant-a".to_owned()),
            leader_election: None,
        };
        assert_eq!(
            parsed.registry,
            RegistryConfig::Kubernetes(expected.clone())
        );
        assert_eq!(expected.lease_namespace(), None);
        // Omitted keys take their defaults; `{}` is all defaults.
        let parsed =
            CloudConfig::from_yaml("insecure: true\nregistry:\n  kubernetes: {}\n", "c.yaml")
                .expect("parses");
        assert_eq!(
            parsed.registry,
            RegistryConfig::Kubernetes(KubernetesRegistryConfig::default())
        );
    }

    #[test]
    fn the_lease_lives_in_the_named_then_the_watched_then_the_default_namespace() {
        let mut config = KubernetesRegistryConfig::default();
        assert_eq!(config.lease_namespace(), Some("default"));
        config.namespace = Some("plant-a".to_owned());
        assert_eq!(config.lease_namespace(), Some("plant-a"));
        if let Some(election) = config.leader_election.as_mut() {
            election.lease_namespace = Some("edgetwin-system".to_owned());
        }
        assert_eq!(config.lease_namespace(), Some("edgetwin-system"));
    }

    #[test]
    fn kubernetes_errors_name_the_field() {
        let error_of = |registry: &str| {
            let yaml = format!("insecure: true\nregistry:\n  kubernetes:\n{registry}");
            CloudConfig::from_yaml(&yaml, "c.yaml")
                .expect_err(registry)
                .to_string()
        };
        assert_eq!(
            error_of("    namespace: Plant_A\n"),
            "c.yaml: `registry.kubernetes.namespace`: `Plant_A` is not a valid name (lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit)"
        );
        assert_eq!(
            error_of("    namespace: \"\"\n"),
            "c.yaml: `registry.kubernetes.namespace`: must not be empty"
        );
        let error = error_of("    namespace: a.b\n");
        assert!(error.contains("must not contain `.`"), "{error}");
        let error = error_of("    leaderElection:\n      leaseName: -lease\n");
        assert!(
            error.starts_with("c.yaml: `registry.kubernetes.leaderElection.leaseName`:"),
            "{error}"
        );
        let error = error_of("    leaderElection:\n      leaseNamespace: UP\n");
        assert!(
            error.starts_with("c.yaml: `registry.kubernetes.leaderElection.leaseNamespace`:"),
            "{error}"
        );
        let error = error_of("    leaderElection:\n      renewIntervalSecs: 0\n");
        assert!(
            error.contains("renewIntervalSecs`: must be at least 1"),
            "{error}"
        );
        let error = error_of(
            "    leaderElection:\n      leaseDurationSecs: 5\n      renewIntervalSecs: 5\n",
        );
        assert!(
            error.contains("`registry.kubernetes.leaderElection.leaseDurationSecs`: must be longer than renewIntervalSecs (5)"),
            "{error}"
        );
        let error = error_of("    namespaces: [a]\n");
        assert!(error.contains("namespaces"), "{error}");
    }
}
