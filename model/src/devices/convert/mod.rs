//! Converting KubeEdge `devices.kubeedge.io/v1alpha2` Devices and DeviceModels to v1beta1
//! (`edgetwin convert -f FILE`).
//!
//! Device:
//! - the first node-selector value becomes `spec.nodeName`;
//! - the typed protocol block (`modbus`, `opcua`, `bluetooth`, or `customizedProtocol`) becomes
//!   `protocol.protocolName`, and its fields, flattened together with `common` (its `com`, `tcp`
//!   and `customizedValues` blocks and its scalar settings), become `protocol.configData`;
//! - each `propertyVisitors[]` entry becomes a `properties[]` entry whose `visitors.configData`
//!   holds the protocol-specific visitor fields unchanged (for Modbus `register`, `offset`,
//!   `limit`, `scale`, `isSwap`, `isRegisterSwap`, the keys KubeEdge's v1beta1 Modbus mapper
//!   reads) plus `customizedValues`;
//! - `status.twins[].desired` becomes `spec.properties[].desired`, `reported` stays in
//!   `status.twins[].reported`;
//! - cycles written in nanoseconds (≥ 10^7) are rewritten in milliseconds.
//!
//! DeviceModel: `type: {int: {accessMode, minimum, maximum, unit}}` becomes `type: INT`,
//! `accessMode`, `minimum: "…"`, `maximum: "…"`, `unit`; old-style model `propertyVisitors`
//! become `properties[].visitors`.
//!
//! Whatever v1beta1 cannot hold (`defaultValue`, the `data` section, extra node-selector values)
//! is reported as a warning; contradictions (two protocol blocks, one key with two values) are
//! errors. v1beta1 documents in the input are passed through unchanged.

mod v1alpha2;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::Value as Json;

use super::cycle::{NANOSECONDS_THRESHOLD, cycle_millis};
use super::load::{DeclaredKind, LoadError, Location, Manifest, declared_kind, parse_v1beta1};
use super::meta::clear_server_fields;
use super::yaml::{Chunk, documents, to_yaml_stream};
use super::{
    ConfigData, Device, DeviceModel, DeviceModelRef, DeviceModelSpec, DeviceProperty, DeviceSpec,
    DeviceStatus, GROUP, ModelProperty, ProtocolConfig, Twin, VisitorConfig,
};
use crate::value::PropertyType;

/// The apiVersion this module converts from.
pub const V1ALPHA2: &str = "devices.kubeedge.io/v1alpha2";

/// The converted objects, in input order, and what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The v1beta1 objects.
    pub manifests: Vec<Manifest>,
    /// Information that was dropped or reinterpreted.
    pub warnings: Vec<Warning>,
}

/// Something the conversion dropped or reinterpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The document it is about.
    pub at: Location,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Why a document could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input could not be read or parsed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The object cannot be expressed in v1beta1 without guessing.
    #[error("{at}: {message}")]
    Unconvertible {
        /// The document.
        at: Location,
        /// Why.
        message: String,
    },
    /// The output could not be written as YAML.
    #[error("cannot write the converted objects as YAML: {0}")]
    Output(String),
}

impl Conversion {
    /// The converted objects as one YAML stream.
    pub fn to_yaml(&self) -> Result<String, ConvertError> {
        to_yaml_stream(&self.manifests).map_err(|e| ConvertError::Output(e.to_string()))
    }
}

/// Converts every document of a YAML text. `source` names the text in messages.
pub fn from_str(text: &str, source: &str) -> Result<Conversion, ConvertError> {
    let mut conversion = Conversion {
        manifests: Vec::new(),
        warnings: Vec::new(),
    };
    for chunk in documents(text) {
        let manifest = convert_document(&chunk, source, &mut conversion.warnings)?;
        conversion.manifests.push(manifest);
    }
    Ok(conversion)
}

fn convert_document(
    chunk: &Chunk<'_>,
    source: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Manifest, ConvertError> {
    let at = chunk.location(source);
    let mut cx = Context { at, warnings };
    match declared_kind(chunk, source)? {
        DeclaredKind::V1beta1(kind) => {
            cx.warn(format!("{kind} is already v1beta1: copied unchanged"));
            Ok(parse_v1beta1(chunk, source, kind)?)
        }
        DeclaredKind::OtherVersion { api_version, kind } if api_version == V1ALPHA2 => {
            if kind == super::DEVICE_KIND {
                let device = chunk.parse::<v1alpha2::Device>(source)?;
                Ok(Manifest::Device(cx.device(device)?))
            } else {
                let model = chunk.parse::<v1alpha2::DeviceModel>(source)?;
                Ok(Manifest::DeviceModel(cx.model(model)?))
            }
        }
        DeclaredKind::OtherVersion { api_version, kind } => Err(cx.fail(format!(
            "{kind} {api_version} cannot be converted: only {V1ALPHA2} can \
             ({GROUP} served no other version before v1beta1)"
        ))),
    }
}

/// The document being converted and the warnings collected so far.
struct Context<'w> {
    at: Location,
    warnings: &'w mut Vec<Warning>,
}

impl Context<'_> {
    fn warn(&mut self, message: String) {
        self.warnings.push(Warning {
            at: self.at.clone(),
            message,
        });
    }

    fn fail(&self, message: String) -> ConvertError {
        ConvertError::Unconvertible {
            at: self.at.clone(),
            message,
        }
    }

    fn device(&mut self, old: v1alpha2::Device) -> Result<Device, ConvertError> {
        let mut metadata = old.metadata;
        clear_server_fields(&mut metadata);
        if metadata.name.as_deref().unwrap_or_default().is_empty() {
            return Err(self.fail("the Device has no metadata.name".into()));
        }
        let spec = old.spec;
        let protocol = spec
            .protocol
            .map(|p| self.protocol(p))
            .transpose()?
            .flatten();
        let default_protocol = protocol.as_ref().and_then(|p| p.protocol_name.clone());
        let twins = old.status.map(|s| s.twins).unwrap_or_default();
        let properties = self.properties(spec.property_visitors, &twins, default_protocol)?;
        if let Some(data) = spec.data
            && (!data.data_properties.is_empty() || data.data_topic.is_some())
        {
            let names: Vec<&str> = data
                .data_properties
                .iter()
                .map(|p| p.property_name.as_str())
                .collect();
            self.warn(format!(
                "spec.data has no v1beta1 equivalent and was dropped (dataProperties: [{}], \
                 dataTopic: {}); use spec.properties[].pushMethod instead",
                names.join(", "),
                data.data_topic.as_deref().unwrap_or("none")
            ));
        }
        let reported: Vec<Twin> = twins
            .into_iter()
            .filter_map(|t| {
                t.reported.map(|reported| Twin {
                    reported: Some(reported),
                    ..Twin::new(t.property_name)
                })
            })
            .collect();
        Ok(Device {
            metadata,
            spec: DeviceSpec {
                device_model_ref: spec
                    .device_model_ref
                    .map(|r| DeviceModelRef { name: r.name }),
                node_name: spec.node_selector.and_then(|s| self.node_name(s)),
                protocol,
                properties,
                ..DeviceSpec::default()
            },
            status: (!reported.is_empty()).then(|| DeviceStatus {
                twins: reported,
                ..DeviceStatus::default()
            }),
        })
    }

    /// The first value of the node selector; v1alpha2 used it to pin a device to one node.
    fn node_name(&mut self, selector: v1alpha2::NodeSelector) -> Option<String> {
        let requirements: Vec<_> = selector
            .node_selector_terms
            .into_iter()
            .flat_map(|t| t.match_expressions.into_iter().chain(t.match_fields))
            .collect();
        let values: Vec<&String> = requirements.iter().flat_map(|r| &r.values).collect();
        let Some(first) = values.first() else {
            self.warn("spec.nodeSelector has no value: nodeName is left unset".into());
            return None;
        };
        if values.len() > 1 {
            self.warn(format!(
                "spec.nodeSelector has {} values; nodeName is the first, {first:?}",
                values.len()
            ));
        }
        if requirements.iter().any(|r| r.operator != "In") {
            self.warn(format!(
                "spec.nodeSelector uses operators other than In; nodeName is {first:?}"
            ));
        }
        Some((*first).clone())
    }

    fn protocol(
        &mut self,
        old: v1alpha2::ProtocolConfig,
    ) -> Result<Option<ProtocolConfig>, ConvertError> {
        let blocks = ProtocolBlocks::new(
            old.modbus,
            old.opcua,
            old.bluetooth,
            old.customized_protocol,
        );
        let (name, mut config) = blocks
            .into_config("spec.protocol")
            .map_err(|m| self.fail(m))?;
        for (key, value) in old.common.unwrap_or_default() {
            let origin = format!("spec.protocol.common.{key}");
            let entries = match value {
                Json::Object(inner)
                    if matches!(key.as_str(), "com" | "tcp" | "customizedValues") =>
                {
                    inner
                }
                value => ConfigData::from_iter([(key, value)]),
            };
            config.add(&origin, entries).map_err(|m| self.fail(m))?;
        }
        if name.is_none() && config.data.is_empty() {
            return Ok(None);
        }
        if name.is_none() {
            self.warn("spec.protocol has only common settings: protocolName is left unset".into());
        }
        Ok(Some(ProtocolConfig {
            protocol_name: name,
            config_data: config.into_option(),
        }))
    }

    /// Merges visitors and twins by property name: visitors first, in order, then twins that
    /// have no visitor.
    fn properties(
        &mut self,
        visitors: Vec<v1alpha2::PropertyVisitor>,
        twins: &[v1alpha2::Twin],
        default_protocol: Option<String>,
    ) -> Result<Vec<DeviceProperty>, ConvertError> {
        let mut desired = BTreeMap::new();
        for twin in twins {
            if desired
                .insert(twin.property_name.as_str(), twin.desired.clone())
                .is_some()
            {
                return Err(self.fail(format!(
                    "status.twins has two entries for property {:?}",
                    twin.property_name
                )));
            }
        }
        let mut properties = Vec::new();
        let mut seen = HashSet::new();
        for (i, visitor) in visitors.into_iter().enumerate() {
            let path = format!("spec.propertyVisitors[{i}]");
            if !seen.insert(visitor.property_name.clone()) {
                return Err(self.fail(format!(
                    "spec.propertyVisitors has two entries for property {:?}",
                    visitor.property_name
                )));
            }
            let collect_cycle = self.cycle(visitor.collect_cycle, &path, "collectCycle");
            let report_cycle = self.cycle(visitor.report_cycle, &path, "reportCycle");
            let name = visitor.property_name.clone();
            let visitors = self.visitor(visitor, &path, default_protocol.as_deref())?;
            properties.push(DeviceProperty {
                desired: desired.get(name.as_str()).cloned().flatten(),
                name,
                visitors,
                collect_cycle,
                report_cycle,
                ..DeviceProperty::default()
            });
        }
        for twin in twins {
            if !seen.contains(&twin.property_name) {
                properties.push(DeviceProperty {
                    name: twin.property_name.clone(),
                    desired: twin.desired.clone(),
                    ..DeviceProperty::default()
                });
            }
        }
        Ok(properties)
    }

    /// A v1alpha2 visitor's protocol block and `customizedValues` as one v1beta1 visitor.
    fn visitor(
        &mut self,
        old: v1alpha2::PropertyVisitor,
        path: &str,
        default_protocol: Option<&str>,
    ) -> Result<Option<VisitorConfig>, ConvertError> {
        let blocks = ProtocolBlocks::new(
            old.modbus,
            old.opcua,
            old.bluetooth,
            old.customized_protocol,
        );
        let (name, mut config) = blocks.into_config(path).map_err(|m| self.fail(m))?;
        if let Some(values) = old.customized_values {
            config
                .add(&format!("{path}.customizedValues"), values)
                .map_err(|m| self.fail(m))?;
        }
        if name.is_none() && config.data.is_empty() {
            return Ok(None);
        }
        Ok(Some(VisitorConfig {
            protocol_name: name.or_else(|| default_protocol.map(str::to_owned)),
            config_data: config.into_option(),
        }))
    }

    /// A cycle in milliseconds; nanosecond values are rewritten, with a warning.
    fn cycle(&mut self, raw: Option<i64>, path: &str, field: &str) -> Option<i64> {
        let millis = cycle_millis(raw, field);
        if let (Some(raw), Some(ms)) = (raw, millis)
            && raw >= NANOSECONDS_THRESHOLD
        {
            self.warn(format!(
                "{path}.{field} {raw} is in nanoseconds; written as {ms} (milliseconds)"
            ));
        }
        millis
    }

    fn model(&mut self, old: v1alpha2::DeviceModel) -> Result<DeviceModel, ConvertError> {
        let mut metadata = old.metadata;
        clear_server_fields(&mut metadata);
        if metadata.name.as_deref().unwrap_or_default().is_empty() {
            return Err(self.fail("the DeviceModel has no metadata.name".into()));
        }
        let mut with_default = Vec::new();
        let mut properties = Vec::new();
        for (i, old) in old.spec.properties.into_iter().enumerate() {
            let path = format!("spec.properties[{i}]");
            let (property_type, spec) = self.property_type(old.property_type, &path)?;
            if spec.default_value.is_some() {
                with_default.push(old.name.clone());
            }
            properties.push(ModelProperty {
                description: old.description,
                access_mode: spec.access_mode,
                minimum: self.limit(spec.minimum, &path, "minimum")?,
                maximum: self.limit(spec.maximum, &path, "maximum")?,
                unit: spec.unit,
                ..ModelProperty::new(old.name, property_type)
            });
        }
        if !with_default.is_empty() {
            self.warn(format!(
                "v1beta1 has no defaultValue: dropped for {}",
                with_default.join(", ")
            ));
        }
        let visitor_protocols = self.model_visitors(old.spec.property_visitors, &mut properties)?;
        let protocol = match (old.spec.protocol, visitor_protocols.as_slice()) {
            (Some(protocol), _) => Some(protocol),
            (None, [only]) => Some(only.clone()),
            (None, _) => None,
        };
        Ok(DeviceModel {
            metadata,
            spec: DeviceModelSpec {
                protocol,
                properties,
                protocol_config_data: None,
            },
            status: None,
        })
    }

    /// The one type block of a v1alpha2 property and the v1beta1 type it maps to.
    fn property_type(
        &self,
        types: v1alpha2::PropertyTypes,
        path: &str,
    ) -> Result<(PropertyType, v1alpha2::TypeSpec), ConvertError> {
        let present: Vec<(PropertyType, v1alpha2::TypeSpec)> = [
            (PropertyType::Int, types.int),
            (PropertyType::String, types.string),
            (PropertyType::Double, types.double),
            (PropertyType::Float, types.float),
            (PropertyType::Boolean, types.boolean),
            (PropertyType::Bytes, types.bytes),
        ]
        .into_iter()
        .filter_map(|(t, spec)| spec.map(|s| (t, s)))
        .collect();
        let count = present.len();
        present
            .into_iter()
            .next()
            .filter(|_| count == 1)
            .ok_or_else(|| {
                self.fail(format!(
                    "{path}.type must hold exactly one of int, string, double, float, boolean, \
                 bytes (it holds {count})"
                ))
            })
    }

    fn limit(
        &self,
        value: Option<Json>,
        path: &str,
        field: &str,
    ) -> Result<Option<String>, ConvertError> {
        match value {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.fail(format!("{path}.type.{field} must be a number, not {other}")))
            }
        }
    }

    /// Attaches old-style model `propertyVisitors` to the model's properties and returns the
    /// distinct protocol names they use.
    fn model_visitors(
        &mut self,
        visitors: Vec<v1alpha2::PropertyVisitor>,
        properties: &mut [ModelProperty],
    ) -> Result<Vec<String>, ConvertError> {
        let mut protocols = Vec::new();
        for (i, visitor) in visitors.into_iter().enumerate() {
            let path = format!("spec.propertyVisitors[{i}]");
            if visitor.collect_cycle.is_some() || visitor.report_cycle.is_some() {
                self.warn(format!(
                    "{path}: a DeviceModel has no cycles in v1beta1; set them on the Device"
                ));
            }
            let name = visitor.property_name.clone();
            let Some(property) = properties.iter_mut().find(|p| p.name == name) else {
                self.warn(format!(
                    "{path} is for {name:?}, which the model does not define: dropped"
                ));
                continue;
            };
            property.visitors = self.visitor(visitor, &path, None)?;
            let protocol = property
                .visitors
                .as_ref()
                .and_then(|v| v.protocol_name.clone());
            if let Some(protocol) = protocol
                && !protocols.contains(&protocol)
            {
                protocols.push(protocol);
            }
        }
        Ok(protocols)
    }
}

/// The protocol-specific blocks of a v1alpha2 protocol or visitor; at most one may be set.
struct ProtocolBlocks {
    modbus: Option<ConfigData>,
    opcua: Option<ConfigData>,
    bluetooth: Option<ConfigData>,
    customized: Option<v1alpha2::CustomizedProtocol>,
}

impl ProtocolBlocks {
    fn new(
        modbus: Option<ConfigData>,
        opcua: Option<ConfigData>,
        bluetooth: Option<ConfigData>,
        customized: Option<v1alpha2::CustomizedProtocol>,
    ) -> Self {
        Self {
            modbus,
            opcua,
            bluetooth,
            customized,
        }
    }

    /// The protocol name and the block's fields as the start of a `configData`, or an error
    /// naming the clashing blocks. `path` is where the blocks are, for messages.
    fn into_config(self, path: &str) -> Result<(Option<String>, Merged), String> {
        let (name, block) = self.single(path)?;
        let mut config = Merged::default();
        if let (Some(name), Some(block)) = (&name, block) {
            config.add(&format!("{path}.{name}"), block)?;
        }
        Ok((name, config))
    }

    fn single(self, path: &str) -> Result<(Option<String>, Option<ConfigData>), String> {
        let mut present: Vec<(String, ConfigData)> = [
            ("modbus", self.modbus),
            ("opcua", self.opcua),
            ("bluetooth", self.bluetooth),
        ]
        .into_iter()
        .filter_map(|(name, block)| block.map(|b| (name.to_owned(), b)))
        .collect();
        if let Some(custom) = self.customized {
            present.push((custom.protocol_name, custom.config_data.unwrap_or_default()));
        }
        match present.len() {
            0 => Ok((None, None)),
            1 => Ok(present
                .pop()
                .map(|(name, block)| (Some(name), Some(block)))
                .unwrap_or_default()),
            _ => {
                let names: Vec<_> = present.iter().map(|(n, _)| n.as_str()).collect();
                Err(format!(
                    "{path} has several protocols ({}); v1beta1 has one protocol per device",
                    names.join(", ")
                ))
            }
        }
    }
}

/// `configData` built from several v1alpha2 blocks, remembering where each key came from.
#[derive(Default)]
struct Merged {
    data: ConfigData,
    origins: BTreeMap<String, String>,
}

impl Merged {
    fn add(&mut self, origin: &str, entries: ConfigData) -> Result<(), String> {
        for (key, value) in entries {
            match self.data.get(&key) {
                Some(existing) if *existing != value => {
                    let first = self.origins.get(&key).cloned().unwrap_or_default();
                    return Err(format!(
                        "{key:?} is set to {existing} in {first} and to {value} in {origin}; \
                         configData can hold one value"
                    ));
                }
                Some(_) => {}
                None => {
                    self.origins.insert(key.clone(), origin.to_owned());
                    self.data.insert(key, value);
                }
            }
        }
        Ok(())
    }

    fn into_option(self) -> Option<ConfigData> {
        (!self.data.is_empty()).then_some(self.data)
    }
}

#[cfg(test)]
mod tests;
