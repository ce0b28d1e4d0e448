//! Status writes coalesced per device (pure): patches for a device fold into one (latest field
//! wins, see [`status::merge`]) until the next flush, so telemetry costs at most one registry
//! write per device per flush interval however often the edge reports.
//!
//! A patch that settles a desired change (a property turns Verified or Failed) is *due*: its
//! device's pending patch is written at once ([`Coalescer::drain_due`]) instead of at the next
//! interval, so the time from `ctl set` to a verified status carries no coalescing delay. Such
//! patches come at most once per desired change, so the guarantee for telemetry stands.

use std::collections::{BTreeMap, BTreeSet};

use crate::cloud::registry::status;
use edgetwin_model::devices::{ConditionType, DeviceStatus};
use edgetwin_model::wire::cloud_edge::DeviceRef;

/// The pending status patches, one per device.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: BTreeMap<DeviceRef, DeviceStatus>,
    /// Devices whose pending patch settles a desired change: written without waiting.
    due: BTreeSet<DeviceRef>,
    folded: u64,
}

/// Whether `patch` settles a desired change: some property turns Verified or Failed.
pub fn settles_desired(patch: &DeviceStatus) -> bool {
    patch.twins.iter().any(|twin| {
        twin.condition
            .as_ref()
            .is_some_and(|c| matches!(c.kind, ConditionType::Verified | ConditionType::Failed))
    })
}

impl Coalescer {
    /// Adds a patch for `device`, folding it into the pending one. Returns whether the device's
    /// patch is now due (see [`settles_desired`]): the caller should write it without waiting.
    pub fn add(&mut self, device: DeviceRef, patch: &DeviceStatus) -> bool {
        let due = settles_desired(patch);
        if due {
            self.due.insert(device.clone());
        }
        match self.pending.get_mut(&device) {
            Some(pending) => {
                status::merge(pending, patch);
                self.folded += 1;
            }
            None => {
                self.pending.insert(device, patch.clone());
            }
        }
        due
    }

    /// Puts back a patch whose write failed, under any newer pending one (the newer fields win).
    pub fn retry(&mut self, device: DeviceRef, mut patch: DeviceStatus) {
        if let Some(newer) = self.pending.remove(&device) {
            status::merge(&mut patch, &newer);
        }
        self.pending.insert(device, patch);
    }

    /// Drops what is pending for a deleted device.
    pub fn forget(&mut self, device: &DeviceRef) {
        self.pending.remove(device);
        self.due.remove(device);
    }

    /// Takes every pending patch (one per device), for one flush.
    pub fn drain(&mut self) -> Vec<(DeviceRef, DeviceStatus)> {
        self.due.clear();
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    /// Takes the pending patches that are due (each with whatever telemetry folded into it);
    /// the others wait for the next [`Coalescer::drain`].
    pub fn drain_due(&mut self) -> Vec<(DeviceRef, DeviceStatus)> {
        std::mem::take(&mut self.due)
            .into_iter()
            .filter_map(|device| {
                let patch = self.pending.remove(&device)?;
                Some((device, patch))
            })
            .collect()
    }

    /// How many devices have a pending patch.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// How many patches were folded into a pending one (writes saved) since the start.
    pub fn folded(&self) -> u64 {
        self.folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::devices::{Twin, TwinProperty};

    fn reported(property: &str, value: &str) -> DeviceStatus {
        DeviceStatus {
            twins: vec![Twin {
                reported: Some(TwinProperty::new(value)),
                ..Twin::new(property)
            }],
            ..DeviceStatus::default()
        }
    }

    fn settled(property: &str, value: &str, kind: ConditionType) -> DeviceStatus {
        let mut patch = reported(property, value);
        patch.twins[0].condition = Some(edgetwin_model::devices::PropertyCondition::new(
            kind,
            jiff::Timestamp::UNIX_EPOCH,
        ));
        patch
    }

    fn key(name: &str) -> DeviceRef {
        DeviceRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn many_reports_make_one_write_per_device_with_the_latest_values() {
        let mut coalescer = Coalescer::default();
        for i in 0..100 {
            coalescer.add(key("a"), &reported("temp", &i.to_string()));
        }
        coalescer.add(key("a"), &reported("hum", "40"));
        coalescer.add(key("b"), &reported("temp", "1"));
        let writes = coalescer.drain();
        assert_eq!(writes.len(), 2);
        let (device, patch) = &writes[0];
        assert_eq!(device, &key("a"));
        let value = |p: &str| {
            patch
                .twin(p)
                .and_then(|t| t.reported.as_ref())
                .map(|v| v.value.clone())
        };
        assert_eq!(value("temp").as_deref(), Some("99"));
        assert_eq!(value("hum").as_deref(), Some("40"));
        assert_eq!(coalescer.folded(), 100);
        assert!(coalescer.is_empty());
    }

    #[test]
    fn a_settled_desired_change_is_due_at_once_with_what_folded_before_it() {
        let mut coalescer = Coalescer::default();
        assert!(!coalescer.add(key("a"), &reported("temp", "20")));
        assert!(!coalescer.add(key("a"), &settled("red", "OFF", ConditionType::Pending)));
        assert!(!coalescer.add(key("b"), &reported("temp", "1")));
        assert!(
            coalescer.drain_due().is_empty(),
            "telemetry and Pending wait"
        );
        assert!(coalescer.add(key("a"), &settled("red", "ON", ConditionType::Verified)));
        let due = coalescer.drain_due();
        assert_eq!(due.len(), 1, "only the settled device is written now");
        let (device, patch) = &due[0];
        assert_eq!(device, &key("a"));
        let condition = patch.twin("red").and_then(|t| t.condition.as_ref());
        assert_eq!(condition.map(|c| c.kind), Some(ConditionType::Verified));
        assert!(patch.twin("temp").is_some(), "folded telemetry goes along");
        assert!(coalescer.drain_due().is_empty());
        assert!(coalescer.add(key("b"), &settled("red", "ON", ConditionType::Failed)));
        coalescer.forget(&key("b"));
        assert!(
            coalescer.drain_due().is_empty(),
            "a deleted device is not written"
        );
        assert!(coalescer.add(key("c"), &settled("red", "ON", ConditionType::Verified)));
        assert_eq!(coalescer.drain().len(), 1);
        assert!(
            coalescer.drain_due().is_empty(),
            "an interval flush took it"
        );
    }

    #[test]
    fn a_retried_write_does_not_overwrite_newer_values() {
        let mut coalescer = Coalescer::default();
        coalescer.add(key("a"), &reported("temp", "2"));
        coalescer.retry(key("a"), reported("temp", "1"));
        let writes = coalescer.drain();
        let value = writes[0].1.twin("temp").and_then(|t| t.reported.clone());
        assert_eq!(value.map(|v| v.value).as_deref(), Some("2"));
        coalescer.add(key("a"), &reported("temp", "3"));
        coalescer.forget(&key("a"));
        assert_eq!(coalescer.len(), 0);
    }
}
