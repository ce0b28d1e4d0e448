//! The twin state in KubeEdge's wire shapes (`MsgTwin`, `TwinVersion`).

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::wire::payload::{self as wire, Metadata, MsgTwin, TYPE_DELETED, TwinValue};

use super::context::TwinContext;
use super::state::{DeviceTwin, Half, PropertyTwin, TwinHalf, TwinVersion};

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
            read_error: crate::wire::payload::JsonField::Missing,
        }
    }
}

/// `…/twin/update/delta` written straight from the twin: the JSON of [`DeviceTwin::delta`]
/// without building it (the delta carries every property with a desired value, so building it
/// copies the device's values into owned maps on every report that leaves a desired value
/// waiting).
#[derive(Debug, Clone, Copy)]
pub struct DeltaView<'a> {
    twin: &'a DeviceTwin,
    event_id: &'a str,
    now_ms: i64,
}

impl DeviceTwin {
    /// The delta of the current state as a view, `None` when no desired value waits (as
    /// [`DeviceTwin::delta`]).
    pub fn delta_view<'a>(&'a self, ctx: &TwinContext<'a>) -> Option<DeltaView<'a>> {
        self.live_properties()
            .any(|(_, property)| property.pending_desired().is_some())
            .then_some(DeltaView {
                twin: self,
                event_id: ctx.event_id,
                now_ms: ctx.now_ms,
            })
    }
}

impl Serialize for DeltaView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The fields of `wire::DeviceTwinDelta`, in its order.
        let mut delta = serializer.serialize_struct("DeviceTwinDelta", 4)?;
        delta.serialize_field("event_id", self.event_id)?;
        delta.serialize_field("timestamp", &self.now_ms)?;
        delta.serialize_field("twin", &WithDesired(self.twin))?;
        delta.serialize_field("delta", &Waiting(self.twin))?;
        delta.end()
    }
}

/// The `twin` of a delta: every live property with a non-empty desired value, as its snapshot.
struct WithDesired<'a>(&'a DeviceTwin);

impl Serialize for WithDesired<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .delta_properties()
                .map(|(name, property)| (name, SnapshotView::of(property))),
        )
    }
}

/// The `delta` of a delta: property → desired value, for each value still waiting.
struct Waiting<'a>(&'a DeviceTwin);

impl Serialize for Waiting<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .live_properties()
                .filter_map(|(name, property)| Some((name, property.pending_desired()?))),
        )
    }
}

/// [`PropertyTwin::snapshot`] of a live property, borrowed: the same JSON as its `MsgTwin`.
#[derive(serde::Serialize)]
struct SnapshotView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<HalfView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actual: Option<HalfView<'a>>,
    optional: bool,
    metadata: TypeView,
}

impl<'a> SnapshotView<'a> {
    fn of(property: &'a PropertyTwin) -> Self {
        SnapshotView {
            expected: property.desired.as_ref().map(HalfView::of),
            actual: property.reported.as_ref().map(HalfView::of),
            optional: property.optional,
            metadata: TypeView {
                value_type: property.value_type.twin_type_name(),
            },
        }
    }
}

/// [`TwinHalf::to_wire`], borrowed.
#[derive(serde::Serialize)]
struct HalfView<'a> {
    value: &'a str,
    metadata: TimestampView,
}

impl<'a> HalfView<'a> {
    fn of(half: &'a TwinHalf) -> Self {
        HalfView {
            value: &half.value,
            metadata: TimestampView {
                timestamp: half.timestamp_ms,
            },
        }
    }
}

/// `{"timestamp": ms}`: [`Metadata::at`].
#[derive(serde::Serialize)]
struct TimestampView {
    timestamp: i64,
}

/// `{"type": name}`: [`Metadata::of_type`].
#[derive(serde::Serialize)]
struct TypeView {
    #[serde(rename = "type")]
    value_type: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::PropertyType;

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
