//! The twin state in KubeEdge's wire shapes (`MsgTwin`, `TwinVersion`).

use crate::wire::payload::{self as wire, Metadata, MsgTwin, TYPE_DELETED, TwinValue};

use super::state::{Half, PropertyTwin, TwinHalf, TwinVersion};

impl TwinVersion {
    /// The version a wire message carries; `None` if a counter is negative.
    pub fn from_wire(version: wire::TwinVersion) -> Option<Self> {
        Some(TwinVersion {
            cloud: u64::try_from(version.cloud).ok()?,
            edge: u64::try_from(version.edge).ok()?,
        })
    }

    /// The wire form. Counters above `i64::MAX` (unreachable by counting) are written as
    /// `i64::MAX`.
    pub fn to_wire(self) -> wire::TwinVersion {
        wire::TwinVersion {
            cloud: i64::try_from(self.cloud).unwrap_or(i64::MAX),
            edge: i64::try_from(self.edge).unwrap_or(i64::MAX),
        }
    }
}

impl TwinHalf {
    /// The wire form: the value with its timestamp.
    pub fn to_wire(&self) -> TwinValue {
        TwinValue::at(self.value.clone(), self.timestamp_ms)
    }
}

impl PropertyTwin {
    /// The property as apps and mappers see it (`get/result`, document, delta, membership): the
    /// halves that hold a value, `optional` and `metadata.type`, no versions. `None` for a
    /// tombstone.
    pub fn snapshot(&self) -> Option<MsgTwin> {
        (!self.deleted).then(|| self.to_wire(&self.present_halves(), &[]))
    }

    /// The halves that hold a value.
    pub(super) fn present_halves(&self) -> Vec<Half> {
        Half::BOTH
            .into_iter()
            .filter(|half| self.half(*half).is_some())
            .collect()
    }

    /// The wire form with the values of `values` (a half without a value is written as `{}`,
    /// as KubeEdge writes a cleared half) and the versions of `versions`. `metadata.type` is
    /// `deleted` for a tombstone.
    pub(super) fn to_wire(&self, values: &[Half], versions: &[Half]) -> MsgTwin {
        let value = |half: Half| {
            values
                .contains(&half)
                .then(|| self.half(half).map(TwinHalf::to_wire).unwrap_or_default())
        };
        let version = |half: Half| {
            versions
                .contains(&half)
                .then(|| self.version(half).to_wire())
        };
        let type_name = if self.deleted {
            TYPE_DELETED
        } else {
            self.value_type.twin_type_name()
        };
        MsgTwin {
            expected: value(Half::Desired),
            actual: value(Half::Reported),
            optional: Some(self.optional),
            metadata: Some(Metadata::of_type(type_name)),
            expected_version: version(Half::Desired),
            actual_version: version(Half::Reported),
            write_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PropertyType;

    #[test]
    fn negative_wire_versions_are_refused() {
        assert_eq!(
            TwinVersion::from_wire(wire::TwinVersion { cloud: 3, edge: 1 }),
            Some(TwinVersion::new(3, 1))
        );
        assert_eq!(
            TwinVersion::from_wire(wire::TwinVersion { cloud: -1, edge: 0 }),
            None
        );
        assert_eq!(
            TwinVersion::new(u64::MAX, 2).to_wire(),
            wire::TwinVersion {
                cloud: i64::MAX,
                edge: 2
            }
        );
    }

    #[test]
    fn snapshots_show_present_halves_without_versions_and_hide_tombstones() {
        let mut twin = PropertyTwin::new(PropertyType::Int, true);
        twin.reported = Some(TwinHalf {
            value: "5".into(),
            timestamp_ms: 9,
        });
        twin.reported_version = TwinVersion::new(0, 1);
        let json = serde_json::to_string(&twin.snapshot()).expect("serialises");
        assert_eq!(
            json,
            r#"{"actual":{"value":"5","metadata":{"timestamp":9}},"optional":true,"metadata":{"type":"int"}}"#
        );
        twin.deleted = true;
        assert_eq!(twin.snapshot(), None);
    }

    #[test]
    fn a_cleared_half_is_written_as_an_empty_object() {
        let mut twin = PropertyTwin::new(PropertyType::Int, true);
        twin.deleted = true;
        twin.reported_version = TwinVersion::new(0, 2);
        let json = serde_json::to_string(&twin.to_wire(&[Half::Reported], &Half::BOTH))
            .expect("serialises");
        assert_eq!(
            json,
            r#"{"actual":{},"optional":true,"metadata":{"type":"deleted"},"expected_version":{"cloud":0,"edge":0},"actual_version":{"cloud":0,"edge":2}}"#
        );
    }
}
