//! From what the edge reports to the Device's status (pure): `twins[].reported`,
//! `twins[].observedDesired`, `state`, `lastOnlineTime`, and each property's actuation condition.
//!
//! A property's condition follows from three values: the desired value of the spec, the desired
//! value the edge holds (`observedDesired`: the agent accepted it and told the mapper) and the
//! value the device reports:
//!
//! | device reports the desired value | edge holds it | condition |
//! |---|---|---|
//! | yes | — | Verified |
//! | no | yes | Applied |
//! | no | no | Pending |
//!
//! A `write_error` from the edge (the device refused a value, an edgetwin extension of the twin)
//! whose value is the current desired value makes the property Failed, with the device's reason
//! as the message, until the device reports the desired value (Verified) or a new desired value
//! arrives (Pending).
//!
//! The edge's twin engine syncs only what the edge *wrote* (and refusals); the agent adds an echo
//! of each desired value it accepts from the cloud (the whole property, see
//! `edge::service::to_cloud`), whose desired half is `observedDesired`. The echo is best effort,
//! so a property may go from Pending straight to Verified: a read-back equal to the desired value
//! is Verified either way.
//!
//! Values compare by type (`1.0` equals `1` for a float). A condition is written only when its
//! type changes; its `lastTransitionTime` is the time of that change.

use std::collections::BTreeMap;

use edgetwin_model::devices::{
    ConditionType, Device, DeviceStatus, PropertyCondition, Twin, TwinProperty,
};
use edgetwin_model::twin::{same_value, type_from_name};
use edgetwin_model::value::PropertyType;
use edgetwin_model::wire::cloud_edge::{DeviceRef, TwinContent};
use edgetwin_model::wire::payload::DeviceMsg;

use super::desired::{changed_desired, desired_values};

/// What the controller knows of one property.
#[derive(Debug, Clone, Default, PartialEq)]
struct PropertyView {
    desired: Option<String>,
    observed: Option<String>,
    reported: Option<String>,
    value_type: Option<PropertyType>,
    condition: Option<ConditionType>,
    /// Why the device refused the current desired value, if it did.
    refused: Option<String>,
}

impl PropertyView {
    fn same(&self, a: &str, b: &str) -> bool {
        same_value(self.value_type.unwrap_or(PropertyType::String), a, b)
    }

    /// The condition the three values give (see the module docs); none without a desired value.
    fn expected_condition(&self) -> Option<ConditionType> {
        let desired = self.desired.as_deref()?;
        let holds = |v: &Option<String>| v.as_deref().is_some_and(|v| self.same(v, desired));
        Some(if holds(&self.reported) {
            ConditionType::Verified
        } else if self.refused.is_some() {
            ConditionType::Failed
        } else if holds(&self.observed) {
            ConditionType::Applied
        } else {
            ConditionType::Pending
        })
    }
}

#[derive(Debug, Default)]
struct DeviceView {
    generation: Option<i64>,
    properties: BTreeMap<String, PropertyView>,
}

/// The controller's view of every device's actuation state.
#[derive(Debug, Default)]
pub struct StatusTracker {
    devices: BTreeMap<DeviceRef, DeviceView>,
}

impl StatusTracker {
    /// Takes a Device from the registry: the first time, the view starts from its stored status;
    /// afterwards only the spec's desired values are taken (the stored status lags what the
    /// controller already knows). Returns the condition changes to write, if any.
    pub fn observe_device(
        &mut self,
        device: &Device,
        now: jiff::Timestamp,
    ) -> Option<DeviceStatus> {
        let key = DeviceRef::of(device);
        let view = self.devices.entry(key).or_insert_with(|| seed(device));
        view.generation = device.generation();
        let new = desired_values(device);
        let old: BTreeMap<String, String> = view
            .properties
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), p.desired.clone()?)))
            .collect();
        for (name, p) in view.properties.iter_mut() {
            if !new.contains_key(name) {
                p.desired = None;
            }
        }
        for (name, value) in changed_desired(&old, &new) {
            let p = view.properties.entry(name).or_default();
            p.desired = Some(value);
            p.refused = None;
        }
        let twins: Vec<Twin> = view
            .properties
            .iter_mut()
            .filter_map(|(name, p)| transition(name, p, view.generation, now))
            .collect();
        patch(twins)
    }

    /// Applies a twin sync from the edge; returns the status patch it causes.
    pub fn edge_twin(
        &mut self,
        device: &DeviceRef,
        content: &TwinContent,
        now: jiff::Timestamp,
    ) -> Option<DeviceStatus> {
        let view = self.devices.entry(device.clone()).or_default();
        let Some(twin) = &content.twin else {
            // The property was deleted at the edge; the status keeps its last values.
            view.properties.remove(&content.property);
            return None;
        };
        let p = view.properties.entry(content.property.clone()).or_default();
        if let Some(type_name) = twin.metadata.as_ref().and_then(|m| m.value_type.as_deref()) {
            p.value_type = type_from_name(type_name).or(p.value_type);
        }
        let mut out = Twin::new(content.property.clone());
        if let Some(expected) = twin.expected.as_ref().and_then(|v| v.value.clone()) {
            p.observed = Some(expected.clone());
            out.observed_desired = Some(TwinProperty::new(expected));
        }
        if let Some(actual) = &twin.actual
            && let Some(value) = actual.value.clone()
        {
            p.reported = Some(value.clone());
            let mut reported = TwinProperty::new(value);
            if let Some(ts) = actual.metadata.as_ref().and_then(|m| m.timestamp) {
                reported.metadata.insert("timestamp".into(), ts.to_string());
            }
            out.reported = Some(reported);
        }
        if let Some(error) = &twin.write_error
            && p.desired
                .as_deref()
                .is_some_and(|d| p.same(d, &error.value))
        {
            p.refused = Some(error.reason.clone());
        }
        if let Some(changed) = transition(&content.property, p, view.generation, now) {
            out.condition = changed.condition;
        }
        if out.reported.is_none() && out.observed_desired.is_none() && out.condition.is_none() {
            return None;
        }
        patch(vec![out])
    }

    /// A device state change from the edge, as a status patch.
    pub fn edge_state(message: &DeviceMsg) -> DeviceStatus {
        let device = &message.device;
        DeviceStatus {
            state: device.state.clone(),
            last_online_time: device
                .last_online_time
                .clone()
                .or_else(|| device.last_online.clone()),
            ..DeviceStatus::default()
        }
    }

    /// Forgets a deleted device.
    pub fn forget(&mut self, device: &DeviceRef) {
        self.devices.remove(device);
    }

    /// The condition the controller holds for a property (for tests and diagnostics).
    pub fn condition(&self, device: &DeviceRef, property: &str) -> Option<ConditionType> {
        self.devices
            .get(device)?
            .properties
            .get(property)?
            .condition
    }
}

/// A view from a Device's stored status (what a restarted controller starts from).
fn seed(device: &Device) -> DeviceView {
    let mut view = DeviceView::default();
    if let Some(status) = &device.status {
        for twin in &status.twins {
            let p = view
                .properties
                .entry(twin.property_name.clone())
                .or_default();
            p.observed = twin.observed_desired.as_ref().map(|v| v.value.clone());
            p.reported = twin.reported.as_ref().map(|v| v.value.clone());
            p.condition = twin.condition.as_ref().map(|c| c.kind);
            p.refused = twin
                .condition
                .as_ref()
                .filter(|c| c.kind == ConditionType::Failed)
                .map(|c| c.message.clone().unwrap_or_default());
        }
    }
    view
}

/// The twin carrying a condition change of `p`, if its condition changes.
fn transition(
    name: &str,
    p: &mut PropertyView,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Option<Twin> {
    let kind = p.expected_condition()?;
    if p.condition == Some(kind) {
        return None;
    }
    p.condition = Some(kind);
    let mut condition = PropertyCondition::new(kind, now);
    condition.observed_generation = generation;
    if kind == ConditionType::Failed {
        condition.message = p.refused.clone();
    }
    condition.reason = Some(
        match kind {
            ConditionType::Pending => "DesiredValueSent",
            ConditionType::Applied => "AcceptedByEdge",
            ConditionType::Verified => "ReadBackMatches",
            ConditionType::Failed => "ActuationFailed",
        }
        .to_owned(),
    );
    Some(Twin {
        condition: Some(condition),
        ..Twin::new(name)
    })
}

fn patch(twins: Vec<Twin>) -> Option<DeviceStatus> {
    (!twins.is_empty()).then(|| DeviceStatus {
        twins,
        ..DeviceStatus::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::wire::payload::{MsgTwin, TwinValue, WriteError};

    fn device(generation: i64, power: &str) -> Device {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "lamp", "namespace": "default", "generation": generation},
            "spec": {"nodeName": "n1", "properties": [{"name": "power", "desired": {"value": power}}]}
        }))
        .expect("device")
    }

    fn key() -> DeviceRef {
        DeviceRef {
            namespace: "default".into(),
            name: "lamp".into(),
        }
    }

    fn sync(expected: Option<&str>, actual: Option<&str>) -> TwinContent {
        TwinContent {
            property: "power".into(),
            twin: Some(MsgTwin {
                expected: expected.map(|v| TwinValue::at(v, 1)),
                actual: actual.map(|v| TwinValue::at(v, 2)),
                ..MsgTwin::default()
            }),
        }
    }

    fn condition_of(patch: &Option<DeviceStatus>) -> Option<ConditionType> {
        patch
            .as_ref()?
            .twin("power")?
            .condition
            .as_ref()
            .map(|c| c.kind)
    }

    #[test]
    fn pending_applied_verified_then_pending_again_for_a_new_value() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut tracker = StatusTracker::default();
        let patch = tracker.observe_device(&device(1, "on"), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Pending));
        let generation = patch.as_ref().and_then(|p| p.twins[0].condition.clone());
        assert_eq!(generation.and_then(|c| c.observed_generation), Some(1));
        // Our own status write comes back from the watch: nothing new.
        assert_eq!(tracker.observe_device(&device(1, "on"), now), None);

        let patch = tracker.edge_twin(&key(), &sync(Some("on"), None), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Applied));
        let observed = patch
            .as_ref()
            .and_then(|p| p.twins[0].observed_desired.clone());
        assert_eq!(observed.map(|v| v.value).as_deref(), Some("on"));

        let patch = tracker.edge_twin(&key(), &sync(None, Some("off")), now);
        assert_eq!(condition_of(&patch), None, "still Applied: no transition");
        let reported = patch.as_ref().and_then(|p| p.twins[0].reported.clone());
        assert_eq!(reported.map(|v| v.value).as_deref(), Some("off"));

        let patch = tracker.edge_twin(&key(), &sync(None, Some("on")), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Verified));
        assert_eq!(
            tracker.condition(&key(), "power"),
            Some(ConditionType::Verified)
        );

        let patch = tracker.observe_device(&device(2, "off"), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Pending));
    }

    fn refusal(value: &str, actual: &str, reason: &str) -> TwinContent {
        let mut content = sync(None, Some(actual));
        if let Some(twin) = content.twin.as_mut() {
            twin.write_error = Some(WriteError {
                value: value.into(),
                reason: reason.into(),
            });
        }
        content
    }

    #[test]
    fn a_refusal_of_the_desired_value_fails_until_a_new_value_or_a_matching_report() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut tracker = StatusTracker::default();
        tracker.observe_device(&device(1, "on"), now);

        // A refusal of an older desired value says nothing about the current one.
        let patch = tracker.edge_twin(&key(), &refusal("dim", "off", "no dimmer"), now);
        assert_eq!(condition_of(&patch), None);

        let patch = tracker.edge_twin(&key(), &refusal("on", "off", "red is ON"), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Failed));
        let condition = patch
            .as_ref()
            .and_then(|p| p.twins[0].condition.clone())
            .expect("condition");
        assert_eq!(condition.message.as_deref(), Some("red is ON"));
        assert_eq!(condition.reason.as_deref(), Some("ActuationFailed"));
        assert_eq!(condition.observed_generation, Some(1));
        // Later reports of the old value keep it Failed.
        let patch = tracker.edge_twin(&key(), &sync(None, Some("off")), now);
        assert_eq!(condition_of(&patch), None);
        assert_eq!(
            tracker.condition(&key(), "power"),
            Some(ConditionType::Failed)
        );

        // A new desired value is Pending again; its refusal fails it again; a report equal to
        // the desired value verifies it.
        let patch = tracker.observe_device(&device(2, "off"), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Verified));
        let patch = tracker.observe_device(&device(3, "on"), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Pending));
        let patch = tracker.edge_twin(&key(), &refusal("on", "off", "still red"), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Failed));
        let patch = tracker.edge_twin(&key(), &sync(None, Some("on")), now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Verified));
    }

    #[test]
    fn values_compare_by_type() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut tracker = StatusTracker::default();
        tracker.observe_device(&device(1, "1"), now);
        let mut content = sync(Some("1.0"), Some("1.00"));
        if let Some(twin) = content.twin.as_mut() {
            twin.metadata = Some(edgetwin_model::wire::payload::Metadata::of_type("float"));
        }
        let patch = tracker.edge_twin(&key(), &content, now);
        assert_eq!(condition_of(&patch), Some(ConditionType::Verified));
    }

    #[test]
    fn a_restarted_controller_starts_from_the_stored_status() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut stored = device(1, "on");
        stored.status = Some(DeviceStatus {
            twins: vec![Twin {
                observed_desired: Some(TwinProperty::new("on")),
                reported: Some(TwinProperty::new("on")),
                condition: Some(PropertyCondition::new(ConditionType::Verified, now)),
                ..Twin::new("power")
            }],
            ..DeviceStatus::default()
        });
        let mut tracker = StatusTracker::default();
        assert_eq!(tracker.observe_device(&stored, now), None);
        assert_eq!(
            tracker.condition(&key(), "power"),
            Some(ConditionType::Verified)
        );
    }

    #[test]
    fn edge_state_keeps_both_last_online_spellings() {
        let message: DeviceMsg = serde_json::from_value(serde_json::json!({
            "device": {"state": "online", "last_online": "2026-01-01T00:00:00Z"}
        }))
        .expect("msg");
        let patch = StatusTracker::edge_state(&message);
        assert_eq!(patch.state.as_deref(), Some("online"));
        assert_eq!(
            patch.last_online_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }
}
