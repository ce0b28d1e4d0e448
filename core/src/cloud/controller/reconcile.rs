//! What a node is sent (pure): the membership content for some of its devices, and the
//! reconcile plan that a node's version summary leads to.
//!
//! **Reconcile.** When its link comes up, and every reconcile interval, the edge sends its
//! version summary (`cloud_edge::SummaryContent`: per device a digest of the spec generation and
//! the desired versions it holds). [`plan`] compares it with what the registry wants
//! (`cloud_edge::expected_digest`) and with the controller's record of what it sent:
//!
//! - a device of the node whose digest differs, or that the edge lacks, is resent (its spec
//!   with desired values, as [`edge_view`] gives it, and its model); the edge applies it with
//!   compare-before-act, so only the drifted desired values change;
//! - a device the edge serves but the node should not have is removed;
//! - unless the controller sent that device in a message the edge had not applied yet when it
//!   made the summary (`applied`): that message is on its way and repairs it.
//!
//! A matching summary causes no message at all. Models are not in the digest: a model change
//! reaches the nodes through their persistent outboxes (the controller resends a model's devices
//! when it changes), and an edge restored with an older model gets the current one with the
//! next resend of a device that uses it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::tunnel::Seq;
use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::limits;
use edgetwin_model::wire::cloud_edge::{
    DeviceRef, MembershipContent, SummaryContent, edge_view, parse_summary_key,
};

/// The membership content listing `devices` (with the models they use) and `removed`.
pub fn membership_content<'a>(
    devices: impl IntoIterator<Item = &'a Device>,
    models: &BTreeMap<DeviceRef, Arc<DeviceModel>>,
    removed: Vec<DeviceRef>,
) -> MembershipContent {
    let devices: Vec<Device> = devices.into_iter().map(edge_view).collect();
    let used: BTreeSet<DeviceRef> = devices
        .iter()
        .filter_map(|device| {
            Some(DeviceRef {
                namespace: device.namespace().to_owned(),
                name: device.spec.device_model_ref.as_ref()?.name.clone(),
            })
        })
        .collect();
    let models = used
        .iter()
        .filter_map(|key| models.get(key))
        .map(|model| model.as_ref().clone())
        .collect();
    MembershipContent {
        models,
        devices,
        removed,
        complete: false,
    }
}

/// What a node's version summary calls for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Devices to send again (drifted or missing at the edge).
    pub resend: Vec<DeviceRef>,
    /// Devices the edge must drop (not the node's any more).
    pub remove: Vec<DeviceRef>,
    /// Devices that differ but whose update is still on its way.
    pub in_flight: usize,
    /// Summary keys that name no device (`{namespace}/{name}` expected).
    pub malformed: Vec<String>,
}

/// Compares a node's `summary` with the devices `assigned` to it, each with the digest the
/// registry's spec gives (`cloud_edge::expected_digest`), and with `sent`: the sequence number of
/// the last message that carried each device to this node.
pub fn plan<'a>(
    summary: &SummaryContent,
    assigned: impl IntoIterator<Item = (&'a DeviceRef, String)>,
    sent: &HashMap<DeviceRef, Seq>,
) -> Plan {
    let mut plan = Plan::default();
    let on_its_way = |device: &DeviceRef| {
        summary
            .applied
            .zip(sent.get(device))
            .is_some_and(|(applied, sent)| *sent > applied)
    };
    let mut edge: BTreeMap<DeviceRef, &str> = BTreeMap::new();
    for (key, digest) in &summary.devices {
        match parse_summary_key(key) {
            Some(device) => {
                edge.insert(device, digest);
            }
            None => plan.malformed.push(key.clone()),
        }
    }
    for (device, expected) in assigned {
        match edge.remove(device) {
            Some(digest) if digest == expected => {}
            _ if on_its_way(device) => plan.in_flight += 1,
            _ => plan.resend.push(device.clone()),
        }
    }
    for device in edge.into_keys() {
        if on_its_way(&device) {
            plan.in_flight += 1;
        } else {
            plan.remove.push(device);
        }
    }
    plan
}

/// A membership update split into messages that each fit the tunnel.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// The messages, each within the budget; the removals travel in the first.
    pub messages: Vec<MembershipContent>,
    /// Devices that do not fit a message even alone with their model (a Kubernetes registry
    /// accepts larger objects than the edge takes), with the size they would need.
    pub too_large: Vec<(DeviceRef, usize)>,
}

/// Splits `content` into updates whose JSON is at most `budget` bytes: each device with the
/// models it uses, removals in the first. The edge applies each update on its own (`complete` is
/// kept only when everything fits in one).
pub fn split_to_fit(content: MembershipContent, budget: usize) -> Split {
    if limits::json_size(&content) <= budget {
        return Split {
            messages: vec![content],
            too_large: Vec::new(),
        };
    }
    let MembershipContent {
        models,
        devices,
        removed,
        complete: _,
    } = content;
    let model_of = |device: &Device| {
        let name = &device.spec.device_model_ref.as_ref()?.name;
        models
            .iter()
            .find(|m| m.name() == name && m.namespace() == device.namespace())
    };
    let empty = |removed: Vec<DeviceRef>| MembershipContent {
        models: Vec::new(),
        devices: Vec::new(),
        removed,
        complete: false,
    };
    let size_of_model = |model: &DeviceModel| limits::json_size(model) + 1;
    let base = limits::json_size(&empty(Vec::new()));
    let mut split = Split::default();
    let mut current = empty(removed);
    // The size of `current` as JSON, kept up to date item by item (a comma per item).
    let mut size = limits::json_size(&current);
    for device in devices {
        let device_size = limits::json_size(&device) + 1;
        let model = model_of(&device);
        let alone = base + device_size + model.map_or(0, size_of_model);
        if alone > budget {
            split.too_large.push((DeviceRef::of(&device), alone));
            continue;
        }
        // The model, unless the message has it already.
        let missing = |current: &MembershipContent| model.filter(|m| !current.models.contains(m));
        if size + device_size + missing(&current).map_or(0, size_of_model) > budget {
            split
                .messages
                .push(std::mem::replace(&mut current, empty(Vec::new())));
            size = base;
        }
        if let Some(model) = missing(&current) {
            size += size_of_model(model);
            current.models.push(model.clone());
        }
        size += device_size;
        current.devices.push(device);
    }
    if !current.devices.is_empty() || !current.removed.is_empty() {
        split.messages.push(current);
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Arc<DeviceModel> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "DeviceModel",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {}
            }))
            .expect("model"),
        )
    }

    #[test]
    fn lists_the_models_the_devices_use_and_strips_status_and_resource_version() {
        let mut device: Device = serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "a", "namespace": "default", "generation": 3, "resourceVersion": "17"},
            "spec": {"deviceModelRef": {"name": "lamp"}, "nodeName": "n1"},
            "status": {"state": "online"}
        }))
        .expect("device");
        let models: BTreeMap<DeviceRef, Arc<DeviceModel>> = ["lamp", "fan"]
            .into_iter()
            .map(|n| {
                (
                    DeviceRef {
                        namespace: "default".into(),
                        name: n.into(),
                    },
                    model(n),
                )
            })
            .collect();
        let content = membership_content([&device], &models, Vec::new());
        assert_eq!(content.models.len(), 1);
        assert_eq!(content.models[0].name(), "lamp");
        assert!(!content.complete);
        device.status = None;
        device.metadata.resource_version = None;
        assert_eq!(content.devices, [device]);
    }

    fn device_ref(name: &str) -> DeviceRef {
        DeviceRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn summary(applied: Option<u64>, devices: &[(&str, &str)]) -> SummaryContent {
        SummaryContent {
            applied,
            devices: devices
                .iter()
                .map(|(name, digest)| (format!("default/{name}"), (*digest).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_matching_summary_plans_nothing() {
        let (a, b) = (device_ref("a"), device_ref("b"));
        let assigned = [(&a, "d1".to_owned()), (&b, "d2".to_owned())];
        let plan = plan(
            &summary(Some(3), &[("a", "d1"), ("b", "d2")]),
            assigned,
            &HashMap::new(),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn drifted_and_missing_devices_are_resent_and_strangers_removed() {
        let (a, b, c) = (device_ref("a"), device_ref("b"), device_ref("c"));
        let assigned = [(&a, "d1".to_owned()), (&b, "d2".to_owned())];
        let mut summary = summary(None, &[("a", "old"), ("c", "d3")]);
        summary.devices.insert("no-slash".into(), "x".into());
        let plan = plan(
            &summary,
            assigned,
            // Without `applied` nothing counts as on its way.
            &HashMap::from([(a.clone(), 9), (c.clone(), 9)]),
        );
        assert_eq!(plan.resend, [a, b]);
        assert_eq!(plan.remove, [c]);
        assert_eq!(plan.in_flight, 0);
        assert_eq!(plan.malformed, ["no-slash"]);
    }

    #[test]
    fn updates_the_edge_had_not_applied_are_not_sent_again() {
        let (a, b, c) = (device_ref("a"), device_ref("b"), device_ref("c"));
        let assigned = [(&a, "new".to_owned()), (&b, "d2".to_owned())];
        let sent = HashMap::from([(a.clone(), 7), (b.clone(), 5), (c.clone(), 8)]);
        // a changed in message 7 and c was removed in message 8; the edge had applied through 6.
        let plan = plan(
            &summary(Some(6), &[("a", "old"), ("c", "d3")]),
            assigned,
            &sent,
        );
        assert_eq!(
            plan.resend,
            [b],
            "b was applied (5 <= 6) and is still missing"
        );
        assert!(plan.remove.is_empty());
        assert_eq!(plan.in_flight, 2);
    }

    #[test]
    fn an_update_larger_than_the_budget_is_split_with_each_device_and_its_model() {
        let device = |name: &str, model: &str, padding: usize| -> Device {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": name, "namespace": "default",
                             "annotations": {"pad": "p".repeat(padding)}},
                "spec": {"deviceModelRef": {"name": model}, "nodeName": "n1"}
            }))
            .expect("device")
        };
        let models: Vec<DeviceModel> = ["lamp", "fan"]
            .iter()
            .map(|name| model(name).as_ref().clone())
            .collect();
        let devices: Vec<Device> = (0..10)
            .map(|i| {
                device(
                    &format!("d{i}"),
                    if i % 2 == 0 { "lamp" } else { "fan" },
                    900,
                )
            })
            .chain([device("huge", "lamp", 5000)])
            .collect();
        let content = MembershipContent {
            models,
            devices,
            removed: vec![device_ref("gone")],
            complete: false,
        };
        let budget = 3000;
        let split = split_to_fit(content, budget);
        assert!(split.messages.len() > 1, "{}", split.messages.len());
        let mut names = Vec::new();
        for message in &split.messages {
            assert!(limits::json_size(message) <= budget);
            for device in &message.devices {
                let wanted = &device.spec.device_model_ref.as_ref().expect("ref").name;
                assert!(
                    message.models.iter().any(|m| m.name() == wanted),
                    "{} travels with its model",
                    device.name()
                );
                names.push(device.name().to_owned());
            }
        }
        let expected: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        assert_eq!(names, expected, "every device once, in order");
        assert_eq!(split.messages[0].removed, vec![device_ref("gone")]);
        assert!(split.messages[1..].iter().all(|m| m.removed.is_empty()));
        assert_eq!(split.too_large.len(), 1);
        assert_eq!(split.too_large[0].0, device_ref("huge"));
        assert!(split.too_large[0].1 > budget);
    }

    #[test]
    fn an_update_within_the_budget_stays_one_message() {
        let content = MembershipContent {
            removed: vec![device_ref("gone")],
            complete: true,
            ..MembershipContent::default()
        };
        let split = split_to_fit(content.clone(), 1024);
        assert_eq!(split.messages, vec![content]);
        assert!(split.too_large.is_empty());
    }
}
