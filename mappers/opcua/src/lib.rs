//! The edgetwin OPC-UA mapper: OPC UA servers (PLCs, gateways, SCADA) as KubeEdge v1beta1
//! devices, on the edgetwin SDK.
//!
//! - [`config`]: `protocol.configData` and `visitors.configData` (KubeEdge's keys and ours),
//!   checked into settings with errors that name the field.
//! - [`node`]: node ids in every form and browse paths.
//! - [`convert`]: OPC UA values ⇄ DeviceModel values (pure).
//! - [`pki`]: the mapper's client certificate (generated on first start) and its trust list.
//! - [`connection`]: one secure session: endpoint discovery, security, identity, keep-alive.
//! - [`driver`]: the SDK's `Driver` and `Session` ([`OpcUaDriver`], [`OpcUaSession`]): batched
//!   reads, typed writes, subscriptions.
//! - `sim` (feature `sim`): our simulator on async-opcua's server, for tests and benchmarks.
//!
//! The crate README documents the configuration and the behaviour.

pub mod cli;
pub mod config;
pub mod connection;
pub mod convert;
pub mod driver;
pub mod node;
pub mod pki;
#[cfg(feature = "sim")]
pub mod sim;

pub use driver::{OpcUaDriver, OpcUaSession};
