//! Builders for the engine's tests: requests in KubeEdge's shapes and a small device.

use crate::wire::payload::{
    Device, DeviceTwinUpdate, JsonField, Metadata, MsgTwin, TwinMap, TwinReply, TwinValue,
    TwinVersion as WireVersion,
};

use super::{DeviceTwin, Effects, TwinContext};

/// The time of every test operation unless a test says otherwise.
pub const NOW: i64 = 1_000;

/// A context at `now_ms` with the defaults.
pub fn ctx(now_ms: i64) -> TwinContext<'static> {
    TwinContext::new(now_ms).with_event_id("engine")
}

/// A wire twin value without metadata, as mappers send it.
pub fn value(value: &str) -> TwinValue {
    TwinValue {
        value: Some(value.to_owned()),
        metadata: None,
    }
}

/// A wire version.
pub fn wire_version(cloud: i64, edge: i64) -> WireVersion {
    WireVersion { cloud, edge }
}

/// An update with one entry per `(name, entry)`.
pub fn update(event_id: &str, entries: Vec<(&str, Option<MsgTwin>)>) -> DeviceTwinUpdate {
    let twin: TwinMap = entries
        .into_iter()
        .map(|(name, entry)| (name.to_owned(), entry))
        .collect();
    DeviceTwinUpdate {
        event_id: Some(event_id.to_owned()),
        timestamp: Some(0),
        twin: JsonField::Value(twin),
    }
}

/// An update with one entry per `(name, value)` pair, built by `entry`.
fn each(
    event_id: &str,
    pairs: &[(&str, &str)],
    entry: impl Fn(&str) -> MsgTwin,
) -> DeviceTwinUpdate {
    let entries = pairs
        .iter()
        .map(|(name, v)| (*name, Some(entry(v))))
        .collect();
    update(event_id, entries)
}

/// A mapper report of `actual` values, typed `Updated` like the KubeEdge examples.
pub fn report(pairs: &[(&str, &str)]) -> DeviceTwinUpdate {
    each("report", pairs, |v| MsgTwin {
        actual: Some(value(v)),
        metadata: Some(Metadata::of_type("Updated")),
        ..MsgTwin::default()
    })
}

/// A mapper (or local app) writing desired values on the edge.
pub fn edge_desire(pairs: &[(&str, &str)]) -> DeviceTwinUpdate {
    each("desire", pairs, |v| MsgTwin {
        expected: Some(value(v)),
        ..MsgTwin::default()
    })
}

/// A mapper deleting properties (`null`).
pub fn edge_delete(names: &[&str]) -> DeviceTwinUpdate {
    update("delete", names.iter().map(|name| (*name, None)).collect())
}

/// A cloud entry setting the desired value of a string property at version `{cloud, edge}`.
pub fn cloud_desired(v: &str, cloud: i64, edge: i64) -> MsgTwin {
    MsgTwin {
        expected: Some(value(v)),
        optional: Some(false),
        metadata: Some(Metadata::of_type("string")),
        expected_version: Some(wire_version(cloud, edge)),
        ..MsgTwin::default()
    }
}

/// A cloud entry deleting a property, judged by the desired version `{cloud, edge}`.
pub fn cloud_deleted(cloud: i64, edge: i64) -> MsgTwin {
    MsgTwin {
        metadata: Some(Metadata::of_type("deleted")),
        expected_version: Some(wire_version(cloud, edge)),
        ..MsgTwin::default()
    }
}

/// A cloud update of one property.
pub fn cloud(name: &str, entry: MsgTwin) -> DeviceTwinUpdate {
    update("cloud", vec![(name, Some(entry))])
}

/// A lamp with string properties `red`, `green` desired `OFF` by the cloud at `{cloud: 10, edge:
/// 0}`, not yet reported, and an optional int `count` without values.
pub fn lamp() -> DeviceTwin {
    let count = MsgTwin {
        optional: Some(true),
        metadata: Some(Metadata::of_type("int")),
        ..MsgTwin::default()
    };
    let device = Device {
        id: Some("lamp".into()),
        name: Some("lamp".into()),
        twin: Some(TwinMap::from([
            ("red".to_owned(), Some(cloud_desired("OFF", 10, 0))),
            ("green".to_owned(), Some(cloud_desired("OFF", 10, 0))),
            ("count".to_owned(), Some(count)),
        ])),
        ..Device::default()
    };
    let (twin, effects) = DeviceTwin::add_device(&ctx(NOW), &device);
    assert!(effects.rejections.is_empty(), "{:?}", effects.rejections);
    twin
}

/// The twin map of a successful result.
pub fn ok_twin(effects: &Effects) -> &TwinMap {
    match &effects.result {
        Some(TwinReply::Ok(result)) => result.twin.value().expect("a twin map"),
        other => panic!("expected a successful result, got {other:?}"),
    }
}

/// The `(code, reason)` of a failed result.
pub fn error_of(effects: &Effects) -> (i64, String) {
    match &effects.result {
        Some(TwinReply::Err(error)) => (
            error.code.expect("a code"),
            error.reason.clone().expect("a reason"),
        ),
        other => panic!("expected a failed result, got {other:?}"),
    }
}

/// The twin map of the cloud-bound sync.
pub fn sync_twin(effects: &Effects) -> &TwinMap {
    effects
        .sync
        .as_ref()
        .and_then(|sync| sync.twin.value())
        .expect("a cloud-bound sync")
}

/// The value the delta of `effects` asks `name` to take, if there is a delta entry for it.
pub fn delta_of<'a>(effects: &'a Effects, name: &str) -> Option<&'a str> {
    effects
        .delta
        .as_ref()
        .and_then(|delta| delta.delta.value())
        .and_then(|pending| pending.get(name))
        .map(String::as_str)
}
