//! Modbus mapper (filled by the Modbus issue).
