//! The `metadata` objects of the DeviceTwin wire.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::wire::go_json::go_field_name;

/// `metadata.type` of a twin property that a mapper reports without knowing its type.
pub const TYPE_UPDATED: &str = "Updated";
/// `metadata.type` of a twin property that has been deleted.
pub const TYPE_DELETED: &str = "deleted";

/// A `metadata` object: `{"type": …}` on a twin property or attribute (KubeEdge's `TypeMetadata`),
/// `{"timestamp": …}` on a twin value (`ValueMetadata`), both on a data value (`DataMetadata`).
///
/// One type serves all three places: every key is optional, and `"metadata":{}` round-trips as
/// `{}`. `timestamp` and `type` match case-insensitively like Go struct fields; any other key is
/// kept verbatim in [`Metadata::extra`] (its name is user data and never case-folded), because the
/// Device CRD treats metadata as a free-form map.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Metadata {
    /// Milliseconds since the Unix epoch when the value was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// The property type as KubeEdge spells it (`"string"`, `"int"`, …, or [`TYPE_UPDATED`] /
    /// [`TYPE_DELETED`]).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// Any other keys, as sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Metadata with only a type.
    pub fn of_type(value_type: impl Into<String>) -> Self {
        Metadata {
            value_type: Some(value_type.into()),
            ..Metadata::default()
        }
    }

    /// Metadata with only a timestamp (milliseconds since the Unix epoch).
    pub fn at(timestamp: i64) -> Self {
        Metadata {
            timestamp: Some(timestamp),
            ..Metadata::default()
        }
    }
}

const KNOWN_KEYS: &[&str] = &["timestamp", "type"];

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = Metadata;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a metadata object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let mut metadata = Metadata::default();
        // Keys are handled in document order, so a later duplicate wins, as in Go.
        while let Some(key) = map.next_key::<String>()? {
            match go_field_name(&key, KNOWN_KEYS) {
                Some("timestamp") => metadata.timestamp = map.next_value()?,
                Some(_) => metadata.value_type = map.next_value()?,
                None => {
                    let value = map.next_value()?;
                    metadata.extra.insert(key, value);
                }
            }
        }
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};

    fn round_trip(json: &str) -> (Metadata, String) {
        let metadata: Metadata = decode(json.as_bytes()).expect("decodes");
        let out = String::from_utf8(encode(&metadata).expect("encodes")).expect("utf-8");
        (metadata, out)
    }

    #[test]
    fn empty_metadata_round_trips_as_an_empty_object() {
        let (metadata, out) = round_trip("{}");
        assert_eq!(metadata, Metadata::default());
        assert_eq!(out, "{}");
    }

    #[test]
    fn known_keys_fold_and_are_written_canonically() {
        let (metadata, out) = round_trip(r#"{"Timestamp":5,"TYPE":"int"}"#);
        assert_eq!(metadata.timestamp, Some(5));
        assert_eq!(metadata.value_type.as_deref(), Some("int"));
        assert_eq!(out, r#"{"timestamp":5,"type":"int"}"#);
    }

    #[test]
    fn other_keys_are_kept_verbatim() {
        let (metadata, out) = round_trip(r#"{"type":"float","Unit":"°C","unit":{"si":true}}"#);
        assert_eq!(metadata.extra.len(), 2);
        assert_eq!(metadata.extra["Unit"], "°C");
        assert_eq!(out, r#"{"type":"float","Unit":"°C","unit":{"si":true}}"#);
    }

    #[test]
    fn null_known_keys_are_unset_and_later_duplicates_win() {
        let (metadata, out) = round_trip(r#"{"timestamp":null,"type":"a","Type":"b"}"#);
        assert_eq!(metadata.timestamp, None);
        assert_eq!(metadata.value_type.as_deref(), Some("b"));
        assert_eq!(out, r#"{"type":"b"}"#);
    }

    #[test]
    fn a_wrongly_typed_known_key_names_its_path() {
        let err = decode::<Metadata>(br#"{"timestamp":"soon"}"#).expect_err("must fail");
        let message = err.to_string();
        assert!(message.contains("`timestamp`"), "{message}");
        assert!(message.contains("expected i64"), "{message}");
    }
}
