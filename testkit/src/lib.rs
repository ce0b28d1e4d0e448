//! edgetwin's test kit: the real parts the tests of every crate share.
//!
//! - [`broker`]: MQTT brokers on free loopback ports — rumqttd in this process or a mosquitto
//!   child process — which a test can restart;
//! - [`client`]: a small MQTT client that waits for messages with timeouts;
//! - [`proxy`]: a TCP proxy a test can cut, blackhole and heal;
//! - [`pki`]: throwaway certificates as PEM files;
//! - [`fleet`]: a devices file of many sensors;
//! - [`fixtures`]: KubeEdge's own files, from the directory in `EDGETWIN_KUBEEDGE_FIXTURES`;
//! - [`peer_process`]: a peer process driven line by line (pymodbus, asyncua, simulators);
//! - [`binaries`]: the workspace's binaries for process tests in other packages than theirs;
//! - [`peers`]: whether a test must fail or may skip when an outside peer is missing;
//! - [`raw_mqtt`]: one PUBLISH from hand-made packets (what client libraries refuse to send);
//! - [`servers`]: Redis, MariaDB and an OTLP/HTTP receiver as real processes on free ports.
//!
//! Helpers return errors or panic with a message that names what is missing and how to get it.

pub mod binaries;
pub mod broker;
pub mod client;
pub mod fixtures;
pub mod fleet;
pub mod peer_process;
pub mod peers;
pub mod pki;
pub mod proxy;
pub mod raw_mqtt;
pub mod servers;

pub use broker::{
    BrokerKind, MosquittoOptions, TestBroker, TestBrokerError, TlsMaterial, free_port,
};
pub use client::{Received, TestClient, TestClientError};
pub use fleet::sensor_fleet_yaml;
pub use peer_process::PeerProcess;
pub use proxy::TcpProxy;

/// The generous timeout tests wait for an expected message or state.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
