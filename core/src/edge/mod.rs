//! The edge agent: the MQTT event bus, the twin service over the store, the loopback HTTP
//! endpoint for health and metrics, and the agent that wires them together.

pub mod agent;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod bus;
pub mod config;
pub mod devices;
pub mod http;
pub mod hub_link;
pub mod inbound;
pub mod metrics;
pub mod service;
pub mod store;
