//! How a device and each of its properties are reached: the protocol name and its free-form
//! configuration, as the Device and the DeviceModel both carry them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{ConfigData, free_form_object};

/// How to connect to a device: the protocol and its free-form configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolConfig {
    /// The protocol name, e.g. `modbus`; the mapper for this protocol serves the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_name: Option<String>,
    /// Protocol configuration, read by the mapper (e.g. address, slave id, serial port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config_data: Option<ConfigData>,
}

/// How a mapper accesses one property: the protocol and its free-form configuration (for Modbus:
/// `register`, `offset`, `limit`, `scale`, `isSwap`, `isRegisterSwap`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VisitorConfig {
    /// The protocol name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_name: Option<String>,
    /// Protocol-specific access configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config_data: Option<ConfigData>,
}
