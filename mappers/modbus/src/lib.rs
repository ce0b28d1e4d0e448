//! The edgetwin Modbus mapper: Modbus TCP and RTU devices on the edgetwin SDK.
//!
//! - [`config`]: `protocol.configData` and `visitors.configData`, KubeEdge's keys and ours,
//!   validated into [`config::DeviceSettings`] and [`codec::Field`]s with errors that name the
//!   field.
//! - [`codec`]: registers ⇄ property values for every data type, byte and word order, scale and
//!   offset (pure).
//! - [`plan`]: request coalescing — the properties of a cycle become the fewest read requests,
//!   and each response is split back (pure).
//! - [`transport`]: one request over TCP or an RTU line, with its timeout, and Modbus exceptions
//!   as clear errors.
//! - [`bus`]: RTU lines shared by several devices, one request in flight at a time.
//! - [`driver`]: the SDK's `Driver` and `Session` ([`ModbusDriver`], [`ModbusSession`]).
//! - [`sim`]: our simulator (the `modbus-sim` binary), for examples, tests and benchmarks.
//!
//! The crate README documents the configuration and the behaviour.

pub mod bus;
pub mod codec;
pub mod config;
pub mod driver;
pub mod exchange;
pub mod plan;
pub mod sim;
pub mod table;
pub mod transport;

pub use driver::{ModbusDriver, ModbusSession};
