//! Test helpers with real parts, for tests of this crate and of others (feature `test-support`):
//! MQTT brokers on free loopback ports (the embedded rumqttd, or a `mosquitto` child process), a
//! small MQTT client that waits for messages with timeouts, a devices file of many sensors, a TCP
//! proxy a test can cut and heal, and throwaway certificates.
//!
//! Helpers return errors instead of panicking so a missing peer names itself clearly.

mod broker;
mod client;
mod fleet;
pub mod pki;
pub mod tcp_proxy;

pub use broker::{
    BrokerKind, MosquittoOptions, TestBroker, TestBrokerError, TlsMaterial, free_port,
};
pub use client::{Received, TestClient, TestClientError};
pub use fleet::sensor_fleet_yaml;

/// The generous timeout tests wait for an expected message or state.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
