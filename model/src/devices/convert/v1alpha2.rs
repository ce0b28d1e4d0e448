//! The `devices.kubeedge.io/v1alpha2` shapes that conversion reads (KubeEdge v1.15 CRDs), plus
//! the older `propertyVisitors` inside a DeviceModel that some samples still carry.
//!
//! Unknown fields inside `spec` and `status` are errors: conversion is either lossless or says
//! what it cannot carry over. Protocol-specific blocks stay free-form because they are copied into
//! v1beta1's free-form `configData` key by key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::devices::device_model::AccessMode;
use crate::devices::{ConfigData, ObjectMeta, TwinProperty};

/// A v1alpha2 Device.
#[derive(Debug, Deserialize)]
pub(super) struct Device {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeviceSpec,
    #[serde(default)]
    pub status: Option<DeviceStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DeviceSpec {
    pub device_model_ref: Option<ModelRef>,
    pub protocol: Option<ProtocolConfig>,
    #[serde(default)]
    pub property_visitors: Vec<PropertyVisitor>,
    pub data: Option<DeviceData>,
    pub node_selector: Option<NodeSelector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelRef {
    pub name: String,
}

/// `spec.protocol`: at most one typed block (or `customizedProtocol`) plus `common`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ProtocolConfig {
    pub opcua: Option<ConfigData>,
    pub modbus: Option<ConfigData>,
    pub bluetooth: Option<ConfigData>,
    pub customized_protocol: Option<CustomizedProtocol>,
    pub common: Option<ConfigData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CustomizedProtocol {
    pub protocol_name: String,
    pub config_data: Option<ConfigData>,
}

/// One entry of `propertyVisitors` (in a Device, or in an old-style DeviceModel).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PropertyVisitor {
    pub property_name: String,
    pub report_cycle: Option<i64>,
    pub collect_cycle: Option<i64>,
    pub customized_values: Option<ConfigData>,
    pub opcua: Option<ConfigData>,
    pub modbus: Option<ConfigData>,
    pub bluetooth: Option<ConfigData>,
    pub customized_protocol: Option<CustomizedProtocol>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DeviceData {
    #[serde(default)]
    pub data_properties: Vec<DataProperty>,
    pub data_topic: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DataProperty {
    pub property_name: String,
    /// Known so that it is not an unknown field; dropped with the data section.
    #[serde(default, rename = "metadata")]
    pub _metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NodeSelector {
    #[serde(default)]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NodeSelectorTerm {
    #[serde(default)]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(default)]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeSelectorRequirement {
    /// Known so that it is not an unknown field; KubeEdge samples leave it empty.
    #[serde(rename = "key")]
    pub _key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceStatus {
    #[serde(default)]
    pub twins: Vec<Twin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Twin {
    pub property_name: String,
    pub desired: Option<TwinProperty>,
    pub reported: Option<TwinProperty>,
}

/// A v1alpha2 DeviceModel.
#[derive(Debug, Deserialize)]
pub(super) struct DeviceModel {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeviceModelSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DeviceModelSpec {
    #[serde(default)]
    pub properties: Vec<ModelProperty>,
    pub protocol: Option<String>,
    /// Not in the v1alpha2 CRD (it is v1alpha1's), but still in KubeEdge's BLE samples.
    #[serde(default)]
    pub property_visitors: Vec<PropertyVisitor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ModelProperty {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub property_type: PropertyTypes,
}

/// `type:` holds exactly one of these blocks. A block written without content (`bytes:`) counts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PropertyTypes {
    #[serde(default, deserialize_with = "present")]
    pub int: Option<TypeSpec>,
    #[serde(default, deserialize_with = "present")]
    pub string: Option<TypeSpec>,
    #[serde(default, deserialize_with = "present")]
    pub double: Option<TypeSpec>,
    #[serde(default, deserialize_with = "present")]
    pub float: Option<TypeSpec>,
    #[serde(default, deserialize_with = "present")]
    pub boolean: Option<TypeSpec>,
    #[serde(default, deserialize_with = "present")]
    pub bytes: Option<TypeSpec>,
}

/// A key that is present is `Some`, even when its value is null.
fn present<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<TypeSpec>, D::Error> {
    Option::<TypeSpec>::deserialize(de).map(|spec| Some(spec.unwrap_or_default()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TypeSpec {
    pub access_mode: Option<AccessMode>,
    pub default_value: Option<serde_json::Value>,
    pub minimum: Option<serde_json::Value>,
    pub maximum: Option<serde_json::Value>,
    pub unit: Option<String>,
}
