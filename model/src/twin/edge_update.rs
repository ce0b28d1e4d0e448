//! Operations from the edge side: a mapper's `twin/update` and `twin/get`.

use crate::wire::payload::{
    BaseMessage, DeviceTwinResult, DeviceTwinUpdate, JsonField, MsgTwin, TwinMap,
};

use super::context::TwinContext;
use super::effects::{Effects, EffectsBuilder};
use super::error::{TwinError, reply_to};
use super::schema::{ValueCheck, check_name};
use super::state::{DeviceTwin, Half, PropertyTwin, TwinHalf, same_value};

/// The planned new state of one property of an edge update.
struct EdgeWrite {
    name: String,
    twin: PropertyTwin,
    /// Halves whose value changed (or was cleared by a deletion).
    halves: Vec<Half>,
}

/// The properties a [`DeviceTwin::edge_update`] may change, as they were before it: what a caller
/// whose persisting of the effects failed puts back with [`DeviceTwin::undo_edge_update`]. Cheaper
/// than a clone of the whole twin when an update names a few of many properties.
#[derive(Debug)]
pub struct EdgeUndo<'u> {
    /// Each property the update names, and its twin before (`None`: it had none).
    properties: Vec<(&'u str, Option<PropertyTwin>)>,
}

impl DeviceTwin {
    /// Saves what [`DeviceTwin::edge_update`] with `update` may change: only the properties the
    /// update names (nothing else of the twin is touched by it).
    pub fn save_for_edge_update<'u>(&self, update: &'u DeviceTwinUpdate) -> EdgeUndo<'u> {
        let properties = update
            .twin
            .value()
            .into_iter()
            .flatten()
            .map(|(name, _)| (name.as_str(), self.properties.get(name).cloned()))
            .collect();
        EdgeUndo { properties }
    }

    /// Puts back the properties saved before an edge update.
    pub fn undo_edge_update(&mut self, undo: EdgeUndo<'_>) {
        for (name, before) in undo.properties {
            match before {
                Some(twin) => {
                    self.properties.insert(name.to_owned(), twin);
                }
                None => {
                    self.properties.remove(name);
                }
            }
        }
    }

    /// Applies a mapper's `…/twin/update`: for every property, `expected` sets the desired
    /// value and `actual` the reported value, each bumping its half's edge counter by one;
    /// `null` deletes an optional property.
    ///
    /// The update is all or nothing: the first refused property refuses the whole update with a
    /// `{code: 400, reason}` result and changes nothing. A value equal to the stored one (by
    /// type) changes nothing and is left out of the result, the document, the delta and the
    /// sync.
    pub fn edge_update(&mut self, ctx: &TwinContext<'_>, update: &DeviceTwinUpdate) -> Effects {
        let request = update.base();
        let Some(properties) = update.twin.value() else {
            return Effects::refused(&TwinError::MissingTwin, &request, ctx.now_ms);
        };
        let mut writes = Vec::with_capacity(properties.len());
        for (name, msg) in properties {
            match self.plan_edge_write(ctx, name, msg.as_ref()) {
                Ok(Some(write)) => writes.push(write),
                Ok(None) => {}
                Err(error) => return Effects::refused(&error, &request, ctx.now_ms),
            }
        }
        let mut out = EffectsBuilder::new(ctx, request, true);
        for write in writes {
            out.answer(&write.name, &write.halves);
            out.sync_halves(&write.name, &write.halves);
            if write.twin.deleted {
                out.sync_whole(&write.name);
            }
            let before = self.properties.insert(write.name.clone(), write.twin);
            out.changed(&write.name, before);
        }
        let mut effects = out.finish(self);
        self.forward_device_errors(ctx, properties, &mut effects);
        effects
    }

    /// Puts each `write_error` (a refused desired value) and `read_error` (the property cannot
    /// be read, or `null`: it can again) of a mapper's update, edgetwin extensions, on the
    /// cloud-bound sync of its property. They are events for the cloud, not twin state: nothing
    /// stores them. A write error is forwarded for a property the twin holds; a read error also
    /// for one the model defines that was never read (that is when it matters most).
    fn forward_device_errors(
        &self,
        ctx: &TwinContext<'_>,
        properties: &TwinMap,
        effects: &mut Effects,
    ) {
        for (name, msg) in properties {
            let Some(msg) = msg.as_ref() else {
                continue;
            };
            let held = self.properties.get(name).is_some_and(|p| !p.deleted);
            let write_error = msg.write_error.as_ref().filter(|_| held);
            let readable = held || (ctx.allows_new(name) && check_name(name).is_ok());
            let read_error = Some(&msg.read_error).filter(|e| readable && !e.is_missing());
            if write_error.is_none() && read_error.is_none() {
                continue;
            }
            let sync = effects.sync.get_or_insert_with(|| DeviceTwinUpdate {
                event_id: Some(ctx.event_id.to_owned()),
                timestamp: Some(ctx.now_ms),
                twin: TwinMap::new().into(),
            });
            if !matches!(sync.twin, JsonField::Value(_)) {
                sync.twin = TwinMap::new().into();
            }
            if let JsonField::Value(twin) = &mut sync.twin
                && let Some(entry) = twin
                    .entry(name.clone())
                    .or_insert_with(|| Some(MsgTwin::default()))
            {
                if let Some(error) = write_error {
                    entry.write_error = Some(error.clone());
                }
                if let Some(error) = read_error {
                    entry.read_error = error.clone();
                }
            }
        }
    }

    /// Answers a mapper's `…/twin/get`: every live property, without versions.
    pub fn get(&self, ctx: &TwinContext<'_>, request: &BaseMessage) -> DeviceTwinResult {
        let twin: TwinMap = self
            .live_properties()
            .map(|(name, property)| (name.clone(), property.snapshot()))
            .collect();
        let base = reply_to(request, ctx.now_ms);
        DeviceTwinResult {
            event_id: base.event_id,
            timestamp: base.timestamp,
            twin: twin.into(),
        }
    }

    /// The new state of `name` after an edge write, `None` if nothing changes.
    fn plan_edge_write(
        &self,
        ctx: &TwinContext<'_>,
        name: &str,
        msg: Option<&MsgTwin>,
    ) -> Result<Option<EdgeWrite>, TwinError> {
        check_name(name)?;
        let existing = self.properties.get(name);
        let Some(msg) = msg else {
            if existing.is_some_and(|p| p.desired.is_some()) && !ctx.edge_desired.allows(name) {
                return Err(TwinError::DesiredFromCloudOnly {
                    property: name.to_owned(),
                });
            }
            return plan_edge_delete(name, existing);
        };
        if carries_only_device_errors(msg) {
            // Forwarded as events (see `forward_device_errors`); they change no twin state, and
            // must not create a property that was never read.
            return Ok(None);
        }
        let schema = ctx.property_schema(name);
        let mut twin = self.write_base(ctx, name, msg)?;
        let check = ValueCheck {
            property: name,
            value_type: twin.value_type,
            schema,
            max_value_bytes: ctx.max_value_bytes,
        };
        let mut halves = Vec::new();
        for (half, incoming) in [
            (Half::Desired, &msg.expected),
            (Half::Reported, &msg.actual),
        ] {
            let Some(value) = incoming.as_ref().and_then(|v| v.value.as_deref()) else {
                continue;
            };
            check.check(half, value)?;
            let unchanged = twin
                .half(half)
                .is_some_and(|current| same_value(twin.value_type, &current.value, value));
            if unchanged {
                continue;
            }
            if half == Half::Desired && !ctx.edge_desired.allows(name) {
                return Err(TwinError::DesiredFromCloudOnly {
                    property: name.to_owned(),
                });
            }
            *twin.half_mut(half) = Some(TwinHalf {
                value: value.to_owned(),
                timestamp_ms: ctx.now_ms,
            });
            let version = twin.version_mut(half);
            version.edge = version.edge.saturating_add(1);
            halves.push(half);
        }
        if existing == Some(&twin) {
            return Ok(None);
        }
        Ok(Some(EdgeWrite {
            name: name.to_owned(),
            twin,
            halves,
        }))
    }
}

/// Whether a mapper's property carries nothing but the edgetwin extensions `write_error` and
/// `read_error` (no value, no `optional`).
fn carries_only_device_errors(msg: &MsgTwin) -> bool {
    msg.expected.is_none()
        && msg.actual.is_none()
        && msg.optional.is_none()
        && (msg.write_error.is_some() || !msg.read_error.is_missing())
}

/// The new state of `name` after a mapper's `null`: a tombstone whose cleared halves count one
/// more edge write each.
fn plan_edge_delete(
    name: &str,
    existing: Option<&PropertyTwin>,
) -> Result<Option<EdgeWrite>, TwinError> {
    let property = || name.to_owned();
    let twin = match existing {
        None => {
            return Err(TwinError::NoSuchProperty {
                property: property(),
            });
        }
        Some(twin) if twin.deleted => return Ok(None),
        Some(twin) if !twin.optional => {
            return Err(TwinError::NotOptional {
                property: property(),
            });
        }
        Some(twin) => twin,
    };
    let mut tombstone = twin.clone();
    tombstone.deleted = true;
    let halves = twin.present_halves();
    for half in &halves {
        *tombstone.half_mut(*half) = None;
        let version = tombstone.version_mut(*half);
        version.edge = version.edge.saturating_add(1);
    }
    Ok(Some(EdgeWrite {
        name: property(),
        twin: tombstone,
        halves,
    }))
}

#[cfg(test)]
mod tests {
    use crate::twin::testkit::*;
    use crate::twin::{DeviceSchema, PropertySchema, TwinContext, TwinError, TwinVersion};
    use crate::value::PropertyType;
    use crate::wire::payload::{BaseMessage, Metadata, MsgTwin, TwinValue};

    use super::*;

    #[test]
    fn undoing_an_edge_update_restores_the_twin_it_started_from() {
        let mut twin = lamp();
        let original = twin.clone();
        // Two properties the twin has and one it did not have.
        let reported = |v: &str, kind: &str| MsgTwin {
            actual: Some(value(v)),
            metadata: Some(Metadata::of_type(kind)),
            ..MsgTwin::default()
        };
        let update = update(
            "report",
            vec![
                ("red", Some(reported("ON", "Updated"))),
                ("green", Some(reported("OFF", "Updated"))),
                ("blue", Some(reported("ON", "string"))),
            ],
        );
        let undo = twin.save_for_edge_update(&update);
        let effects = twin.edge_update(&ctx(2_000), &update);
        assert_eq!(effects.changed.len(), 3, "{effects:?}");
        assert_ne!(twin, original);
        twin.undo_edge_update(undo);
        assert_eq!(twin, original);
    }

    #[test]
    fn a_report_sets_the_reported_half_and_bumps_its_edge_counter() {
        let mut twin = lamp();
        let effects = twin.edge_update(&ctx(2_000), &report(&[("red", "ON")]));

        let red = twin.property("red").expect("red");
        assert_eq!(red.reported_version, TwinVersion::new(0, 1));
        assert_eq!(red.desired_version, TwinVersion::new(10, 0));
        assert_eq!(
            red.reported,
            Some(TwinHalf {
                value: "ON".into(),
                timestamp_ms: 2_000
            })
        );
        assert_eq!(effects.changed, ["red".to_owned()].into());

        let result = ok_twin(&effects)["red"].as_ref().expect("red in result");
        assert_eq!(result.actual, Some(TwinValue::at("ON", 2_000)));
        assert_eq!(result.expected, None);
        assert_eq!(result.actual_version, None);
        assert_eq!(result.metadata, Some(Metadata::of_type("string")));

        let sync = sync_twin(&effects)["red"].as_ref().expect("red in sync");
        assert_eq!(sync.actual_version, Some(wire_version(0, 1)));
        assert_eq!(sync.expected, None);

        let document = effects.document.as_ref().and_then(|d| d.twin.value());
        let doc = document.expect("document")["red"]
            .as_ref()
            .expect("red doc");
        assert_eq!(doc.last.value().and_then(|t| t.actual.clone()), None);
        assert_eq!(
            doc.current.value().and_then(|t| t.actual.clone()),
            Some(TwinValue::at("ON", 2_000))
        );

        let delta = effects.delta.expect("red and green still differ");
        assert_eq!(
            delta.delta.value().expect("delta map"),
            &[
                ("green".to_owned(), "OFF".to_owned()),
                ("red".to_owned(), "OFF".to_owned())
            ]
            .into()
        );
    }

    #[test]
    fn an_unchanged_report_changes_nothing_and_emits_only_the_result() {
        let mut twin = lamp();
        twin.edge_update(&ctx(2_000), &report(&[("count", "7")]));
        let before = twin.clone();

        for same in ["7", "07", " 7"] {
            let effects = twin.edge_update(&ctx(3_000), &report(&[("count", same)]));
            assert_eq!(twin, before, "{same:?} changed the twin");
            assert!(ok_twin(&effects).is_empty());
            assert_eq!(effects.document, None);
            assert_eq!(effects.delta, None);
            assert_eq!(effects.sync, None);
            assert!(effects.changed.is_empty());
        }
    }

    #[test]
    fn a_wrong_type_refuses_the_whole_update_with_kubeedge_reason() {
        let mut twin = lamp();
        let before = twin.clone();
        let effects = twin.edge_update(&ctx(NOW), &report(&[("count", "abc"), ("red", "ON")]));
        let (code, reason) = error_of(&effects);
        assert_eq!(code, 400);
        assert!(
            reason.starts_with("the value is not int or integer"),
            "{reason}"
        );
        assert!(reason.contains(r#""count""#), "{reason}");
        assert_eq!(twin, before, "nothing of a refused update is applied");
        assert!(effects.changed.is_empty() && effects.sync.is_none());
    }

    #[test]
    fn any_utf8_up_to_the_limit_is_accepted_and_larger_values_are_refused() {
        let mut twin = lamp();
        let small = ctx(NOW).with_max_value_bytes(32);
        let text = "not valid: ü € — 🚦";
        assert!(text.len() <= 32);
        let effects = twin.edge_update(&small, &report(&[("red", text)]));
        assert_eq!(ok_twin(&effects).len(), 1);
        let exactly = "x".repeat(32);
        let effects = twin.edge_update(&small, &report(&[("red", &exactly)]));
        assert_eq!(ok_twin(&effects).len(), 1);

        let effects = twin.edge_update(&small, &report(&[("red", &"x".repeat(33))]));
        let (code, reason) = error_of(&effects);
        assert_eq!(code, 400);
        assert!(reason.contains("33 bytes"), "{reason}");

        let default_limit = TwinContext::DEFAULT_MAX_VALUE_BYTES;
        assert_eq!(default_limit, 65_536);
        let big = "y".repeat(default_limit);
        let effects = twin.edge_update(&ctx(NOW), &report(&[("red", &big)]));
        assert_eq!(ok_twin(&effects).len(), 1);
    }

    #[test]
    fn null_deletes_an_optional_property_into_a_tombstone() {
        let mut twin = lamp();
        twin.edge_update(&ctx(2_000), &report(&[("count", "5")]));
        let effects = twin.edge_update(&ctx(3_000), &edge_delete(&["count"]));

        assert_eq!(ok_twin(&effects)["count"], None);
        let tombstone = &twin.properties["count"];
        assert!(tombstone.deleted);
        assert_eq!(tombstone.reported, None);
        assert_eq!(tombstone.reported_version, TwinVersion::new(0, 2));
        assert_eq!(tombstone.desired_version, TwinVersion::new(0, 0));
        assert!(twin.property("count").is_none());

        let sync = sync_twin(&effects)["count"]
            .as_ref()
            .expect("tombstone sync");
        assert_eq!(sync.metadata, Some(Metadata::of_type("deleted")));
        assert_eq!(sync.actual, Some(TwinValue::default()));
        assert_eq!(sync.actual_version, Some(wire_version(0, 2)));
        assert_eq!(sync.expected_version, Some(wire_version(0, 0)));

        let document = effects.document.as_ref().and_then(|d| d.twin.value());
        let doc = document.expect("document")["count"].as_ref().expect("doc");
        assert!(doc.last.value().is_some());
        assert!(doc.current.value().is_none() && !doc.current.is_missing());

        let get = twin.get(&ctx(NOW), &BaseMessage::default());
        assert!(!get.twin.value().expect("twin").contains_key("count"));

        let again = twin.edge_update(&ctx(4_000), &edge_delete(&["count"]));
        assert!(ok_twin(&again).is_empty(), "deleting twice is harmless");
        assert!(again.changed.is_empty());
    }

    #[test]
    fn null_for_a_required_or_unknown_property_is_refused() {
        let mut twin = lamp();
        let effects = twin.edge_update(&ctx(NOW), &edge_delete(&["red"]));
        assert_eq!(
            error_of(&effects),
            (
                400,
                r#"property "red" is not optional and cannot be deleted"#.into()
            )
        );
        let effects = twin.edge_update(&ctx(NOW), &edge_delete(&["nope"]));
        let (code, reason) = error_of(&effects);
        assert_eq!(code, 400);
        assert!(reason.starts_with("The request body is wrong"), "{reason}");
        assert!(twin.property("red").is_some());
    }

    #[test]
    fn a_report_brings_a_deleted_property_back_with_its_versions_continuing() {
        let mut twin = lamp();
        twin.edge_update(&ctx(NOW), &report(&[("count", "5")]));
        twin.edge_update(&ctx(NOW), &edge_delete(&["count"]));
        let effects = twin.edge_update(&ctx(NOW), &report(&[("count", "6")]));
        let count = twin.property("count").expect("back");
        assert_eq!(count.reported_version, TwinVersion::new(0, 3));
        assert_eq!(count.value_type, PropertyType::Int);
        let document = effects.document.as_ref().and_then(|d| d.twin.value());
        let doc = document.expect("document")["count"].as_ref().expect("doc");
        assert!(doc.last.value().is_none(), "a tombstone shows as null");
    }

    #[test]
    fn a_new_property_takes_its_type_from_the_request() {
        let mut twin = lamp();
        let typed = MsgTwin {
            actual: Some(value("23.5")),
            metadata: Some(Metadata::of_type("float")),
            ..MsgTwin::default()
        };
        let effects = twin.edge_update(&ctx(NOW), &update("", vec![("temp", Some(typed))]));
        assert_eq!(ok_twin(&effects).len(), 1);
        let temp = twin.property("temp").expect("created");
        assert_eq!(temp.value_type, PropertyType::Float);
        assert!(
            temp.optional,
            "KubeEdge makes a mapper-created twin optional"
        );

        let untyped = MsgTwin {
            actual: Some(value("x")),
            ..MsgTwin::default()
        };
        twin.edge_update(&ctx(NOW), &update("", vec![("note", Some(untyped))]));
        assert_eq!(
            twin.property("note").map(|t| t.value_type),
            Some(PropertyType::String)
        );

        let effects = twin.edge_update(&ctx(NOW), &report(&[("fresh", "1")]));
        let (code, reason) = error_of(&effects);
        assert_eq!(code, 400);
        assert!(
            reason.starts_with("the value type is not allowed"),
            "{reason}"
        );
    }

    #[test]
    fn with_a_model_types_bounds_and_read_only_are_enforced() {
        let schema: DeviceSchema = [
            (
                "temp".to_owned(),
                PropertySchema::new(PropertyType::Double).with_range(Some(5.0), Some(30.0)),
            ),
            (
                "humidity".to_owned(),
                PropertySchema::new(PropertyType::Int).read_only(),
            ),
        ]
        .into();
        let context = ctx(NOW).with_schema(&schema);
        let mut twin = DeviceTwin::new();

        let effects = twin.edge_update(&context, &report(&[("temp", "45"), ("humidity", "60")]));
        assert_eq!(
            ok_twin(&effects).len(),
            2,
            "readings outside the bounds are data"
        );
        assert_eq!(
            twin.property("temp").map(|t| t.value_type),
            Some(PropertyType::Double)
        );

        let effects = twin.edge_update(&context, &edge_desire(&[("temp", "31")]));
        let (_, reason) = error_of(&effects);
        assert!(reason.contains("above the maximum 30"), "{reason}");
        let effects = twin.edge_update(&context, &edge_desire(&[("humidity", "50")]));
        let (_, reason) = error_of(&effects);
        assert!(reason.contains("ReadOnly"), "{reason}");
        let effects = twin.edge_update(&context, &report(&[("pressure", "1")]));
        assert_eq!(
            error_of(&effects),
            (
                400,
                r#"property "pressure" is not defined in the device model"#.into()
            )
        );
        let effects = twin.edge_update(&context, &report(&[("temp", "warm")]));
        let (_, reason) = error_of(&effects);
        assert!(reason.starts_with("the value is not float"), "{reason}");
    }

    #[test]
    fn an_edge_desired_write_bumps_the_desired_edge_counter_and_syncs_it() {
        let mut twin = lamp();
        let effects = twin.edge_update(&ctx(2_000), &edge_desire(&[("green", "ON")]));
        let green = twin.property("green").expect("green");
        assert_eq!(green.desired_version, TwinVersion::new(10, 1));
        let sync = sync_twin(&effects)["green"].as_ref().expect("synced");
        assert_eq!(sync.expected, Some(TwinValue::at("ON", 2_000)));
        assert_eq!(sync.expected_version, Some(wire_version(10, 1)));
        assert_eq!(sync.actual_version, None);
        assert_eq!(
            delta_of(&effects, "green"),
            Some("ON"),
            "green is not reported yet"
        );
    }

    #[test]
    fn a_desired_value_from_the_cloud_only_is_refused_whole_and_changes_nothing() {
        use crate::twin::EdgeDesired;
        let mut twin = lamp();
        let before = twin.clone();
        let cloud_only = EdgeDesired {
            by_default: false,
            exceptions: None,
        };
        let context = ctx(2_000).with_edge_desired(cloud_only);
        // `expected` for green, next to an allowed report of red: the whole update is refused.
        let mixed = update(
            "mixed",
            vec![
                (
                    "red",
                    Some(MsgTwin {
                        actual: Some(value("ON")),
                        ..MsgTwin::default()
                    }),
                ),
                (
                    "green",
                    Some(MsgTwin {
                        expected: Some(value("ON")),
                        ..MsgTwin::default()
                    }),
                ),
            ],
        );
        let effects = twin.edge_update(&context, &mixed);
        let (code, reason) = error_of(&effects);
        assert_eq!(code, 403);
        assert!(
            reason.contains("\"green\"") && reason.contains("CloudWins"),
            "{reason}"
        );
        assert!(effects.sync.is_none() && effects.delta.is_none());
        assert_eq!(twin, before);
        // Deleting a property that holds a desired value writes it too.
        let effects = twin.edge_update(&context, &update("del", vec![("red", None)]));
        assert_eq!(error_of(&effects).0, 403);
        // The value it already holds is no write; reports stay allowed.
        let effects = twin.edge_update(&context, &edge_desire(&[("green", "OFF")]));
        assert!(ok_twin(&effects).is_empty());
        let effects = twin.edge_update(&context, &report(&[("green", "ON")]));
        assert_eq!(ok_twin(&effects).len(), 1);
        // A listed exception may be written.
        let green = std::collections::BTreeSet::from(["green".to_owned()]);
        let context = ctx(3_000).with_edge_desired(EdgeDesired {
            by_default: false,
            exceptions: Some(&green),
        });
        let effects = twin.edge_update(&context, &edge_desire(&[("green", "ON")]));
        assert_eq!(ok_twin(&effects).len(), 1);
        let effects = twin.edge_update(&context, &edge_desire(&[("red", "ON")]));
        assert_eq!(error_of(&effects).0, 403);
    }

    #[test]
    fn a_half_without_a_value_is_ignored() {
        let mut twin = lamp();
        let empty = MsgTwin {
            actual: Some(TwinValue::default()),
            expected: Some(TwinValue {
                value: None,
                metadata: Some(Metadata::at(5)),
            }),
            ..MsgTwin::default()
        };
        let before = twin.clone();
        let effects = twin.edge_update(&ctx(NOW), &update("", vec![("red", Some(empty))]));
        assert!(ok_twin(&effects).is_empty());
        assert_eq!(twin, before);
    }

    #[test]
    fn an_update_without_a_twin_map_is_refused_and_names_are_checked() {
        let mut twin = lamp();
        let mut missing = report(&[]);
        missing.twin = crate::wire::payload::JsonField::Missing;
        assert_eq!(
            error_of(&twin.edge_update(&ctx(NOW), &missing)),
            (400, TwinError::MissingTwin.to_string())
        );
        let effects = twin.edge_update(&ctx(NOW), &report(&[("", "1")]));
        assert_eq!(error_of(&effects).0, 400);
        let effects = twin.edge_update(&ctx(NOW), &report(&[]));
        assert!(ok_twin(&effects).is_empty());
    }

    fn read_error(reason: Option<&str>) -> MsgTwin {
        MsgTwin {
            read_error: match reason {
                Some(reason) => {
                    crate::wire::payload::JsonField::Value(crate::wire::payload::ReadError {
                        reason: reason.to_owned(),
                    })
                }
                None => crate::wire::payload::JsonField::Null,
            },
            ..MsgTwin::default()
        }
    }

    #[test]
    fn read_errors_reach_the_sync_without_creating_or_changing_properties() {
        let schema = DeviceSchema::from([
            ("red".to_owned(), PropertySchema::new(PropertyType::String)),
            ("hum".to_owned(), PropertySchema::new(PropertyType::Float)),
        ]);
        let context = ctx(NOW).with_schema(&schema);
        let mut twin = lamp();
        let before = twin.clone();
        let effects = twin.edge_update(
            &context,
            &update(
                "",
                vec![
                    // Held by the twin, and defined by the model but never read.
                    ("red", Some(read_error(Some("timed out")))),
                    ("hum", Some(read_error(Some("ERR unknown")))),
                    // Neither held nor in the model: nowhere to show it.
                    ("bogus", Some(read_error(Some("what")))),
                ],
            ),
        );
        assert_eq!(twin, before, "errors are events, not twin state");
        assert!(ok_twin(&effects).is_empty());
        let sync = sync_twin(&effects);
        let reason = |name: &str| {
            sync[name]
                .as_ref()
                .and_then(|t| t.read_error.value())
                .map(|e| e.reason.clone())
        };
        assert_eq!(reason("red").as_deref(), Some("timed out"));
        assert_eq!(reason("hum").as_deref(), Some("ERR unknown"));
        assert!(!sync.contains_key("bogus"));

        // Reading works again: the value and the clearing travel together.
        let mut recovered = read_error(None);
        recovered.actual = Some(value("41"));
        let effects = twin.edge_update(&context, &update("", vec![("hum", Some(recovered))]));
        let hum = sync_twin(&effects)["hum"].as_ref().expect("hum synced");
        assert_eq!(hum.read_error, crate::wire::payload::JsonField::Null);
        assert_eq!(
            hum.actual.as_ref().and_then(|a| a.value.as_deref()),
            Some("41")
        );
    }

    #[test]
    fn get_answers_live_properties_without_versions_with_the_request_event_id() {
        let mut twin = lamp();
        twin.edge_update(&ctx(NOW), &report(&[("red", "ON")]));
        let request = BaseMessage {
            event_id: Some("get-1".into()),
            timestamp: None,
        };
        let result = twin.get(&ctx(5_000), &request);
        assert_eq!(result.event_id.as_deref(), Some("get-1"));
        assert_eq!(result.timestamp, Some(5_000));
        let properties = result.twin.value().expect("twin");
        assert_eq!(properties.len(), 3);
        let red = properties["red"].as_ref().expect("red");
        assert_eq!(red.actual_version, None);
        assert_eq!(red.expected_version, None);
        assert_eq!(
            red.actual.as_ref().and_then(|a| a.value.as_deref()),
            Some("ON")
        );
    }
}
