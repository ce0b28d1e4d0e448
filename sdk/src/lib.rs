//! edgetwin mapper SDK.

pub mod breaker;
pub mod config;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod mqtt;
mod runtime;
pub mod shared_bus;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use driver::{DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, PushSender, Pushed, Session};
pub use shared_bus::{BusGuard, SharedBus};
