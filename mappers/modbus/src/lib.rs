//! The edgetwin Modbus mapper: Modbus TCP and RTU devices on the edgetwin SDK.

pub mod codec;
pub mod config;
pub mod plan;
pub mod table;
