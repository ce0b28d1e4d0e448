//! JSON-schema pieces for fields whose derived schema would not be a Kubernetes *structural*
//! schema, used with `#[schemars(schema_with = "…")]`.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Free-form configuration (`configData`, `protocolConfigData`, …): any JSON object.
pub type ConfigData = serde_json::Map<String, serde_json::Value>;

/// A free-form object the API server must keep as is: `type: object` plus
/// `x-kubernetes-preserve-unknown-fields: true`, exactly as KubeEdge's CRD declares `configData`.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// An RFC 3339 timestamp string.
pub fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
    })
}
