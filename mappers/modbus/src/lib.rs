//! The edgetwin Modbus mapper: Modbus TCP and RTU devices on the edgetwin SDK.

pub mod bus;
pub mod codec;
pub mod config;
pub mod driver;
pub mod plan;
pub mod sim;
pub mod table;
pub mod transport;

pub use driver::{ModbusDriver, ModbusSession};
