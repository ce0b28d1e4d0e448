//! The edgetwin BLE mapper: GATT characteristics of Bluetooth Low Energy devices, through BlueZ.
//!
//! - [`config`]: `protocol.configData` and `visitors.configData` (KubeEdge's keys and ours)
//!   validated into settings, with errors that name the field.
//! - [`codec`]: characteristic values ⇄ property values: KubeEdge's `dataConverter` and
//!   `dataWrite`, integers in either byte order, IEEE 754 and IEEE 11073 floats, UTF-8 (pure).
//! - [`radio`]: what devices share: the BlueZ session, each adapter's connection slots and
//!   connect queue, the GATT tables found; finding, connecting and discovering a device.
//! - [`driver`]: the SDK's `Driver` and `Session` ([`BleDriver`], [`BleSession`]): reads,
//!   writes, notifications pushed through the SDK, link loss.
//!
//! The crate README documents the configuration and the behaviour.

pub mod cli;
pub mod codec;
pub mod config;
pub mod driver;
pub mod radio;

pub use driver::{BleDriver, BleSession};
pub use radio::RadioOptions;
