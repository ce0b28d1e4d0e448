//! Membership: a device joins the node (with its initial twins) or leaves it.

use crate::wire::payload::{Device, DeviceTwinUpdate, JsonField, MembershipUpdate};

use super::cloud_update::is_delete;
use super::context::TwinContext;
use super::effects::Effects;
use super::state::DeviceTwin;

impl DeviceTwin {
    /// The twin of a device that joins the node (`added_devices` of a membership update): its
    /// twins are applied as a cloud update to an empty twin (so the document shows `last: null`
    /// and the delta lists every desired value without a report), and `membership` announces
    /// the device to the mappers, as received, with versions left out and deleted twins as
    /// `null` (KubeEdge's `MarshalMembershipUpdate`).
    ///
    /// For a device the node already has, apply `device.twin` with
    /// [`cloud_update`](DeviceTwin::cloud_update) instead: KubeEdge announces a device only once.
    pub fn add_device(ctx: &TwinContext<'_>, device: &Device) -> (DeviceTwin, Effects) {
        let mut twin = DeviceTwin::new();
        let update = DeviceTwinUpdate {
            // KubeEdge's document for a new device carries an empty event id.
            event_id: Some(String::new()),
            timestamp: Some(ctx.now_ms),
            twin: device
                .twin
                .clone()
                .map_or(JsonField::Missing, JsonField::Value),
        };
        let mut effects = twin.cloud_update(ctx, &update);
        effects.membership = Some(MembershipUpdate {
            event_id: Some(ctx.event_id.to_owned()),
            timestamp: Some(ctx.now_ms),
            added_devices: JsonField::Value(vec![announced(device)]),
            removed_devices: JsonField::Null,
        });
        (twin, effects)
    }

    /// The effects of a device leaving the node: `membership` announces the removal (by id, as
    /// KubeEdge does). The caller drops the twin and its stored rows.
    pub fn remove_device(ctx: &TwinContext<'_>, device_id: &str) -> Effects {
        let removed = Device {
            id: Some(device_id.to_owned()),
            ..Device::default()
        };
        Effects {
            membership: Some(MembershipUpdate {
                event_id: Some(ctx.event_id.to_owned()),
                timestamp: Some(ctx.now_ms),
                added_devices: JsonField::Null,
                removed_devices: JsonField::Value(vec![removed]),
            }),
            ..Effects::default()
        }
    }
}

/// A device as `membership/updated` shows it: versions left out, deleted twins as `null`.
fn announced(device: &Device) -> Device {
    let mut device = device.clone();
    for entry in device.twin.iter_mut().flat_map(|twin| twin.values_mut()) {
        if entry.as_ref().is_some_and(is_delete) {
            *entry = None;
        } else if let Some(msg) = entry {
            msg.expected_version = None;
            msg.actual_version = None;
        }
    }
    device
}

#[cfg(test)]
mod tests {
    use crate::twin::TwinVersion;
    use crate::twin::testkit::*;
    use crate::wire::payload::{Metadata, MsgTwin, TwinMap};

    use super::*;

    fn device(twin: TwinMap) -> Device {
        Device {
            id: Some("default/lamp".into()),
            name: Some("lamp".into()),
            description: Some("a lamp".into()),
            twin: Some(twin),
            ..Device::default()
        }
    }

    #[test]
    fn a_new_device_gets_its_twins_a_document_from_null_and_a_delta() {
        let twins = TwinMap::from([
            ("red".to_owned(), Some(cloud_desired("OFF", 10, 0))),
            ("gone".to_owned(), Some(cloud_deleted(9, 0))),
        ]);
        let (twin, effects) = DeviceTwin::add_device(&ctx(NOW), &device(twins));

        assert_eq!(
            twin.property("red").map(|r| r.desired_version),
            Some(TwinVersion::new(10, 0))
        );
        assert!(
            twin.properties["gone"].deleted,
            "a deleted twin is remembered"
        );
        assert_eq!(
            effects.changed,
            ["gone".to_owned(), "red".to_owned()].into()
        );
        assert!(effects.sync.is_none() && effects.result.is_none());

        let document = effects.document.as_ref().expect("document");
        assert_eq!(document.event_id.as_deref(), Some(""));
        let docs = document.twin.value().expect("docs");
        assert_eq!(docs.len(), 1);
        let red = docs["red"].as_ref().expect("red");
        assert!(red.last.value().is_none() && !red.last.is_missing());
        assert!(red.current.value().is_some());

        assert_eq!(delta_of(&effects, "red"), Some("OFF"), "delta");

        let membership = effects.membership.as_ref().expect("membership");
        assert!(membership.removed_devices.value().is_none());
        let added = &membership.added_devices.value().expect("added")[0];
        assert_eq!(added.id.as_deref(), Some("default/lamp"));
        let announced = added.twin.as_ref().expect("twins");
        assert_eq!(announced["gone"], None);
        let red = announced["red"].as_ref().expect("red");
        assert_eq!(red.expected_version, None);
        assert_eq!(red.metadata, Some(Metadata::of_type("string")));
    }

    #[test]
    fn a_device_without_twins_joins_with_an_empty_twin() {
        let bare = Device {
            id: Some("bare".into()),
            ..Device::default()
        };
        let (twin, effects) = DeviceTwin::add_device(&ctx(NOW), &bare);
        assert!(twin.properties.is_empty());
        assert!(effects.document.is_none() && effects.delta.is_none());
        assert!(effects.membership.is_some());
    }

    #[test]
    fn membership_announces_twins_without_values_too() {
        let declared = MsgTwin {
            optional: Some(true),
            metadata: Some(Metadata::of_type("int")),
            ..MsgTwin::default()
        };
        let (twin, effects) = DeviceTwin::add_device(
            &ctx(NOW),
            &device(TwinMap::from([("count".to_owned(), Some(declared))])),
        );
        assert!(twin.property("count").is_some());
        assert!(effects.delta.is_none(), "nothing is desired");
    }

    #[test]
    fn a_removed_device_is_announced_by_id() {
        let effects = DeviceTwin::remove_device(&ctx(NOW).with_event_id("bye"), "default/lamp");
        let membership = effects.membership.expect("membership");
        assert_eq!(membership.event_id.as_deref(), Some("bye"));
        assert!(membership.added_devices.value().is_none());
        let removed = membership.removed_devices.value().expect("removed");
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id.as_deref(), Some("default/lamp"));
        assert_eq!(removed[0].name, None);
        assert!(effects.changed.is_empty());
    }
}
