//! The persisted twin state of one device: per property a desired and a reported half, each with
//! its own `{cloud, edge}` version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::value::PropertyType;

/// The twin of one device: its properties by name.
///
/// Deleted properties stay in the map as tombstones ([`PropertyTwin::deleted`]) so that their
/// versions keep rejecting stale updates that would otherwise bring them back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceTwin {
    /// Property name → twin.
    pub properties: BTreeMap<String, PropertyTwin>,
}

/// The twin of one property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyTwin {
    /// The desired value (KubeEdge's `expected`), if any.
    pub desired: Option<TwinHalf>,
    /// The reported value (KubeEdge's `actual`), if any.
    pub reported: Option<TwinHalf>,
    /// Version of the desired half.
    pub desired_version: TwinVersion,
    /// Version of the reported half.
    pub reported_version: TwinVersion,
    /// Whether the edge may delete the property (a `null` from the mapper).
    pub optional: bool,
    /// The value type, written as `metadata.type` on the wire.
    pub value_type: PropertyType,
    /// A tombstone: the property was deleted; both halves are empty, the versions are kept.
    pub deleted: bool,
}

/// One half (desired or reported) of a property: a value and when it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinHalf {
    /// The value as the wire carries it (a string of the property's type).
    pub value: String,
    /// When the edge accepted the value, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// The version of one twin half: how many writes each side has made, as KubeEdge counts them.
///
/// `cloud` is the cloud's revision of the half (the cloud chooses it, e.g. the Device's
/// resourceVersion); `edge` counts the edge's own writes. Neither ever goes backwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TwinVersion {
    /// The cloud's revision.
    pub cloud: u64,
    /// The number of edge writes.
    pub edge: u64,
}

/// Which half of a property twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Half {
    /// The desired value (`expected` on the wire).
    Desired,
    /// The reported value (`actual` on the wire).
    Reported,
}

/// The versions of one property, as the cloud's reconcile compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertySummary {
    /// Version of the desired half.
    pub desired_version: TwinVersion,
    /// Version of the reported half.
    pub reported_version: TwinVersion,
    /// Whether the property is a tombstone.
    pub deleted: bool,
}

impl DeviceTwin {
    /// An empty twin.
    pub fn new() -> Self {
        DeviceTwin::default()
    }

    /// A live (not deleted) property.
    pub fn property(&self, name: &str) -> Option<&PropertyTwin> {
        self.properties.get(name).filter(|twin| !twin.deleted)
    }

    /// The live properties, in name order.
    pub fn live_properties(&self) -> impl Iterator<Item = (&String, &PropertyTwin)> {
        self.properties.iter().filter(|(_, twin)| !twin.deleted)
    }

    /// The versions of every property, tombstones included.
    pub fn summary(&self) -> BTreeMap<String, PropertySummary> {
        self.properties
            .iter()
            .map(|(name, twin)| {
                let summary = PropertySummary {
                    desired_version: twin.desired_version,
                    reported_version: twin.reported_version,
                    deleted: twin.deleted,
                };
                (name.clone(), summary)
            })
            .collect()
    }

    /// The properties whose desired value is still waiting to be reported, with that value.
    pub fn pending_desired(&self) -> BTreeMap<&str, &str> {
        self.live_properties()
            .filter_map(|(name, twin)| twin.pending_desired().map(|v| (name.as_str(), v)))
            .collect()
    }
}

impl PropertyTwin {
    /// A live property with no values and zero versions.
    pub fn new(value_type: PropertyType, optional: bool) -> Self {
        PropertyTwin {
            desired: None,
            reported: None,
            desired_version: TwinVersion::default(),
            reported_version: TwinVersion::default(),
            optional,
            value_type,
            deleted: false,
        }
    }

    /// One half.
    pub fn half(&self, half: Half) -> Option<&TwinHalf> {
        match half {
            Half::Desired => self.desired.as_ref(),
            Half::Reported => self.reported.as_ref(),
        }
    }

    /// One half, for changes.
    pub fn half_mut(&mut self, half: Half) -> &mut Option<TwinHalf> {
        match half {
            Half::Desired => &mut self.desired,
            Half::Reported => &mut self.reported,
        }
    }

    /// The version of one half.
    pub fn version(&self, half: Half) -> TwinVersion {
        match half {
            Half::Desired => self.desired_version,
            Half::Reported => self.reported_version,
        }
    }

    /// The version of one half, for changes.
    pub fn version_mut(&mut self, half: Half) -> &mut TwinVersion {
        match half {
            Half::Desired => &mut self.desired_version,
            Half::Reported => &mut self.reported_version,
        }
    }

    /// The desired value when the device has not reported it yet: a non-empty desired value that
    /// differs from the reported one (compared by type, so `1.0` equals `1` for a float).
    ///
    /// An empty desired value means "no desired value", as in KubeEdge.
    pub fn pending_desired(&self) -> Option<&str> {
        if self.deleted {
            return None;
        }
        let desired = self.desired.as_ref().map(|d| d.value.as_str())?;
        if desired.is_empty() {
            return None;
        }
        match &self.reported {
            Some(reported) if same_value(self.value_type, desired, &reported.value) => None,
            _ => Some(desired),
        }
    }
}

impl TwinVersion {
    /// A version from its two counters.
    pub fn new(cloud: u64, edge: u64) -> Self {
        TwinVersion { cloud, edge }
    }

    /// Whether neither counter of `self` is below the matching counter of `other`.
    pub fn dominates(self, other: TwinVersion) -> bool {
        self.cloud >= other.cloud && self.edge >= other.edge
    }
}

impl Half {
    /// Both halves, desired first.
    pub const BOTH: [Half; 2] = [Half::Desired, Half::Reported];

    /// The KubeEdge wire name of the half (`expected` / `actual`).
    pub fn wire_name(self) -> &'static str {
        match self {
            Half::Desired => "expected",
            Half::Reported => "actual",
        }
    }
}

/// Whether two wire values are the same value of type `value_type`: numbers and booleans compare
/// by value (`"1.0"` equals `"1"` for a float), everything else byte for byte.
pub fn same_value(value_type: PropertyType, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match value_type {
        PropertyType::Int | PropertyType::Float | PropertyType::Double | PropertyType::Boolean => {
            matches!((value_type.parse(a), value_type.parse(b)), (Ok(x), Ok(y)) if x == y)
        }
        PropertyType::String | PropertyType::Bytes | PropertyType::Stream => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_booleans_compare_by_value_strings_by_bytes() {
        assert!(same_value(PropertyType::Float, "1.0", "1"));
        assert!(same_value(PropertyType::Int, "007", "7"));
        assert!(same_value(PropertyType::Boolean, "TRUE", "true"));
        assert!(!same_value(PropertyType::Int, "7", "8"));
        assert!(!same_value(PropertyType::Int, "x", "y"));
        assert!(!same_value(PropertyType::String, "ON", "on"));
        assert!(same_value(PropertyType::String, "ON", "ON"));
    }

    #[test]
    fn pending_desired_needs_a_non_empty_desired_value_that_differs_from_the_report() {
        let mut twin = PropertyTwin::new(PropertyType::Float, false);
        assert_eq!(twin.pending_desired(), None);
        twin.desired = Some(TwinHalf {
            value: "2.5".into(),
            timestamp_ms: 1,
        });
        assert_eq!(twin.pending_desired(), Some("2.5"));
        twin.reported = Some(TwinHalf {
            value: "2.50".into(),
            timestamp_ms: 2,
        });
        assert_eq!(twin.pending_desired(), None);
        twin.desired = Some(TwinHalf {
            value: String::new(),
            timestamp_ms: 3,
        });
        assert_eq!(twin.pending_desired(), None);
    }

    #[test]
    fn summary_lists_tombstones_but_property_hides_them() {
        let mut device = DeviceTwin::new();
        let mut gone = PropertyTwin::new(PropertyType::Int, true);
        gone.deleted = true;
        gone.reported_version = TwinVersion::new(0, 2);
        device.properties.insert("gone".into(), gone);
        device
            .properties
            .insert("here".into(), PropertyTwin::new(PropertyType::Int, false));
        assert!(device.property("gone").is_none());
        assert!(device.property("here").is_some());
        let summary = device.summary();
        assert_eq!(summary.len(), 2);
        assert!(summary["gone"].deleted);
        assert_eq!(summary["gone"].reported_version, TwinVersion::new(0, 2));
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut device = DeviceTwin::new();
        let mut twin = PropertyTwin::new(PropertyType::String, false);
        twin.desired = Some(TwinHalf {
            value: "ON".into(),
            timestamp_ms: 5,
        });
        twin.desired_version = TwinVersion::new(7, 1);
        device.properties.insert("red".into(), twin);
        let json = serde_json::to_string(&device).expect("serialises");
        let back: DeviceTwin = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, device);
    }
}
