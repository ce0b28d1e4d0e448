//! `Device.status`: KubeEdge's twins, state and last online time, plus edgetwin's additions
//! (`observedGeneration` and one actuation `condition` per twin). The additions are optional, so a
//! KubeEdge status is a valid edgetwin status and the other way round.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cycle::cycle_duration;
use super::schema::date_time;

/// A property value with its metadata, as KubeEdge writes twins: `{value, metadata}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TwinProperty {
    /// The value, always a string on the KubeEdge wire; typed by the DeviceModel property.
    pub value: String,
    /// Additional metadata like the timestamp when the value was reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl TwinProperty {
    /// A value without metadata.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            metadata: BTreeMap::new(),
        }
    }
}

/// The observed state of a device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// Desired/reported values of the device's twin properties. Optional: a passive device has no
    /// twins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub twins: Vec<Twin>,
    /// The device state reported by its mapper (e.g. `online`, `offline`, `unhealthy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the device was last online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_online_time: Option<String>,
    /// Whether the device state is reported to the cloud (KubeEdge's status copy of
    /// `spec.stateReport`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_to_cloud: Option<bool>,
    /// How often the mapper reports the device state, in milliseconds (KubeEdge's status copy of
    /// `spec.stateReport`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_cycle: Option<i64>,
    /// edgetwin: the `metadata.generation` of the spec that this status reflects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl DeviceStatus {
    /// The twin of a property, if the status has one.
    pub fn twin(&self, property: &str) -> Option<&Twin> {
        self.twins.iter().find(|t| t.property_name == property)
    }

    /// The twin of a property, added (empty) when missing.
    pub fn twin_mut(&mut self, property: &str) -> &mut Twin {
        let index = match self.twins.iter().position(|t| t.property_name == property) {
            Some(index) => index,
            None => {
                self.twins.push(Twin::new(property));
                self.twins.len() - 1
            }
        };
        &mut self.twins[index]
    }

    /// `reportCycle` as a duration (see [`crate::devices::cycle`]).
    pub fn report_cycle(&self) -> Option<std::time::Duration> {
        cycle_duration(self.report_cycle, "status.reportCycle")
    }
}

/// The desired and reported values of one property. The cloud sets the desired value in
/// `spec.properties[].desired`; the edge reports what the device did here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    /// The property these values belong to; it should be in the device model.
    pub property_name: String,
    /// The value the device reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<TwinProperty>,
    /// The desired value the mapper has received (written only by the device controller): shows
    /// whether the mapper is up to date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_desired: Option<TwinProperty>,
    /// edgetwin: where the actuation of the current desired value stands, or that the property
    /// cannot be read (`ReadFailed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<PropertyCondition>,
    /// In a status patch: remove the stored `condition` (a read works again on a property that
    /// has no actuation state). Never stored or serialised: only the patch carries it.
    #[serde(skip)]
    #[schemars(skip)]
    pub clear_condition: bool,
}

impl Twin {
    /// An empty twin for a property.
    pub fn new(property_name: impl Into<String>) -> Self {
        Self {
            property_name: property_name.into(),
            ..Self::default()
        }
    }
}

/// The actuation state of one property's desired value: one current state per property (not a
/// list), moving Pending → Applied → Verified, or to Failed; or ReadFailed while the property
/// cannot be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PropertyCondition {
    /// The state.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// A machine-readable CamelCase reason for the state, e.g. `WriteTimeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the property entered this state (RFC 3339).
    #[schemars(schema_with = "date_time")]
    pub last_transition_time: jiff::Timestamp,
    /// The `metadata.generation` of the spec whose desired value this state is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl PropertyCondition {
    /// A condition of the given type that started at `at`, with no reason or message.
    pub fn new(kind: ConditionType, at: jiff::Timestamp) -> Self {
        Self {
            kind,
            reason: None,
            message: None,
            last_transition_time: at,
            observed_generation: None,
        }
    }
}

/// The actuation states of a desired value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionType {
    /// The desired value is known but not yet written to the device.
    Pending,
    /// The mapper wrote the desired value to the device.
    Applied,
    /// The device reported back the desired value (read back after the write).
    Verified,
    /// The write failed or the device reported a different value; see `reason` and `message`.
    Failed,
    /// The property cannot be read (the device refuses or does not answer); `message` says why.
    /// Cleared by the next good read.
    ReadFailed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_mut_adds_a_missing_twin_once() {
        let mut status = DeviceStatus::default();
        status.twin_mut("red").reported = Some(TwinProperty::new("ON"));
        status.twin_mut("red").observed_desired = Some(TwinProperty::new("ON"));
        assert_eq!(status.twins.len(), 1);
        let red = status.twin("red").expect("twin exists");
        assert_eq!(red.reported.as_ref().map(|r| r.value.as_str()), Some("ON"));
        assert!(status.twin("green").is_none());
    }

    #[test]
    fn condition_serializes_with_kubernetes_field_names() {
        let mut condition = PropertyCondition::new(
            ConditionType::Failed,
            "2025-01-02T03:04:05Z".parse().expect("timestamp"),
        );
        condition.reason = Some("WriteTimeout".into());
        condition.observed_generation = Some(7);
        let json = serde_json::to_value(&condition).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Failed",
                "reason": "WriteTimeout",
                "lastTransitionTime": "2025-01-02T03:04:05Z",
                "observedGeneration": 7,
            })
        );
        let back: PropertyCondition = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, condition);
    }
}
