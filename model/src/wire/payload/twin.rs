//! Device twin payloads: `…/twin/update`, `…/twin/update/result`, `…/twin/update/delta`,
//! `…/twin/update/document`, `…/twin/get/result` and `…/twin/cloud_updated`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{JsonField, Metadata, kubeedge_message};

/// Twin properties by name. A `None` value is JSON `null`, which deletes the property.
pub type TwinMap = BTreeMap<String, Option<MsgTwin>>;

/// One half of a twin property (`expected` = desired, `actual` = reported): KubeEdge's `TwinValue`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TwinValue {
    /// The value; the wire always carries values as strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// When the value was set (`{"timestamp": ms}`); mappers-go always sends `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl TwinValue {
    /// A value with a timestamp (milliseconds since the Unix epoch).
    pub fn at(value: impl Into<String>, timestamp: i64) -> Self {
        TwinValue {
            value: Some(value.into()),
            metadata: Some(Metadata::at(timestamp)),
        }
    }
}

/// A version pair of one twin half, KubeEdge's `TwinVersion`: both keys are always written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TwinVersion {
    /// Bumped by the cloud.
    pub cloud: i64,
    /// Bumped by the edge.
    pub edge: i64,
}

/// One twin property, KubeEdge's `MsgTwin`. Every key is optional and left out when absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MsgTwin {
    /// The desired value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<TwinValue>,
    /// The reported value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<TwinValue>,
    /// Whether the property is optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// `{"type": …}`: the property type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Version of the desired half.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<TwinVersion>,
    /// Version of the reported half.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_version: Option<TwinVersion>,
    /// edgetwin extension (KubeEdge ignores it): the device refused to take a desired value.
    /// An event, not twin state: the edge forwards it to the cloud and does not store it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_error: Option<WriteError>,
    /// edgetwin extension (KubeEdge ignores it): whether the device can be read. A value says
    /// the property's reads fail and why; `null` says they work again; absent says nothing new.
    /// Like `write_error`, an event the edge forwards to the cloud and does not store.
    #[serde(skip_serializing_if = "JsonField::is_missing")]
    pub read_error: JsonField<ReadError>,
}

/// A desired value the device could not write, and why: the `write_error` of a [`MsgTwin`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteError {
    /// The desired value that could not be written.
    pub value: String,
    /// Why the device refused it (the driver's message).
    pub reason: String,
}

/// Why a property cannot be read: the `read_error` of a [`MsgTwin`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadError {
    /// The driver's message, e.g. `rejected by the device: ERR unknown`.
    pub reason: String,
}

kubeedge_message! {
    /// `$hw/events/device/{id}/twin/update` (mapper → edge: reported values) and the content of
    /// `…/twin/cloud_updated` / beehive `twin/edge_updated`: KubeEdge's `DeviceTwinUpdate`.
    ///
    /// KubeEdge rejects an update whose `twin` is missing or `null`, but accepts `{}`; the three
    /// stay distinct here.
    pub struct DeviceTwinUpdate {
        /// Properties to change; a `null` value deletes the property.
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub twin: JsonField<TwinMap>,
    }
}

kubeedge_message! {
    /// A successful `…/twin/update/result` or `…/twin/get/result` (edge → mapper): KubeEdge's
    /// `DeviceTwinResult`. A failure on those topics is an [`ErrorResult`](super::ErrorResult);
    /// [`TwinReply`](super::TwinReply) decodes either.
    pub struct DeviceTwinResult {
        /// The properties as the edge now holds them; `null` for a deleted property.
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub twin: JsonField<TwinMap>,
    }
}

kubeedge_message! {
    /// `$hw/events/device/{id}/twin/update/delta` (edge → mapper): KubeEdge's `DeviceTwinDelta`.
    pub struct DeviceTwinDelta {
        /// Every property that has a desired value (versions left out).
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub twin: JsonField<TwinMap>,
        /// Property name → desired value, for each property whose reported value differs.
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub delta: JsonField<BTreeMap<String, String>>,
    }
}

/// The before and after of one property in a [`DeviceTwinDocument`]: KubeEdge's `TwinDoc`.
/// Go writes both keys; `null` means the property did not exist (before) or was deleted (after).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TwinDoc {
    /// The property before the change.
    #[serde(skip_serializing_if = "JsonField::is_missing")]
    pub last: JsonField<MsgTwin>,
    /// The property after the change.
    #[serde(skip_serializing_if = "JsonField::is_missing")]
    pub current: JsonField<MsgTwin>,
}

kubeedge_message! {
    /// `$hw/events/device/{id}/twin/update/document` (edge → apps): KubeEdge's
    /// `DeviceTwinDocument`, the before/after of every changed property.
    pub struct DeviceTwinDocument {
        /// Property name → before/after.
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub twin: JsonField<BTreeMap<String, Option<TwinDoc>>>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};
    use crate::wire::payload::TYPE_UPDATED;

    fn encode_str<T: Serialize>(value: &T) -> String {
        String::from_utf8(encode(value).expect("encodes")).expect("utf-8")
    }

    #[test]
    fn a_mapper_report_round_trips_and_is_read_field_by_field() {
        let json = r#"{"event_id":"","timestamp":1700000000123,"twin":{"temperature":{"actual":{"value":"23.5","metadata":{}},"metadata":{"type":"float"}}}}"#;
        let update: DeviceTwinUpdate = decode(json.as_bytes()).expect("decodes");
        assert_eq!(update.timestamp, Some(1_700_000_000_123));
        let twin = update.twin.value().expect("twin present");
        let temperature = twin["temperature"].as_ref().expect("not deleted");
        let actual = temperature.actual.as_ref().expect("actual");
        assert_eq!(actual.value.as_deref(), Some("23.5"));
        assert_eq!(actual.metadata, Some(Metadata::default()));
        assert_eq!(encode_str(&update), json);
    }

    #[test]
    fn null_twin_entry_means_delete_and_is_written_back_as_null() {
        let json =
            r#"{"event_id":"d","timestamp":1,"twin":{"count":null,"keep":{"optional":true}}}"#;
        let result: DeviceTwinResult = decode(json.as_bytes()).expect("decodes");
        let twin = result.twin.value().expect("twin present");
        assert_eq!(twin["count"], None);
        assert_eq!(twin["keep"].as_ref().and_then(|t| t.optional), Some(true));
        assert_eq!(encode_str(&result), json);
    }

    #[test]
    fn missing_null_and_empty_twin_maps_stay_distinct() {
        for (json, expected) in [
            (r#"{"event_id":"1"}"#, JsonField::Missing),
            (r#"{"event_id":"1","twin":null}"#, JsonField::Null),
            (
                r#"{"event_id":"1","twin":{}}"#,
                JsonField::Value(TwinMap::new()),
            ),
        ] {
            let update: DeviceTwinUpdate = decode(json.as_bytes()).expect("decodes");
            assert_eq!(update.twin, expected, "{json}");
            assert_eq!(encode_str(&update), json);
        }
    }

    #[test]
    fn go_capitalised_keys_are_read_but_property_names_keep_their_case() {
        let json = r#"{"Event_ID":"x","TimeStamp":2,"Twin":{"Red":{"Actual":{"Value":"ON"},"Metadata":{"Type":"Updated"}},"red":{"EXPECTED":{"value":"OFF"}}}}"#;
        let update: DeviceTwinUpdate = decode(json.as_bytes()).expect("decodes");
        assert_eq!(update.event_id.as_deref(), Some("x"));
        let twin = update.twin.value().expect("twin present");
        let names: Vec<_> = twin.keys().map(String::as_str).collect();
        assert_eq!(names, ["Red", "red"]);
        let red = twin["Red"].as_ref().expect("Red");
        assert_eq!(
            red.actual.as_ref().and_then(|a| a.value.as_deref()),
            Some("ON")
        );
        assert_eq!(red.metadata, Some(Metadata::of_type(TYPE_UPDATED)));
        assert_eq!(
            encode_str(&update),
            r#"{"event_id":"x","timestamp":2,"twin":{"Red":{"actual":{"value":"ON"},"metadata":{"type":"Updated"}},"red":{"expected":{"value":"OFF"}}}}"#
        );
    }

    #[test]
    fn unknown_fields_are_ignored_at_every_level() {
        let json = r#"{"event_id":"u","qos":1,"twin":{"p":{"actual":{"value":"1","quality":"good"},"unit":"C","actual_version":{"cloud":1,"edge":2,"node":3}}}}"#;
        let update: DeviceTwinUpdate = decode(json.as_bytes()).expect("decodes");
        assert_eq!(
            encode_str(&update),
            r#"{"event_id":"u","twin":{"p":{"actual":{"value":"1"},"actual_version":{"cloud":1,"edge":2}}}}"#
        );
    }

    #[test]
    fn a_write_error_round_trips_and_is_left_out_when_absent() {
        let json = r#"{"event_id":"","twin":{"green":{"actual":{"value":"OFF"},"write_error":{"value":"ON","reason":"interlock: red is ON"}}}}"#;
        let update: DeviceTwinUpdate = decode(json.as_bytes()).expect("decodes");
        let green = update.twin.value().expect("twin")["green"]
            .as_ref()
            .expect("green");
        assert_eq!(
            green.write_error,
            Some(WriteError {
                value: "ON".into(),
                reason: "interlock: red is ON".into(),
            })
        );
        assert_eq!(encode_str(&update), json);

        let plain = MsgTwin {
            actual: Some(TwinValue::at("OFF", 1)),
            ..MsgTwin::default()
        };
        assert!(!encode_str(&plain).contains("write_error"));
    }

    #[test]
    fn a_read_error_and_its_clearing_round_trip_and_are_left_out_when_absent() {
        let failing = r#"{"event_id":"","twin":{"hum":{"metadata":{"type":"float"},"read_error":{"reason":"rejected by the device: ERR unknown"}}}}"#;
        let update: DeviceTwinUpdate = decode(failing.as_bytes()).expect("decodes");
        let hum = update.twin.value().expect("twin")["hum"]
            .as_ref()
            .expect("hum");
        assert_eq!(
            hum.read_error,
            JsonField::Value(ReadError {
                reason: "rejected by the device: ERR unknown".into(),
            })
        );
        assert_eq!(encode_str(&update), failing);

        let cleared =
            r#"{"event_id":"","twin":{"hum":{"actual":{"value":"41"},"read_error":null}}}"#;
        let update: DeviceTwinUpdate = decode(cleared.as_bytes()).expect("decodes");
        let hum = update.twin.value().expect("twin")["hum"]
            .as_ref()
            .expect("hum");
        assert_eq!(hum.read_error, JsonField::Null);
        assert_eq!(encode_str(&update), cleared);

        assert!(!encode_str(&MsgTwin::default()).contains("read_error"));
    }

    #[test]
    fn delta_and_document_shapes() {
        let delta = DeviceTwinDelta {
            event_id: Some("e".into()),
            timestamp: Some(5),
            twin: TwinMap::from([(
                "green".to_owned(),
                Some(MsgTwin {
                    expected: Some(TwinValue::at("ON", 5)),
                    ..MsgTwin::default()
                }),
            )])
            .into(),
            delta: BTreeMap::from([("green".to_owned(), "ON".to_owned())]).into(),
        };
        assert_eq!(
            encode_str(&delta),
            r#"{"event_id":"e","timestamp":5,"twin":{"green":{"expected":{"value":"ON","metadata":{"timestamp":5}}}},"delta":{"green":"ON"}}"#
        );

        let json = r#"{"event_id":"","timestamp":1,"twin":{"count":{"last":{"optional":true},"current":null}}}"#;
        let document: DeviceTwinDocument = decode(json.as_bytes()).expect("decodes");
        let doc = document.twin.value().expect("twin")["count"]
            .as_ref()
            .expect("doc");
        assert_eq!(doc.current, JsonField::Null);
        assert_eq!(encode_str(&document), json);
    }

    #[test]
    fn wrong_value_type_is_reported_with_its_path() {
        let err = decode::<DeviceTwinUpdate>(br#"{"twin":{"red":{"actual":{"value":5}}}}"#)
            .expect_err("a number is not a twin value");
        let message = err.to_string();
        assert!(
            message.contains("`twin.red.actual.value`"),
            "path missing: {message}"
        );
        assert!(message.contains("expected a string"), "{message}");
    }
}
