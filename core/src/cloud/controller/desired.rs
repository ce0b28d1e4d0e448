//! Desired values of a Device's spec (pure): what the cloud wants each property to be, and which
//! of them a spec change touched.

use std::collections::BTreeMap;

use edgetwin_model::devices::Device;

/// The desired value of every property that has one.
pub fn desired_values(device: &Device) -> BTreeMap<String, String> {
    device
        .spec
        .properties
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.desired.as_ref()?.value.clone())))
        .collect()
}

/// The properties whose desired value `new` sets differently from `old` (or newly), with the new
/// value. A property whose desired value disappeared is not listed: it has nothing to actuate.
pub fn changed_desired(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    new.iter()
        .filter(|(name, value)| old.get(*name) != Some(*value))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_new_or_different_values_are_changes() {
        let old = map(&[("red", "ON"), ("green", "OFF"), ("gone", "1")]);
        let new = map(&[("red", "ON"), ("green", "ON"), ("yellow", "OFF")]);
        assert_eq!(
            changed_desired(&old, &new),
            [
                ("green".to_owned(), "ON".to_owned()),
                ("yellow".to_owned(), "OFF".to_owned())
            ]
        );
        assert!(changed_desired(&new, &new).is_empty());
    }

    #[test]
    fn desired_values_come_from_the_spec() {
        let device: Device = serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "lamp"},
            "spec": {"properties": [
                {"name": "power", "desired": {"value": "on"}},
                {"name": "temperature"}
            ]}
        }))
        .expect("device");
        assert_eq!(desired_values(&device), map(&[("power", "on")]));
    }
}
