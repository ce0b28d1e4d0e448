//! The mapper's side of KubeEdge's DeviceTwin topics, built on [`edgetwin_model::wire`]: the
//! topics of one device, the payloads the mapper publishes, and the desired values it reads.

use std::collections::BTreeMap;

use edgetwin_model::value::PropertyType;
use edgetwin_model::wire::payload::{
    BaseMessage, DeviceTwinDelta, DeviceTwinUpdate, DeviceUpdate, JsonField, Metadata, MsgTwin,
    ReadError, TwinMap, TwinReply, TwinValue, WriteError,
};
use edgetwin_model::wire::topic::DeviceEvent;
use edgetwin_model::wire::{self, Topic};

use super::state::DeviceState;

/// One reported property of a `twin/update`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// The property.
    pub name: String,
    /// The value, in wire form.
    pub value: String,
    /// The property type (`metadata.type`).
    pub ty: PropertyType,
}

/// A desired value the device refused, reported in a `twin/update` as the edgetwin extension
/// `write_error` (the cloud shows it as the property's `Failed` condition).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The property.
    pub name: String,
    /// The property type (`metadata.type`).
    pub ty: PropertyType,
    /// The desired value that could not be written, in wire form.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
    /// The last value read from the device, in wire form, when one is known.
    pub actual: Option<String>,
}

/// A property whose reads fail, or work again, reported in a `twin/update` as the edgetwin
/// extension `read_error` (the cloud shows it as the property's `ReadFailed` condition).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadFailure {
    /// The property.
    pub name: String,
    /// The property type (`metadata.type`).
    pub ty: PropertyType,
    /// Why its reads fail; `None`: they work again (`read_error: null`).
    pub reason: Option<String>,
}

/// The topics of one device, formatted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopics {
    /// `…/twin/update` (published).
    pub twin_update: String,
    /// `…/twin/get` (published).
    pub twin_get: String,
    /// `…/state/update` (published).
    pub state_update: String,
    /// `…/twin/update/delta` (subscribed).
    pub delta: String,
    /// `…/twin/get/result` (subscribed).
    pub get_result: String,
}

impl DeviceTopics {
    /// The topics of the device with the topic id `id`.
    pub fn new(id: &wire::DeviceId) -> Self {
        let topic = |event| {
            Topic::Device {
                id: id.clone(),
                event,
            }
            .to_string()
        };
        Self {
            twin_update: topic(DeviceEvent::TwinUpdate),
            twin_get: topic(DeviceEvent::TwinGet),
            state_update: topic(DeviceEvent::StateUpdate),
            delta: topic(DeviceEvent::TwinUpdateDelta),
            get_result: topic(DeviceEvent::TwinGetResult),
        }
    }
}

/// A `twin/update` reporting `entries` (values and types), stamped `now_ms`.
pub fn twin_update(entries: &[Reported], now_ms: i64) -> Vec<u8> {
    let twin: TwinMap = entries
        .iter()
        .map(|entry| {
            let property = MsgTwin {
                actual: Some(TwinValue::at(entry.value.clone(), now_ms)),
                metadata: Some(Metadata::of_type(entry.ty.twin_type_name())),
                ..MsgTwin::default()
            };
            (entry.name.clone(), Some(property))
        })
        .collect();
    let update = DeviceTwinUpdate {
        event_id: Some(String::new()),
        timestamp: Some(now_ms),
        twin: JsonField::Value(twin),
    };
    encoded(&update)
}

/// A `twin/update` reporting refused writes: each property carries `write_error` and, when
/// known, its last read value as `actual`.
pub fn twin_write_errors(refused: &[Refused], now_ms: i64) -> Vec<u8> {
    let twin: TwinMap = refused
        .iter()
        .map(|entry| {
            let property = MsgTwin {
                actual: entry
                    .actual
                    .as_ref()
                    .map(|value| TwinValue::at(value.clone(), now_ms)),
                metadata: Some(Metadata::of_type(entry.ty.twin_type_name())),
                write_error: Some(WriteError {
                    value: entry.value.clone(),
                    reason: entry.reason.clone(),
                }),
                ..MsgTwin::default()
            };
            (entry.name.clone(), Some(property))
        })
        .collect();
    encoded(&DeviceTwinUpdate {
        event_id: Some(String::new()),
        timestamp: Some(now_ms),
        twin: JsonField::Value(twin),
    })
}

/// A `twin/update` telling the edge which properties cannot be read (`read_error` with the
/// reason) and which can again (`read_error: null`). It carries no values.
pub fn twin_read_errors(failures: &[ReadFailure], now_ms: i64) -> Vec<u8> {
    let twin: TwinMap = failures
        .iter()
        .map(|entry| {
            let property = MsgTwin {
                metadata: Some(Metadata::of_type(entry.ty.twin_type_name())),
                read_error: entry
                    .reason
                    .as_ref()
                    .map(|reason| ReadError {
                        reason: reason.clone(),
                    })
                    .into(),
                ..MsgTwin::default()
            };
            (entry.name.clone(), Some(property))
        })
        .collect();
    encoded(&DeviceTwinUpdate {
        event_id: Some(String::new()),
        timestamp: Some(now_ms),
        twin: JsonField::Value(twin),
    })
}

/// A `twin/get` request.
pub fn twin_get(now_ms: i64) -> Vec<u8> {
    encoded(&BaseMessage {
        event_id: Some(String::new()),
        timestamp: Some(now_ms),
    })
}

/// A `state/update` for `state`, with the reason when there is one.
pub fn state_update(state: &DeviceState, now_ms: i64) -> Vec<u8> {
    encoded(&DeviceUpdate {
        event_id: Some(String::new()),
        timestamp: Some(now_ms),
        state: Some(state.name().to_owned()),
        attributes: JsonField::Missing,
        reason: state.reason().map(str::to_owned),
    })
}

/// The desired values of a `twin/update/delta`: its `delta` map, or when that is absent the
/// `expected` values of its twin.
pub fn desired_from_delta(payload: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let delta: DeviceTwinDelta = wire::decode(payload).map_err(|e| e.to_string())?;
    Ok(match delta.delta {
        JsonField::Value(delta) => delta,
        JsonField::Missing | JsonField::Null => expected_values(delta.twin.value()),
    })
}

/// The desired values of a `twin/get/result`; an error reply is an error.
pub fn desired_from_get_result(payload: &[u8]) -> Result<BTreeMap<String, String>, String> {
    match wire::decode::<TwinReply>(payload).map_err(|e| e.to_string())? {
        TwinReply::Ok(result) => Ok(expected_values(result.twin.value())),
        TwinReply::Err(err) => Err(format!(
            "the edge answered {}: {}",
            err.code.unwrap_or_default(),
            err.reason.unwrap_or_default()
        )),
    }
}

fn expected_values(twin: Option<&TwinMap>) -> BTreeMap<String, String> {
    twin.into_iter()
        .flatten()
        .filter_map(|(name, property)| {
            let value = property.as_ref()?.expected.as_ref()?.value.clone()?;
            Some((name.clone(), value))
        })
        .collect()
}

fn encoded<T: serde::Serialize>(payload: &T) -> Vec<u8> {
    // These payloads are plain strings, numbers and maps: encoding cannot fail.
    wire::encode(payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_use_the_configured_id_form() {
        let namespaced = wire::DeviceId::namespaced("plant", "pump").expect("valid");
        let topics = DeviceTopics::new(&namespaced);
        assert_eq!(
            topics.twin_update,
            "$hw/events/device/plant/pump/twin/update"
        );
        assert_eq!(
            topics.delta,
            "$hw/events/device/plant/pump/twin/update/delta"
        );
        let named = wire::DeviceId::named("pump").expect("valid");
        assert_eq!(
            DeviceTopics::new(&named).get_result,
            "$hw/events/device/pump/twin/get/result"
        );
    }

    #[test]
    fn a_report_carries_values_types_and_timestamps() {
        let payload = twin_update(
            &[
                Reported {
                    name: "red".into(),
                    value: "true".into(),
                    ty: PropertyType::Boolean,
                },
                Reported {
                    name: "temperature".into(),
                    value: "21.5".into(),
                    ty: PropertyType::Float,
                },
            ],
            1_700_000_000_000,
        );
        assert_eq!(
            String::from_utf8(payload).expect("utf-8"),
            r#"{"event_id":"","timestamp":1700000000000,"twin":{"red":{"actual":{"value":"true","metadata":{"timestamp":1700000000000}},"metadata":{"type":"boolean"}},"temperature":{"actual":{"value":"21.5","metadata":{"timestamp":1700000000000}},"metadata":{"type":"float"}}}}"#
        );
    }

    #[test]
    fn a_refusal_carries_the_write_error_and_the_last_read_value_when_known() {
        let payload = twin_write_errors(
            &[
                Refused {
                    name: "green".into(),
                    ty: PropertyType::Boolean,
                    value: "true".into(),
                    reason: "red is ON".into(),
                    actual: Some("false".into()),
                },
                Refused {
                    name: "speed".into(),
                    ty: PropertyType::Int,
                    value: "9000".into(),
                    reason: "out of range".into(),
                    actual: None,
                },
            ],
            7,
        );
        assert_eq!(
            String::from_utf8(payload).expect("utf-8"),
            r#"{"event_id":"","timestamp":7,"twin":{"green":{"actual":{"value":"false","metadata":{"timestamp":7}},"metadata":{"type":"boolean"},"write_error":{"value":"true","reason":"red is ON"}},"speed":{"metadata":{"type":"int"},"write_error":{"value":"9000","reason":"out of range"}}}}"#
        );
    }

    #[test]
    fn read_failures_carry_the_reason_or_null_and_no_value() {
        let payload = twin_read_errors(
            &[
                ReadFailure {
                    name: "hum".into(),
                    ty: PropertyType::Float,
                    reason: Some("rejected by the device: ERR unknown".into()),
                },
                ReadFailure {
                    name: "temp".into(),
                    ty: PropertyType::Float,
                    reason: None,
                },
            ],
            9,
        );
        assert_eq!(
            String::from_utf8(payload).expect("utf-8"),
            r#"{"event_id":"","timestamp":9,"twin":{"hum":{"metadata":{"type":"float"},"read_error":{"reason":"rejected by the device: ERR unknown"}},"temp":{"metadata":{"type":"float"},"read_error":null}}}"#
        );
    }

    #[test]
    fn state_updates_carry_the_reason() {
        let online = state_update(&DeviceState::Online, 5);
        assert_eq!(online, br#"{"event_id":"","timestamp":5,"state":"online"}"#);
        let bad = state_update(&DeviceState::Unhealthy("pin: invalid".into()), 5);
        assert_eq!(
            bad,
            br#"{"event_id":"","timestamp":5,"state":"unhealthy","reason":"pin: invalid"}"#
        );
    }

    #[test]
    fn desired_values_come_from_the_delta_map_or_the_expected_values() {
        let delta = br#"{"event_id":"x","timestamp":1,"twin":{"green":{"expected":{"value":"ON"},"actual":{"value":"OFF"}},"red":{"expected":{"value":"OFF"}}},"delta":{"green":"ON"}}"#;
        assert_eq!(
            desired_from_delta(delta),
            Ok(BTreeMap::from([("green".to_owned(), "ON".to_owned())]))
        );
        let no_map = br#"{"twin":{"red":{"expected":{"value":"OFF"}},"gone":null}}"#;
        assert_eq!(
            desired_from_delta(no_map),
            Ok(BTreeMap::from([("red".to_owned(), "OFF".to_owned())]))
        );
        assert!(desired_from_delta(b"not json").is_err());
    }

    #[test]
    fn get_results_give_expected_values_and_errors_are_errors() {
        let ok = br#"{"event_id":"","timestamp":1,"twin":{"red":{"expected":{"value":"ON"},"actual":{"value":"OFF"}},"yellow":{"actual":{"value":"OFF"}}}}"#;
        assert_eq!(
            desired_from_get_result(ok),
            Ok(BTreeMap::from([("red".to_owned(), "ON".to_owned())]))
        );
        let err = br#"{"event_id":"","timestamp":1,"code":404,"reason":"device not found"}"#;
        assert_eq!(
            desired_from_get_result(err),
            Err("the edge answered 404: device not found".to_owned())
        );
    }
}
