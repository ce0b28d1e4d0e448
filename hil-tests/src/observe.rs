//! What the registry says about the rig's Device (its JSON as `edgetwin ctl get -o json` shows
//! it): reported values, conditions, and the times the status records.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

/// The twin of `property` in a Device's status (`Null` when there is none yet).
pub fn twin<'a>(device: &'a Value, property: &str) -> &'a Value {
    device["status"]["twins"]
        .as_array()
        .and_then(|twins| twins.iter().find(|t| t["propertyName"] == property))
        .unwrap_or(&Value::Null)
}

/// The value `property` reports.
pub fn reported<'a>(device: &'a Value, property: &str) -> Option<&'a str> {
    twin(device, property)["reported"]["value"].as_str()
}

/// The type of `property`'s condition (`Pending`, `Applied`, `Verified`, `Failed`).
pub fn condition<'a>(device: &'a Value, property: &str) -> Option<&'a str> {
    twin(device, property)["condition"]["type"].as_str()
}

/// The message of `property`'s condition.
pub fn condition_message<'a>(device: &'a Value, property: &str) -> Option<&'a str> {
    twin(device, property)["condition"]["message"].as_str()
}

/// The desired value of `property` in the Device's spec.
pub fn desired<'a>(device: &'a Value, property: &str) -> Option<&'a str> {
    device["spec"]["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == property)?["desired"]["value"]
        .as_str()
}

/// The desired value the edge agent says it holds for `property` (`observedDesired`).
pub fn observed_desired<'a>(device: &'a Value, property: &str) -> Option<&'a str> {
    twin(device, property)["observedDesired"]["value"].as_str()
}

/// Whether `property` is desired `value`, reports it, and is Verified. (The condition is
/// written with the reported value that settles it, so it cannot be a stale one here; its
/// `observedGeneration` only moves when its type changes, so it is not compared.)
pub fn verified(device: &Value, property: &str, value: &str) -> bool {
    let twin = twin(device, property);
    desired(device, property) == Some(value)
        && twin["reported"]["value"] == value
        && twin["condition"]["type"] == "Verified"
}

/// When `property`'s condition last changed type (`lastTransitionTime`, written by the
/// controller).
pub fn condition_since(device: &Value, property: &str) -> Option<Timestamp> {
    twin(device, property)["condition"]["lastTransitionTime"]
        .as_str()?
        .parse()
        .ok()
}

/// When the edge recorded `property`'s reported value (its metadata timestamp, ms since the
/// epoch).
pub fn reported_at(device: &Value, property: &str) -> Option<Timestamp> {
    let ms: i64 = twin(device, property)["reported"]["metadata"]["timestamp"]
        .as_str()?
        .parse()
        .ok()?;
    Timestamp::from_millisecond(ms).ok()
}

/// `later - earlier`, zero when `later` is not later (clocks at ms resolution).
pub fn elapsed(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or_default()
}

/// The desired → reported latencies of one change, from the Device's own records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Until the jumpered input's new level was recorded at the edge.
    pub input: Duration,
    /// Until the lamp's condition turned Verified in the controller.
    pub verified: Duration,
}

/// Latencies of a set of changes, printed as one table by the scenario that measured them.
#[derive(Debug, Default)]
pub struct Latencies {
    rows: Vec<(String, Latency)>,
}

impl Latencies {
    /// Records the change `what`.
    pub fn push(&mut self, what: impl Into<String>, latency: Latency) {
        self.rows.push((what.into(), latency));
    }

    /// The largest of every figure.
    pub fn max(&self) -> Duration {
        self.rows
            .iter()
            .map(|(_, l)| l.input.max(l.verified))
            .max()
            .unwrap_or_default()
    }

    /// The rows as text: one line per change.
    pub fn render(&self, rig: &str) -> String {
        let mut out = format!(
            "desired set → input recorded / lamp Verified ({rig}; timestamps of the edge and the controller, ms resolution)\n"
        );
        for (what, latency) in &self.rows {
            out.push_str(&format!(
                "  {what:<14} input {:>6.1} ms   verified {:>6.1} ms\n",
                latency.input.as_secs_f64() * 1e3,
                latency.verified.as_secs_f64() * 1e3
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn device() -> Value {
        json!({
            "metadata": {"name": "hil-light", "generation": 3},
            "spec": {"properties": [
                {"name": "red", "desired": {"value": "ON"}},
                {"name": "red_in"}
            ]},
            "status": {"twins": [
                {"propertyName": "red",
                 "reported": {"value": "ON", "metadata": {"timestamp": "1764370001234"}},
                 "observedDesired": {"value": "ON"},
                 "condition": {"type": "Verified", "observedGeneration": 3,
                               "lastTransitionTime": "2025-11-28T22:46:41.262Z"}},
                {"propertyName": "red_in",
                 "reported": {"value": "ON", "metadata": {"timestamp": "1764370001250"}}}
            ]}
        })
    }

    #[test]
    fn a_property_is_verified_when_desired_reported_and_condition_agree() {
        let mut device = device();
        assert!(verified(&device, "red", "ON"));
        assert!(!verified(&device, "red", "OFF"));
        assert_eq!(reported(&device, "red_in"), Some("ON"));
        assert_eq!(condition(&device, "red_in"), None);
        assert_eq!(observed_desired(&device, "red"), Some("ON"));
        device["spec"]["properties"][0]["desired"]["value"] = json!("OFF");
        assert!(!verified(&device, "red", "ON"), "desired moved on");
    }

    #[test]
    fn the_status_times_give_the_latencies() {
        let device = device();
        let set: Timestamp = "2025-11-28T22:46:41.230Z".parse().expect("time");
        let input = reported_at(&device, "red_in").expect("input time");
        let verified = condition_since(&device, "red").expect("condition time");
        assert_eq!(input.as_millisecond(), 1_764_370_001_250);
        assert_eq!(elapsed(set, verified), Duration::from_millis(32));
        assert_eq!(elapsed(verified, set), Duration::ZERO);
        let mut all = Latencies::default();
        all.push(
            "red ON",
            Latency {
                input: Duration::from_millis(20),
                verified: Duration::from_millis(32),
            },
        );
        assert_eq!(all.max(), Duration::from_millis(32));
        assert!(all.render("sim").contains("red ON"));
    }
}
