//! KubeEdge's recorded DeviceTwin conversation (the traffic light of
//! `$EDGETWIN_KUBEEDGE_FIXTURES/mqtt/`, see its SOURCES.md), replayed against the running agent
//! over real MQTT on both brokers: for each request fixture, what the agent publishes equals the
//! matching edgecore fixture, timestamps and event ids aside. Where the agent deliberately differs
//! (docs/compatibility.md), the expectation is adjusted here and the adjustment names the entry.
//! Without the environment variable the tests print that they skip and pass.

mod support;

use std::path::{Path, PathBuf};

use edgetwin_core::edge::service::Membership;
use edgetwin_model::wire::codec::decode_value;
use edgetwin_model::wire::payload::DeviceTwinUpdate;
use edgetwin_testkit::{BrokerKind, TestClient};
use serde_json::{Value, json};
use support::*;

on_both_brokers!(kubeedge_conversation);

fn fixtures() -> Option<PathBuf> {
    edgetwin_testkit::fixtures::kubeedge_dir("mqtt", "kubeedge_conversation")
}

fn read(dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn raw(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The next message on `topic`, compared with `expected` without timestamps and event ids.
async fn expect(client: &mut TestClient, topic: &str, expected: Value, what: &str) {
    let got = client
        .recv_on(topic)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .json();
    assert_eq!(
        without_volatile(&got),
        without_volatile(&expected),
        "{what} on {topic}\n got: {got}\nwant: {expected}"
    );
}

async fn kubeedge_conversation(kind: BrokerKind) {
    let Some(dir) = fixtures() else { return };
    let mut edge = Edge::start_with(kind, false, |_| {}).await;
    let mut mapper = edge.client().await;
    let service = edge.agent.service().clone();

    // 1. The device joins the node (KubeEdge: membership from the cloud).
    let membership =
        edgetwin_core::edge::agent::read_devices_file(&fixture("edge-traffic-light.yaml"))
            .expect("the repo's traffic light loads");
    service.apply_membership(membership).await.expect("applies");
    let mut added = read(&dir, "node-membership-updated__added.json");
    // compatibility.md, agent #1: ids are `{namespace}/{name}` (KubeEdge ≥ 1.17).
    added["added_devices"][0]["id"] = json!(LIGHT);
    expect(
        &mut mapper,
        &node_topic("membership/updated"),
        added,
        "membership added",
    )
    .await;
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/document"),
        read(
            &dir,
            "device-twin-update-document__membership-add-last-null.json",
        ),
        "document of the new device",
    )
    .await;
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/delta"),
        read(
            &dir,
            "device-twin-update-delta__after-membership-add-no-actual.json",
        ),
        "delta of the new device",
    )
    .await;

    // 2. The mapper reports the lamps.
    mapper
        .publish(
            &device_topic(LIGHT, "twin/update"),
            raw(
                &dir,
                "device-twin-update__req__traffic-light-actual-only.json",
            ),
        )
        .await
        .expect("publishes");
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/result"),
        read(&dir, "device-twin-update-result__ok__actual-accepted.json"),
        "result of the report",
    )
    .await;
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/delta"),
        read(
            &dir,
            "device-twin-update-delta__after-mapper-report-one-mismatch.json",
        ),
        "delta after the report",
    )
    .await;
    // (edgecore records no document for this step; ours lists the three new readings.)
    let document = mapper
        .recv_on(&device_topic(LIGHT, "twin/update/document"))
        .await
        .expect("the report's document")
        .json();
    assert_eq!(
        document["twin"]["red"]["current"]["actual"]["value"], "ON",
        "{document}"
    );
    // The cloud-bound sync, per property, as edgecore's `twin/edge_updated` content.
    let sync = read(
        &dir,
        "beehive/edge-to-cloud__twin-edge_updated__actual-report.json",
    );
    let synced = service.outbox_peek(0, 100).await.expect("peeks");
    for entry in &synced {
        let property = entry.property.as_deref().expect("twin entries");
        let got: Value = serde_json::from_str(&entry.payload).expect("JSON");
        assert_eq!(
            without_volatile(&got),
            without_volatile(&sync["content"]["twin"][property]),
            "outbox entry of {property}"
        );
    }
    assert_eq!(
        synced.len(),
        sync["content"]["twin"].as_object().map_or(0, |m| m.len())
    );

    // 3. twin/get, membership/get.
    mapper
        .publish(
            &device_topic(LIGHT, "twin/get"),
            raw(
                &dir,
                "verbatim__node-membership-get__req__membership_test.json",
            ),
        )
        .await
        .expect("publishes");
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/get/result"),
        read(&dir, "device-twin-get-result__ok.json"),
        "get result",
    )
    .await;
    mapper
        .publish(
            &node_topic("membership/get"),
            raw(
                &dir,
                "verbatim__node-membership-get__req__membership_test.json",
            ),
        )
        .await
        .expect("publishes");
    let mut listed = read(&dir, "node-membership-get-result__ok.json");
    listed["devices"][0]["id"] = json!(LIGHT); // agent #1
    expect(
        &mut mapper,
        &node_topic("membership/get/result"),
        listed,
        "membership list",
    )
    .await;

    // 4. Device state, in every producer's shape.
    for request in [
        "device-state-update__req__led-raspberrypi.json",
        "device-state-update__req__mappers-go-OK.json",
        "device-state-update__req__dmi-reportdevicestates-converted-internal.json",
    ] {
        mapper
            .publish(&device_topic(LIGHT, "state/update"), raw(&dir, request))
            .await
            .expect("publishes");
        let got = mapper
            .recv_on(&device_topic(LIGHT, "state/update/result"))
            .await
            .expect("a state result")
            .json();
        let mut expected = read(&dir, "device-state-update-result__v1.15-shape.json");
        let sent = read(&dir, request);
        let state = sent
            .get("state")
            .or_else(|| sent.get("State"))
            .and_then(Value::as_str)
            .expect("a state");
        // agent #3: the state is stored and answered in lower case.
        expected["device"]["state"] = json!(state.to_ascii_lowercase());
        // agent #4: both spellings of the last-online time; its value is the time of the run.
        let device = expected["device"].as_object_mut().expect("device");
        device.remove("last_online");
        let mut got_device = got["device"].clone();
        let got_map = got_device.as_object_mut().expect("device");
        assert_eq!(
            got_map.remove("last_online"),
            got_map.remove("lastOnlineTime"),
            "{request}"
        );
        assert_eq!(
            without_volatile(&got_device),
            without_volatile(&expected["device"]),
            "{request}: {got}"
        );
    }

    // 5. Refusals.
    mapper
        .publish(
            &device_topic("no-such-device", "twin/get"),
            r#"{"event_id":"get-404"}"#,
        )
        .await
        .expect("publishes");
    expect(
        &mut mapper,
        &device_topic("no-such-device", "twin/get/result"),
        read(&dir, "device-twin-get-result__err404.json"),
        "get of an unknown device",
    )
    .await;
    mapper
        .publish(
            &device_topic("no-such-device", "twin/update"),
            r#"{"event_id":"ev-404","twin":{}}"#,
        )
        .await
        .expect("publishes");
    expect(
        &mut mapper,
        &device_topic("no-such-device", "twin/update/result"),
        read(
            &dir,
            "device-twin-update-result__err404__device-not-found.json",
        ),
        "update of an unknown device",
    )
    .await;
    mapper
        .publish(
            &device_topic(LIGHT, "twin/update"),
            r#"{"event_id":"bad-int","twin":{"count":{"actual":{"value":"abc"},"metadata":{"type":"int"}}}}"#,
        )
        .await
        .expect("publishes");
    let refused = mapper
        .recv_on(&device_topic(LIGHT, "twin/update/result"))
        .await
        .expect("a result")
        .json();
    let kubeedge = read(
        &dir,
        "device-twin-update-result__err400__value-not-int.json",
    );
    assert_eq!(refused["code"], kubeedge["code"]);
    // twin #5: edgecore's reason text, then the property and value.
    let reason = refused["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with(kubeedge["reason"].as_str().expect("a reason")),
        "{reason}"
    );

    // 6. The cloud changes a desired value.
    let content = read(&dir, "device-twin-cloud_updated__content-v1alpha2.json");
    let update: DeviceTwinUpdate = decode_value(&content).expect("decodes");
    let outcome = service
        .apply_cloud_update(light(), update)
        .await
        .expect("applies");
    assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
    let mut document = read(
        &dir,
        "device-twin-update-document__cloud-desired-change.json",
    );
    // twin #2: properties whose value did not change are not in the document.
    if let Some(twin) = document["twin"].as_object_mut() {
        twin.retain(|name, _| name == "green");
    }
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/document"),
        document,
        "document of the cloud change",
    )
    .await;
    expect(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/delta"),
        read(
            &dir,
            "device-twin-update-delta__after-cloud-desired-change.json",
        ),
        "delta after the cloud change",
    )
    .await;

    // 7. The device leaves the node.
    service
        .apply_membership(Membership {
            removed: vec![light()],
            ..Membership::default()
        })
        .await
        .expect("applies");
    let mut removed = read(&dir, "node-membership-updated__removed.json");
    removed["removed_devices"][0]["id"] = json!(LIGHT); // agent #1
    expect(
        &mut mapper,
        &node_topic("membership/updated"),
        removed,
        "membership removed",
    )
    .await;
}
