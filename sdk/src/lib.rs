//! edgetwin mapper SDK: what a protocol needs to become a mapper.
//!
//! A mapper crate implements [`Driver`] (one per protocol) and [`Session`] (one per connected
//! device) and hands the driver to the runtime:
//!
//! ```no_run
//! # use edgetwin_sdk::testkit::SimDriver as MyDriver;
//! fn main() -> std::process::ExitCode {
//!     edgetwin_sdk::cli::main(MyDriver::default())
//! }
//! ```
//!
//! or, with settings in code, `Mapper::builder().driver(d).node("edge-1").build()?.run().await`.
//! The runtime owns everything else: device sources, MQTT, cycles, retries with backoff, the
//! circuit breaker, the data pipeline, sinks, device state, metrics and graceful shutdown.
//! The `testkit` feature adds a simulated driver, an in-process broker, an in-test edge and the
//! conformance suite (`testkit::conformance::run`). The `yaml` feature (on by default) reads
//! devices from a directory of YAML (`--devices`); a mapper that only serves the edge agent's
//! spec topic or a `deviceProfile.json` can turn it off, which leaves the YAML parser out of the
//! binary (about half of its code, and code pages are most of a mapper's resident memory:
//! BENCHMARKS.md, "Mapper SDK › Design choices"). See `docs/writing-a-mapper.md`.

pub mod breaker;
pub mod cli;
pub mod config;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod runtime;
pub mod shared_bus;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sink;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use driver::{
    DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, PushSender, Pushed, Session,
};
/// Per-hop timestamps for latency benchmarks (`EDGETWIN_TRACE_HOPS`).
pub use edgetwin_hoptrace as hoptrace;
/// The pure model the SDK is built on (KubeEdge types, the wire, the pipeline), for what the
/// re-exports below do not cover.
pub use edgetwin_model as model;
pub use edgetwin_model::devices::cycle::cycle_duration;
pub use edgetwin_model::pipeline::DurationSpec;
pub use edgetwin_model::value::{PropertyType, Value};
pub use runtime::{Mapper, MapperBuilder, MapperError, MapperHandle, Options};
pub use shared_bus::{BusGuard, SharedBus};
