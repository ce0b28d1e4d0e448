//! `devices.kubeedge.io/v1beta1` Device and DeviceModel types and typed property values.

pub mod value;

pub use value::{PropertyType, Value, ValueError};
