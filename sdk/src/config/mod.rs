//! From a Device and its DeviceModel to a driver's typed [`crate::DeviceConfig`].

pub mod merge;
pub mod resolve;

pub use merge::{ConfigError, ConfigMap, ConfigSite, ConfigText, decode_config, merge_config};
pub use resolve::{ResolveError, ResolvedDevice, ResolvedProperty, device_id, resolve};
