//! Operations from the cloud side: versioned twin updates (`twin/cloud_updated`) and deletes.

use crate::wire::payload::{DeviceTwinUpdate, MsgTwin, TYPE_DELETED, TwinVersion as WireVersion};

use super::context::TwinContext;
use super::effects::{Effects, EffectsBuilder};
use super::error::RejectReason;
use super::schema::{ValueCheck, check_name};
use super::state::{DeviceTwin, Half, PropertyTwin, TwinHalf, TwinVersion, same_value};
use super::version::{OnConflict, judge, judge_reading_removal};

impl DeviceTwin {
    /// Applies a versioned update from the cloud (`twin/cloud_updated`, or the twins of a
    /// membership update). Each property, and each half of it, is judged on its own by the
    /// version rule (see the module documentation): an accepted half takes the cloud's value and
    /// version; a refused half keeps the edge's, is listed in [`Effects::rejections`] and is sent
    /// back in the cloud-bound sync so the cloud can adopt it and retry. A property whose
    /// `metadata.type` is `deleted` (or a `null` entry) is deleted.
    ///
    /// No result is published (the cloud is not a mapper); the document and the delta are, as
    /// for any change.
    pub fn cloud_update(&mut self, ctx: &TwinContext<'_>, update: &DeviceTwinUpdate) -> Effects {
        let mut out = EffectsBuilder::new(ctx, update.base(), false);
        for (name, msg) in update.twin.value().into_iter().flatten() {
            if let Err(error) = check_name(name) {
                out.reject(name, None, RejectReason::Invalid(error));
                continue;
            }
            match msg {
                Some(msg) if !is_delete(msg) => self.cloud_write(ctx, name, msg, &mut out),
                delete => self.cloud_delete(ctx, name, delete.as_ref(), &mut out),
            }
        }
        out.finish(self)
    }

    /// One property of a cloud update that sets values.
    fn cloud_write(
        &mut self,
        ctx: &TwinContext<'_>,
        name: &str,
        msg: &MsgTwin,
        out: &mut EffectsBuilder<'_>,
    ) {
        let existing = self.properties.get(name);
        let schema = ctx.property_schema(name);
        let live = existing.filter(|twin| !twin.deleted);
        let mut twin = match self.write_base(ctx, name, msg) {
            Ok(twin) => twin,
            Err(error) => {
                out.reject(name, None, RejectReason::Invalid(error));
                if existing.is_some() {
                    out.sync_whole(name);
                }
                return;
            }
        };
        let check = ValueCheck {
            property: name,
            value_type: twin.value_type,
            schema,
            max_value_bytes: ctx.max_value_bytes,
        };
        let halves = [
            (Half::Desired, &msg.expected, msg.expected_version),
            (Half::Reported, &msg.actual, msg.actual_version),
        ];
        let mut carried_value = false;
        let mut accepted_value = false;
        let mut refused = Vec::new();
        for (half, incoming, version) in halves {
            let Some(value) = incoming.as_ref().and_then(|v| v.value.as_deref()) else {
                continue;
            };
            carried_value = true;
            let on_conflict = match half {
                Half::Desired => ctx.conflict_policy.into(),
                Half::Reported => OnConflict::KeepEdge,
            };
            let verdict = incoming_version(version)
                .and_then(|incoming| judge(twin.version(half), incoming, on_conflict));
            let verdict = verdict.and_then(|accepted| {
                check
                    .check(half, value)
                    .map(|()| accepted)
                    .map_err(RejectReason::Invalid)
            });
            match verdict {
                Ok(accepted) => {
                    accepted_value = true;
                    *twin.version_mut(half) = accepted.version;
                    let unchanged = twin
                        .half(half)
                        .is_some_and(|current| same_value(twin.value_type, &current.value, value));
                    if !unchanged {
                        *twin.half_mut(half) = Some(TwinHalf {
                            value: value.to_owned(),
                            timestamp_ms: ctx.now_ms,
                        });
                    }
                    if accepted.overrode_edge {
                        out.sync_halves(name, &[half]);
                    }
                }
                Err(reason) => {
                    out.reject(name, Some(half), reason);
                    refused.push(half);
                }
            }
        }
        // A property the edge does not have (or deleted) comes (back) only with an accepted
        // value, or when the cloud declares it without values.
        let creates = live.is_some() || accepted_value || (!carried_value && existing.is_none());
        if creates {
            if let Some(optional) = msg.optional {
                twin.optional = optional;
            }
            if existing != Some(&twin) {
                let before = self.properties.insert(name.to_owned(), twin);
                out.changed(name, before);
            }
        }
        // Send the edge's state of every refused half back, so the cloud can adopt it.
        match self.properties.get(name) {
            Some(twin) if twin.deleted => out.sync_whole(name),
            Some(_) if !refused.is_empty() => out.sync_halves(name, &refused),
            _ => {}
        }
    }

    /// One property of a cloud update that deletes it (`metadata.type: "deleted"` or `null`).
    ///
    /// The delete is judged per half that carries a version: the desired half by the device's
    /// conflict policy; the reported half only refuses an older cloud revision, since the edge's
    /// later readings do not outrank the cloud's decision to remove the property. A half without
    /// a version is not judged (KubeEdge's rule for deletes). Any refused half refuses the delete
    /// and the whole property is sent back.
    fn cloud_delete(
        &mut self,
        ctx: &TwinContext<'_>,
        name: &str,
        msg: Option<&MsgTwin>,
        out: &mut EffectsBuilder<'_>,
    ) {
        let versions = [
            (Half::Desired, msg.and_then(|m| m.expected_version)),
            (Half::Reported, msg.and_then(|m| m.actual_version)),
        ];
        let Some(existing) = self.properties.get(name) else {
            // Remember the deletion's versions so that an older update, arriving late, cannot
            // create the property.
            let mut tombstone = PropertyTwin::new(
                ctx.property_schema(name)
                    .map_or(crate::value::PropertyType::String, |s| s.value_type),
                msg.and_then(|m| m.optional).unwrap_or(true),
            );
            tombstone.deleted = true;
            for (half, version) in versions {
                if let Some(version) = version.and_then(TwinVersion::from_wire) {
                    *tombstone.version_mut(half) = version;
                }
            }
            if tombstone.desired_version != TwinVersion::default()
                || tombstone.reported_version != TwinVersion::default()
            {
                self.properties.insert(name.to_owned(), tombstone);
                out.changed(name, None);
            }
            return;
        };
        let mut tombstone = existing.clone();
        let mut overrode_edge = false;
        for (half, version) in versions {
            let Some(version) = version else { continue };
            let current = existing.version(half);
            let verdict = incoming_version(Some(version)).and_then(|incoming| match half {
                Half::Desired => judge(current, incoming, ctx.conflict_policy.into()),
                Half::Reported => judge_reading_removal(current, incoming),
            });
            match verdict {
                Ok(accepted) => {
                    *tombstone.version_mut(half) = accepted.version;
                    overrode_edge |= accepted.overrode_edge && existing.half(half).is_some();
                }
                // Deleting what is already deleted: the outcome stands, only newer versions count.
                Err(_) if existing.deleted => {}
                Err(reason) => {
                    out.reject(name, Some(half), reason);
                    out.sync_whole(name);
                    return;
                }
            }
        }
        tombstone.deleted = true;
        tombstone.desired = None;
        tombstone.reported = None;
        if overrode_edge {
            out.sync_whole(name);
        }
        if *existing != tombstone {
            let before = self.properties.insert(name.to_owned(), tombstone);
            out.changed(name, before);
        }
    }
}

/// Whether a cloud entry deletes its property (`metadata.type: "deleted"`).
pub(super) fn is_delete(msg: &MsgTwin) -> bool {
    msg.metadata
        .as_ref()
        .and_then(|m| m.value_type.as_deref())
        .is_some_and(|t| t.eq_ignore_ascii_case(TYPE_DELETED))
}

/// The version a cloud value must carry.
fn incoming_version(version: Option<WireVersion>) -> Result<TwinVersion, RejectReason> {
    let version = version.ok_or(RejectReason::MissingVersion)?;
    TwinVersion::from_wire(version).ok_or(RejectReason::InvalidVersion)
}

#[cfg(test)]
mod tests {
    use crate::twin::testkit::*;
    use crate::twin::{ConflictPolicy, DeviceSchema, PropertySchema, RejectReason, TwinVersion};
    use crate::value::PropertyType;
    use crate::wire::payload::{Metadata, MsgTwin, TwinValue};

    use super::*;

    fn desired(twin: &DeviceTwin, name: &str) -> Option<String> {
        twin.property(name)
            .and_then(|p| p.desired.as_ref())
            .map(|d| d.value.clone())
    }

    #[test]
    fn a_newer_cloud_revision_sets_the_desired_value_and_version() {
        let mut twin = lamp();
        let effects = twin.cloud_update(&ctx(2_000), &cloud("red", cloud_desired("ON", 11, 0)));
        assert_eq!(desired(&twin, "red").as_deref(), Some("ON"));
        let red = twin.property("red").expect("red");
        assert_eq!(red.desired_version, TwinVersion::new(11, 0));
        assert_eq!(red.desired.as_ref().map(|d| d.timestamp_ms), Some(2_000));
        assert_eq!(effects.result, None, "the cloud gets no result");
        assert_eq!(effects.sync, None, "nothing to tell the cloud");
        assert!(effects.rejections.is_empty());
        assert!(effects.document.is_some());
        assert_eq!(
            delta_of(&effects, "red"),
            Some("ON"),
            "red is not reported as ON"
        );
        assert_eq!(
            effects.delta.and_then(|d| d.event_id).as_deref(),
            Some("engine")
        );
    }

    #[test]
    fn a_stale_cloud_revision_is_refused_and_the_current_state_sent_back() {
        let mut twin = lamp();
        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("ON", 12, 0)));
        let before = twin.clone();
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("OFF", 11, 0)));
        assert_eq!(twin, before);
        assert!(matches!(
            effects.rejections[0].reason,
            RejectReason::StaleCloudVersion { .. }
        ));
        let back = sync_twin(&effects)["red"].as_ref().expect("red sent back");
        assert_eq!(
            back.expected.as_ref().and_then(|v| v.value.as_deref()),
            Some("ON")
        );
        assert_eq!(back.expected_version, Some(wire_version(12, 0)));
        assert_eq!(effects.document, None);
        assert_eq!(effects.delta, None);
    }

    #[test]
    fn the_same_value_at_a_newer_version_only_moves_the_version() {
        let mut twin = lamp();
        let effects = twin.cloud_update(&ctx(2_000), &cloud("red", cloud_desired("OFF", 11, 0)));
        let red = twin.property("red").expect("red");
        assert_eq!(red.desired_version, TwinVersion::new(11, 0));
        assert_eq!(red.desired.as_ref().map(|d| d.timestamp_ms), Some(NOW));
        assert_eq!(effects.changed, ["red".to_owned()].into());
        assert_eq!(effects.document, None);
        assert_eq!(effects.delta, None);

        let replay = twin.cloud_update(&ctx(3_000), &cloud("red", cloud_desired("OFF", 11, 0)));
        assert!(replay.is_empty(), "{replay:?}");
    }

    #[test]
    fn values_need_a_valid_version() {
        let mut twin = lamp();
        let mut unversioned = cloud_desired("ON", 0, 0);
        unversioned.expected_version = None;
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", unversioned));
        assert_eq!(effects.rejections[0].reason, RejectReason::MissingVersion);
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("ON", -1, 0)));
        assert_eq!(effects.rejections[0].reason, RejectReason::InvalidVersion);
        assert_eq!(desired(&twin, "red").as_deref(), Some("OFF"));
    }

    /// The edge writes green's desired value (edge counter 1) while the cloud, not knowing it,
    /// writes revision 11.
    fn crossed(policy: ConflictPolicy) -> (DeviceTwin, crate::twin::Effects) {
        let mut twin = lamp();
        twin.edge_update(&ctx(NOW), &edge_desire(&[("green", "ON")]));
        let context = ctx(2_000).with_policy(policy);
        let effects = twin.cloud_update(&context, &cloud("green", cloud_desired("BLINK", 11, 0)));
        (twin, effects)
    }

    #[test]
    fn cloud_wins_takes_the_cloud_value_keeps_the_edge_counter_and_tells_the_cloud() {
        let (mut twin, effects) = crossed(ConflictPolicy::CloudWins);
        assert_eq!(desired(&twin, "green").as_deref(), Some("BLINK"));
        let green = twin.property("green").expect("green");
        assert_eq!(green.desired_version, TwinVersion::new(11, 1));
        assert!(effects.rejections.is_empty());
        let told = sync_twin(&effects)["green"].as_ref().expect("sync");
        assert_eq!(told.expected_version, Some(wire_version(11, 1)));
        assert_eq!(
            told.expected.as_ref().and_then(|v| v.value.as_deref()),
            Some("BLINK")
        );

        // The cloud adopts {11, 1}; its next revision is no conflict.
        let next = twin.cloud_update(&ctx(NOW), &cloud("green", cloud_desired("OFF", 12, 1)));
        assert!(next.rejections.is_empty() && next.sync.is_none());
        assert_eq!(desired(&twin, "green").as_deref(), Some("OFF"));
        // The crossing message again is now simply stale.
        let again = twin.cloud_update(&ctx(NOW), &cloud("green", cloud_desired("BLINK", 11, 0)));
        assert_eq!(again.rejections.len(), 1);
        assert_eq!(desired(&twin, "green").as_deref(), Some("OFF"));
    }

    #[test]
    fn edge_wins_keeps_the_edge_value_until_the_cloud_retries_knowingly() {
        let (mut twin, effects) = crossed(ConflictPolicy::EdgeWins);
        assert_eq!(desired(&twin, "green").as_deref(), Some("ON"));
        assert!(matches!(
            effects.rejections[0].reason,
            RejectReason::EdgeWins { .. }
        ));
        let back = sync_twin(&effects)["green"].as_ref().expect("sent back");
        assert_eq!(
            back.expected.as_ref().and_then(|v| v.value.as_deref()),
            Some("ON")
        );
        assert_eq!(back.expected_version, Some(wire_version(10, 1)));

        let edge_wins = ctx(NOW).with_policy(ConflictPolicy::EdgeWins);
        // Adopting the edge's value: accepted, nothing visible changes.
        let adopt = twin.cloud_update(&edge_wins, &cloud("green", cloud_desired("ON", 11, 1)));
        assert!(adopt.rejections.is_empty() && adopt.document.is_none());
        assert_eq!(
            twin.property("green").map(|g| g.desired_version),
            Some(TwinVersion::new(11, 1))
        );
        // Overriding knowingly: accepted.
        let over = twin.cloud_update(&edge_wins, &cloud("green", cloud_desired("BLINK", 12, 1)));
        assert!(over.rejections.is_empty());
        assert_eq!(desired(&twin, "green").as_deref(), Some("BLINK"));
    }

    #[test]
    fn resending_the_revision_the_edge_overwrote_is_stale_under_both_policies() {
        for policy in [ConflictPolicy::CloudWins, ConflictPolicy::EdgeWins] {
            let mut twin = lamp();
            twin.edge_update(&ctx(NOW), &edge_desire(&[("green", "ON")]));
            let effects = twin.cloud_update(
                &ctx(NOW).with_policy(policy),
                &cloud("green", cloud_desired("OFF", 10, 0)),
            );
            assert!(matches!(
                effects.rejections[0].reason,
                RejectReason::StaleEdgeVersion { .. }
            ));
            assert_eq!(desired(&twin, "green").as_deref(), Some("ON"));
        }
    }

    #[test]
    fn the_reported_half_keeps_the_edge_reading_on_a_crossing_write() {
        let mut twin = lamp();
        twin.edge_update(&ctx(NOW), &report(&[("red", "ON")]));
        let cloud_report = MsgTwin {
            actual: Some(value("OFF")),
            actual_version: Some(wire_version(3, 0)),
            ..MsgTwin::default()
        };
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", cloud_report));
        assert!(matches!(
            effects.rejections[0].reason,
            RejectReason::EdgeWins { .. }
        ));
        let red = twin.property("red").expect("red");
        assert_eq!(red.reported.as_ref().map(|r| r.value.as_str()), Some("ON"));
    }

    #[test]
    fn halves_are_judged_independently() {
        let mut twin = lamp();
        let both = MsgTwin {
            actual: Some(value("ON")),
            actual_version: Some(wire_version(1, 0)),
            ..cloud_desired("ON", 9, 0)
        };
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", both));
        assert_eq!(effects.rejections.len(), 1);
        assert_eq!(effects.rejections[0].half, Some(Half::Desired));
        let red = twin.property("red").expect("red");
        assert_eq!(red.reported.as_ref().map(|r| r.value.as_str()), Some("ON"));
        assert_eq!(red.reported_version, TwinVersion::new(1, 0));
        assert_eq!(desired(&twin, "red").as_deref(), Some("OFF"));
        let back = sync_twin(&effects)["red"].as_ref().expect("sent back");
        assert!(back.expected.is_some() && back.actual.is_none());
    }

    #[test]
    fn a_cloud_delete_leaves_a_tombstone_that_refuses_older_revisions() {
        let mut twin = lamp();
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", cloud_deleted(11, 0)));
        assert!(effects.rejections.is_empty());
        assert!(twin.property("red").is_none());
        let document = effects.document.as_ref().and_then(|d| d.twin.value());
        let doc = document.expect("document")["red"].as_ref().expect("doc");
        assert!(doc.last.value().is_some() && doc.current.value().is_none());

        let late = twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("ON", 10, 0)));
        assert!(
            twin.property("red").is_none(),
            "an older revision cannot revive it"
        );
        assert_eq!(
            sync_twin(&late)["red"]
                .as_ref()
                .and_then(|t| t.metadata.clone()),
            Some(Metadata::of_type("deleted"))
        );

        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("ON", 12, 0)));
        assert_eq!(desired(&twin, "red").as_deref(), Some("ON"));
        assert_eq!(
            twin.property("red").map(|r| r.value_type),
            Some(PropertyType::String)
        );
    }

    #[test]
    fn a_null_cloud_entry_deletes_without_versions() {
        let mut twin = lamp();
        let effects = twin.cloud_update(
            &ctx(NOW),
            &update("c", vec![("red", None), ("ghost", None)]),
        );
        assert!(effects.rejections.is_empty());
        assert!(twin.property("red").is_none());
        assert_eq!(
            twin.properties["red"].desired_version,
            TwinVersion::new(10, 0)
        );
        assert!(
            !twin.properties.contains_key("ghost"),
            "nothing to remember without versions"
        );
    }

    #[test]
    fn a_delete_for_an_unknown_property_is_remembered() {
        let mut twin = lamp();
        let effects = twin.cloud_update(&ctx(NOW), &cloud("blue", cloud_deleted(20, 0)));
        assert_eq!(effects.changed, ["blue".to_owned()].into());
        assert!(effects.document.is_none());
        twin.cloud_update(&ctx(NOW), &cloud("blue", cloud_desired("ON", 19, 0)));
        assert!(twin.property("blue").is_none());
    }

    #[test]
    fn deletes_follow_the_version_rule() {
        let mut twin = lamp();
        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("ON", 12, 0)));
        let stale = twin.cloud_update(&ctx(NOW), &cloud("red", cloud_deleted(11, 0)));
        assert_eq!(stale.rejections.len(), 1);
        assert!(twin.property("red").is_some());
        let back = sync_twin(&stale)["red"]
            .as_ref()
            .expect("whole property back");
        assert!(back.expected_version.is_some() && back.actual_version.is_some());

        twin.edge_update(&ctx(NOW), &edge_desire(&[("green", "ON")]));
        let edge_wins = ctx(NOW).with_policy(ConflictPolicy::EdgeWins);
        let kept = twin.cloud_update(&edge_wins, &cloud("green", cloud_deleted(11, 0)));
        assert_eq!(kept.rejections.len(), 1);
        assert!(twin.property("green").is_some());
        let gone = twin.cloud_update(&ctx(NOW), &cloud("green", cloud_deleted(11, 0)));
        assert!(gone.rejections.is_empty());
        assert!(twin.property("green").is_none());
        assert_eq!(
            twin.properties["green"].desired_version,
            TwinVersion::new(11, 1)
        );
        assert!(gone.sync.is_some(), "the cloud learns the edge counter");
    }

    #[test]
    fn a_report_after_the_cloud_view_does_not_block_a_delete() {
        let mut twin = lamp();
        twin.edge_update(&ctx(NOW), &report(&[("red", "ON")]));
        let delete = MsgTwin {
            actual_version: Some(wire_version(0, 0)),
            ..cloud_deleted(11, 0)
        };
        let effects = twin.cloud_update(&ctx(NOW), &cloud("red", delete));
        assert!(effects.rejections.is_empty());
        assert!(twin.property("red").is_none());
        assert_eq!(
            twin.properties["red"].reported_version,
            TwinVersion::new(0, 1)
        );
    }

    #[test]
    fn a_newer_delete_of_a_tombstone_moves_its_version() {
        let mut twin = lamp();
        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_deleted(12, 0)));
        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_deleted(14, 0)));
        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_deleted(13, 0)));
        twin.cloud_update(&ctx(NOW), &cloud("red", cloud_desired("ON", 13, 0)));
        assert!(twin.property("red").is_none());
        assert_eq!(
            twin.properties["red"].desired_version,
            TwinVersion::new(14, 0)
        );
    }

    #[test]
    fn invalid_cloud_values_are_refused_per_property() {
        let schema: DeviceSchema = [
            ("red".to_owned(), PropertySchema::new(PropertyType::String)),
            (
                "green".to_owned(),
                PropertySchema::new(PropertyType::String),
            ),
            (
                "count".to_owned(),
                PropertySchema::new(PropertyType::Int).with_range(Some(0.0), Some(9.0)),
            ),
        ]
        .into();
        let context = ctx(NOW).with_schema(&schema);
        let mut twin = lamp();
        let high = MsgTwin {
            expected: Some(value("10")),
            expected_version: Some(wire_version(1, 0)),
            ..MsgTwin::default()
        };
        let entries = vec![
            ("count", Some(high)),
            ("red", Some(cloud_desired("ON", 11, 0))),
            ("blue", Some(cloud_desired("ON", 11, 0))),
        ];
        let effects = twin.cloud_update(&context, &update("c", entries));
        let reasons: Vec<_> = effects
            .rejections
            .iter()
            .map(|r| (r.property.as_str(), r.reason.label()))
            .collect();
        assert_eq!(
            reasons,
            [("blue", "invalid_value"), ("count", "invalid_value")]
        );
        assert_eq!(desired(&twin, "red").as_deref(), Some("ON"));
        assert!(!twin.properties.contains_key("blue"));
        assert_eq!(twin.property("count").and_then(|c| c.desired.clone()), None);
    }

    #[test]
    fn the_cloud_sets_optional_and_creates_properties_from_its_type() {
        let mut twin = lamp();
        let entry = MsgTwin {
            expected: Some(value("0.5")),
            optional: Some(true),
            metadata: Some(Metadata::of_type("double")),
            expected_version: Some(wire_version(11, 0)),
            ..MsgTwin::default()
        };
        twin.cloud_update(&ctx(NOW), &cloud("dim", entry));
        let dim = twin.property("dim").expect("created");
        assert_eq!(dim.value_type, PropertyType::Double);
        assert!(dim.optional);
        assert_eq!(
            dim.desired
                .as_ref()
                .map(|d| TwinValue::at(d.value.clone(), d.timestamp_ms)),
            Some(TwinValue::at("0.5", NOW))
        );
        let required = MsgTwin {
            optional: Some(false),
            expected_version: Some(wire_version(12, 0)),
            ..cloud_desired("0.5", 12, 0)
        };
        twin.cloud_update(&ctx(NOW), &cloud("dim", required));
        assert!(!twin.property("dim").expect("dim").optional);
    }
}
