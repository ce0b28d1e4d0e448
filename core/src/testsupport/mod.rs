//! Test helpers with real parts: MQTT brokers on free loopback ports (the embedded rumqttd, or a
//! `mosquitto` child process) and a small MQTT client that waits for messages with timeouts.
//!
//! Behind the `test-support` feature; used by this crate's tests and by other crates' test kits.
//! Helpers return errors instead of panicking so a missing peer names itself clearly.

mod broker;
mod client;

pub use broker::{
    BrokerKind, MosquittoOptions, TestBroker, TestBrokerError, TlsMaterial, free_port,
};
pub use client::{Received, TestClient, TestClientError};

/// The generous timeout tests wait for an expected message or state.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
