//! From a Device and its DeviceModel to a driver's typed [`crate::DeviceConfig`].

pub mod merge;

pub use merge::{ConfigError, ConfigMap, ConfigSite, decode_config, merge_config};
