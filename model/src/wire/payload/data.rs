//! `$ke/events/device/{id}/data/update`: telemetry a mapper publishes for other applications
//! (edgecore does not read it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{JsonField, Metadata, kubeedge_message};

/// One property sample, mappers-go's `DataValue`: both keys are always written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DataValue {
    /// The value as a string.
    pub value: String,
    /// `{"timestamp": ms, "type": …}`.
    pub metadata: Metadata,
}

kubeedge_message! {
    /// The `data/update` payload, mappers-go's `DeviceData`.
    pub struct DeviceData {
        /// Property name → sample.
        #[serde(skip_serializing_if = "JsonField::is_missing")]
        pub data: JsonField<BTreeMap<String, Option<DataValue>>>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{decode, encode};

    #[test]
    fn property_names_keep_their_case_and_metadata_is_typed() {
        let json = r#"{"event_id":"","timestamp":7,"data":{"propertyName1":{"value":"123","metadata":{"timestamp":7,"type":"int"}}}}"#;
        let data: DeviceData = decode(json.as_bytes()).expect("decodes");
        let sample = data.data.value().expect("data")["propertyName1"]
            .as_ref()
            .expect("sample");
        assert_eq!(sample.value, "123");
        assert_eq!(sample.metadata.timestamp, Some(7));
        assert_eq!(sample.metadata.value_type.as_deref(), Some("int"));
        assert_eq!(encode(&data).expect("encodes"), json.as_bytes());
    }
}
