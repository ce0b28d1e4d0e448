//! The edgetwin BLE mapper: GATT characteristics of Bluetooth Low Energy devices, through BlueZ.
//!
//! - [`config`]: `protocol.configData` and `visitors.configData` (KubeEdge's keys and ours)
//!   validated into settings, with errors that name the field.
//! - [`codec`]: characteristic values ⇄ property values: KubeEdge's `dataConverter` and
//!   `dataWrite`, integers in either byte order, IEEE 754 and IEEE 11073 floats, UTF-8 (pure).
//!
//! The crate README documents the configuration and the behaviour.

pub mod codec;
pub mod config;
