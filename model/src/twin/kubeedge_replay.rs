//! Replays KubeEdge's recorded DeviceTwin conversation (the traffic-light device of
//! `$EDGETWIN_KUBEEDGE_FIXTURES/mqtt/`, see its SOURCES.md) through the engine and compares what
//! the engine emits with what edgecore emitted, ignoring timestamps and event ids. Where the
//! engine deliberately differs (docs/compatibility.md), the test states the difference.
//! Without the environment variable each test prints that it skips and passes.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::wire::codec::decode_value;
use crate::wire::decode;
use crate::wire::payload::{BaseMessage, Device, DeviceTwinUpdate, MembershipUpdate, TwinReply};

use super::testkit::{NOW, ctx, edge_desire, report};
use super::{ConflictPolicy, DeviceTwin, Effects, TwinError, get_device_not_found};

/// `$EDGETWIN_KUBEEDGE_FIXTURES/mqtt`, or `None` after saying that the test skips.
fn fixtures() -> Option<PathBuf> {
    edgetwin_testkit::fixtures::kubeedge_dir("mqtt", "kubeedge_replay")
}

fn read(dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture decoded as the wire type it is (Go's key rules).
fn load<T: DeserializeOwned>(dir: &Path, name: &str) -> T {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `content` of a beehive fixture, decoded.
fn content<T: DeserializeOwned>(dir: &Path, name: &str) -> T {
    let envelope = read(dir, &format!("beehive/{name}"));
    decode_value(&envelope["content"]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The JSON without `timestamp` and `event_id` keys, at any depth.
fn without_times_and_ids(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("timestamp");
                map.remove("event_id");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// Asserts that what the engine emitted equals the fixture, timestamps and event ids aside.
fn assert_emits<T: Serialize>(ours: Option<&T>, dir: &Path, fixture: &str) {
    let ours =
        serde_json::to_value(ours.unwrap_or_else(|| panic!("nothing emitted for {fixture}")))
            .expect("serialises");
    let expected = fixture_value(dir, fixture);
    assert_eq!(
        without_times_and_ids(ours),
        without_times_and_ids(expected),
        "{fixture}"
    );
}

/// A fixture's JSON; for a beehive message, its content.
fn fixture_value(dir: &Path, fixture: &str) -> Value {
    let value = read(dir, fixture);
    if fixture.starts_with("beehive/") {
        value["content"].clone()
    } else {
        value
    }
}

/// The traffic light after membership: red, yellow, green desired `OFF` at cloud revision
/// 123456, nothing reported.
fn traffic_light(dir: &Path) -> (DeviceTwin, Effects) {
    let membership: MembershipUpdate =
        content(dir, "cloud-to-edge__membership-update-add__v1alpha2.json");
    let device: &Device = &membership.added_devices.value().expect("added")[0];
    DeviceTwin::add_device(&ctx(NOW), device)
}

/// The traffic light after the mapper reported red ON, yellow and green OFF.
fn reported_traffic_light(dir: &Path) -> (DeviceTwin, Effects) {
    let (mut twin, _) = traffic_light(dir);
    let request: DeviceTwinUpdate = load(
        dir,
        "device-twin-update__req__traffic-light-actual-only.json",
    );
    let effects = twin.edge_update(&ctx(NOW), &request);
    (twin, effects)
}

/// The traffic light after the cloud's revision 123789 (green ON).
fn cloud_changed_traffic_light(dir: &Path) -> (DeviceTwin, Effects) {
    let (mut twin, _) = reported_traffic_light(dir);
    let update: DeviceTwinUpdate = load(dir, "device-twin-cloud_updated__content-v1alpha2.json");
    let effects = twin.cloud_update(&ctx(NOW), &update);
    (twin, effects)
}

#[test]
fn membership_add_emits_kubeedges_document_delta_and_membership() {
    let Some(dir) = fixtures() else { return };
    let (_, effects) = traffic_light(&dir);
    assert_emits(
        effects.document.as_ref(),
        &dir,
        "device-twin-update-document__membership-add-last-null.json",
    );
    assert_emits(
        effects.delta.as_ref(),
        &dir,
        "device-twin-update-delta__after-membership-add-no-actual.json",
    );
    assert_emits(
        effects.membership.as_ref(),
        &dir,
        "node-membership-updated__added.json",
    );
    assert_eq!(effects.sync, None);
}

#[test]
fn a_mapper_report_emits_kubeedges_result_delta_and_sync() {
    let Some(dir) = fixtures() else { return };
    let (_, effects) = reported_traffic_light(&dir);
    assert_emits(
        effects.result.as_ref(),
        &dir,
        "device-twin-update-result__ok__actual-accepted.json",
    );
    assert_emits(
        effects.delta.as_ref(),
        &dir,
        "device-twin-update-delta__after-mapper-report-one-mismatch.json",
    );
    assert_emits(
        effects.sync.as_ref(),
        &dir,
        "beehive/edge-to-cloud__twin-edge_updated__actual-report.json",
    );
}

#[test]
fn get_answers_like_kubeedge() {
    let Some(dir) = fixtures() else { return };
    let (twin, _) = reported_traffic_light(&dir);
    let request: BaseMessage = load(
        &dir,
        "verbatim__node-membership-get__req__membership_test.json",
    );
    let result = TwinReply::Ok(twin.get(&ctx(NOW), &request));
    assert_emits(Some(&result), &dir, "device-twin-get-result__ok.json");
}

#[test]
fn a_cloud_revision_emits_kubeedges_delta_and_the_changed_part_of_its_document() {
    let Some(dir) = fixtures() else { return };
    let (_, effects) = cloud_changed_traffic_light(&dir);
    assert_emits(
        effects.delta.as_ref(),
        &dir,
        "device-twin-update-delta__after-cloud-desired-change.json",
    );
    // Difference (rule 1): edgecore re-stamps red and yellow, whose desired value stayed OFF,
    // and lists them in the document; the engine lists only green, which changed.
    let expected = fixture_value(
        &dir,
        "device-twin-update-document__cloud-desired-change.json",
    );
    let ours = serde_json::to_value(effects.document.as_ref().expect("document")).expect("json");
    let ours = without_times_and_ids(ours);
    let expected = without_times_and_ids(expected);
    let names: Vec<&String> = ours["twin"].as_object().expect("twin").keys().collect();
    assert_eq!(names, ["green"]);
    assert_eq!(ours["twin"]["green"], expected["twin"]["green"]);
    assert!(effects.sync.is_none() && effects.rejections.is_empty());
}

#[test]
fn a_crossing_cloud_write_is_refused_with_kubeedges_sync_under_both_policies() {
    let Some(dir) = fixtures() else { return };
    for policy in [ConflictPolicy::CloudWins, ConflictPolicy::EdgeWins] {
        let (mut twin, _) = cloud_changed_traffic_light(&dir);
        twin.edge_update(&ctx(NOW), &edge_desire(&[("yellow", "ON")]));
        // The cloud resends revision 123789 without knowing the edge's write.
        let update: DeviceTwinUpdate =
            load(&dir, "device-twin-cloud_updated__content-v1alpha2.json");
        let mut yellow_only = update.clone();
        if let Some(twins) = yellow_only.twin.value_mut() {
            twins.retain(|name, _| name == "yellow");
        }
        let effects = twin.cloud_update(&ctx(NOW).with_policy(policy), &yellow_only);
        assert_eq!(effects.rejections.len(), 1, "{policy:?}");
        assert_emits(
            effects.sync.as_ref(),
            &dir,
            "beehive/edge-to-cloud__twin-edge_updated__conflict-rejects-cloud.json",
        );
    }
}

#[test]
fn an_unchanged_half_is_not_resynced_unlike_kubeedge() {
    let Some(dir) = fixtures() else { return };
    let (mut twin, _) = cloud_changed_traffic_light(&dir);
    // A DMI-style report: red desired OFF (unchanged) and reported OFF (changed from ON).
    let request: DeviceTwinUpdate = load(
        &dir,
        "device-twin-update__req__dmi-reportdevicestatus-converted-internal.json",
    );
    let effects = twin.edge_update(&ctx(NOW), &request);
    // edgecore bumps the unchanged desired half too (expected_version edge 0 → 1); the engine
    // syncs only the reported half, whose version matches edgecore's.
    let mut expected = fixture_value(
        &dir,
        "beehive/edge-to-cloud__twin-edge_updated__dmi-report.json",
    );
    let red = expected["twin"]["red"].as_object_mut().expect("red");
    red.remove("expected");
    red.remove("expected_version");
    let ours = serde_json::to_value(effects.sync.as_ref().expect("sync")).expect("json");
    assert_eq!(without_times_and_ids(ours), without_times_and_ids(expected));
}

#[test]
fn a_resent_report_bumps_nothing_unlike_kubeedge() {
    let Some(dir) = fixtures() else { return };
    let (mut twin, _) = reported_traffic_light(&dir);
    let first = twin.edge_update(&ctx(NOW), &report(&[("green", "ON")]));
    let again = twin.edge_update(&ctx(NOW), &report(&[("green", "ON")]));
    // edgecore syncs the resent value again with actual_version.edge 3; the engine sends
    // nothing the second time, and its one sync is edgecore's with edge counter 2.
    assert_eq!(again.sync, None);
    assert_eq!(again.delta, None);
    let mut expected = fixture_value(
        &dir,
        "beehive/edge-to-cloud__twin-edge_updated__same-value-resent-bumps-version.json",
    );
    expected["twin"]["green"]["actual_version"]["edge"] = Value::from(2);
    let ours = serde_json::to_value(first.sync.as_ref().expect("sync")).expect("json");
    assert_eq!(without_times_and_ids(ours), without_times_and_ids(expected));
}

#[test]
fn deleting_an_optional_twin_emits_kubeedges_result_document_and_sync() {
    let Some(dir) = fixtures() else { return };
    let (mut twin, _) = reported_traffic_light(&dir);
    let count: DeviceTwinUpdate = decode(
        br#"{"event_id":"","twin":{"count":{"actual":{"value":"5"},"metadata":{"type":"int"}}}}"#,
    )
    .expect("decodes");
    twin.edge_update(&ctx(NOW), &count);
    let delete: DeviceTwinUpdate =
        decode(br#"{"event_id":"del-1","twin":{"count":null}}"#).expect("decodes");
    let effects = twin.edge_update(&ctx(NOW), &delete);
    assert_emits(
        effects.result.as_ref(),
        &dir,
        "device-twin-update-result__ok__optional-twin-deleted-null.json",
    );
    assert_emits(
        effects.document.as_ref(),
        &dir,
        "device-twin-update-document__twin-deleted-current-null.json",
    );
    assert_emits(
        effects.sync.as_ref(),
        &dir,
        "beehive/edge-to-cloud__twin-edge_updated__twin-deleted.json",
    );
}

/// The `(code, reason)` of a fixture's error result.
fn fixture_error(dir: &Path, name: &str) -> (i64, String) {
    let value = read(dir, name);
    let code = value["code"].as_i64().expect("code");
    let reason = value["reason"].as_str().expect("reason").to_owned();
    (code, reason)
}

fn error_of(effects: &Effects) -> (i64, String) {
    match &effects.result {
        Some(TwinReply::Err(error)) => (
            error.code.expect("code"),
            error.reason.clone().expect("reason"),
        ),
        other => panic!("expected an error result, got {other:?}"),
    }
}

#[test]
fn refusals_carry_kubeedges_code_and_reason_text() {
    let Some(dir) = fixtures() else { return };
    let (mut twin, _) = reported_traffic_light(&dir);
    let count: DeviceTwinUpdate =
        decode(br#"{"twin":{"count":{"actual":{"value":"1"},"metadata":{"type":"int"}}}}"#)
            .expect("decodes");
    twin.edge_update(&ctx(NOW), &count);

    let not_int: DeviceTwinUpdate =
        decode(br#"{"event_id":"bad-int","twin":{"count":{"actual":{"value":"abc"}}}}"#)
            .expect("decodes");
    let (code, reason) = error_of(&twin.edge_update(&ctx(NOW), &not_int));
    let (kube_code, kube_reason) = fixture_error(
        &dir,
        "device-twin-update-result__err400__value-not-int.json",
    );
    assert_eq!(code, kube_code);
    assert!(reason.starts_with(&kube_reason), "{reason}");

    let updated: DeviceTwinUpdate = decode(
        br#"{"event_id":"new-updated","twin":{"newtwin":{"actual":{"value":"1"},"metadata":{"type":"Updated"}}}}"#,
    )
    .expect("decodes");
    let (code, reason) = error_of(&twin.edge_update(&ctx(NOW), &updated));
    let (kube_code, kube_reason) = fixture_error(
        &dir,
        "device-twin-update-result__err400__new-twin-type-Updated-not-allowed.json",
    );
    assert_eq!(code, kube_code);
    assert!(reason.starts_with(&kube_reason), "{reason}");

    let not_found = TwinError::DeviceNotFound.to_result(&BaseMessage::default(), NOW);
    assert_eq!(
        (
            not_found.code.expect("code"),
            not_found.reason.expect("reason")
        ),
        fixture_error(
            &dir,
            "device-twin-update-result__err404__device-not-found.json"
        )
    );
    let get_not_found = get_device_not_found("no-such-device", &BaseMessage::default(), NOW);
    assert_eq!(
        (
            get_not_found.code.expect("code"),
            get_not_found.reason.expect("reason")
        ),
        fixture_error(&dir, "device-twin-get-result__err404.json")
    );
}

#[test]
fn values_outside_kubeedges_charset_are_accepted() {
    let Some(dir) = fixtures() else { return };
    let (code, _) = fixture_error(
        &dir,
        "device-twin-update-result__err400__invalid-value-charset.json",
    );
    assert_eq!(code, 400, "edgecore refuses a value with a space");
    let (mut twin, _) = reported_traffic_light(&dir);
    let effects = twin.edge_update(&ctx(NOW), &report(&[("red", "not valid")]));
    assert!(matches!(effects.result, Some(TwinReply::Ok(_))));
}

#[test]
fn a_mappers_go_typed_report_creates_a_float_twin() {
    let Some(dir) = fixtures() else { return };
    let request: DeviceTwinUpdate = load(
        &dir,
        "device-twin-update__req__mappers-go-actual-with-type.json",
    );
    let mut twin = DeviceTwin::new();
    let effects = twin.edge_update(&ctx(NOW), &request);
    assert!(matches!(effects.result, Some(TwinReply::Ok(_))));
    assert_eq!(
        twin.property("temperature").map(|t| t.value_type),
        Some(crate::value::PropertyType::Float)
    );
}

#[test]
fn a_removed_device_is_announced_like_kubeedge() {
    let Some(dir) = fixtures() else { return };
    let effects = DeviceTwin::remove_device(&ctx(NOW), "traffic-light-instance-01");
    assert_emits(
        effects.membership.as_ref(),
        &dir,
        "node-membership-updated__removed.json",
    );
}
