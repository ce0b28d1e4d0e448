//! Membership: a device joins the node (with its initial twins) or leaves it.

use crate::wire::payload::{Device, DeviceTwinUpdate, JsonField, MembershipUpdate};

use super::cloud::is_delete;
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
