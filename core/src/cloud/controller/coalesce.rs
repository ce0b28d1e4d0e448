//! Status writes coalesced per device (pure): patches for a device fold into one (latest field
//! wins, see [`status::merge`]) until the next flush, so telemetry costs at most one registry
//! write per device per flush interval however often the edge reports.

use std::collections::BTreeMap;

use crate::cloud::registry::status;
use crate::cloudlink::DeviceRef;
use crate::model::DeviceStatus;

/// The pending status patches, one per device.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: BTreeMap<DeviceRef, DeviceStatus>,
    folded: u64,
}

impl Coalescer {
    /// Adds a patch for `device`, folding it into the pending one.
    pub fn add(&mut self, device: DeviceRef, patch: &DeviceStatus) {
        match self.pending.get_mut(&device) {
            Some(pending) => {
                status::merge(pending, patch);
                self.folded += 1;
            }
            None => {
                self.pending.insert(device, patch.clone());
            }
        }
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
    }

    /// Takes every pending patch (one per device), for one flush.
    pub fn drain(&mut self) -> Vec<(DeviceRef, DeviceStatus)> {
        std::mem::take(&mut self.pending).into_iter().collect()
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
    use crate::model::{Twin, TwinProperty};

    fn reported(property: &str, value: &str) -> DeviceStatus {
        DeviceStatus {
            twins: vec![Twin {
                reported: Some(TwinProperty::new(value)),
                ..Twin::new(property)
            }],
            ..DeviceStatus::default()
        }
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
