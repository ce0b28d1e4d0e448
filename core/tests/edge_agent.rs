//! The edge agent's behaviour over real MQTT, against the embedded rumqttd and a mosquitto child
//! process: every request topic in both id forms, commit before answer, membership, retained
//! specs, the refused `twin/cloud_updated`, the outbox, restarts from the store and the metrics.

mod support;

use std::time::Duration;

use edgetwin_core::edge::service::{Membership, MembershipOutcome};
use edgetwin_core::edge::store::OutboxKind;
use edgetwin_model::twin::PropertyTwin;
use edgetwin_testkit::{BrokerKind, TestClient, sensor_fleet_yaml};
use serde_json::json;
use support::*;

on_both_brokers!(
    a_report_is_committed_before_its_result_and_followed_by_document_and_delta,
    twin_get_answers_the_whole_twin_in_the_form_it_was_asked,
    state_updates_accept_kubeedge_states_in_any_case,
    membership_get_lists_the_devices,
    membership_changes_are_announced_and_specs_are_retained,
    cloud_updated_over_mqtt_changes_nothing,
    reports_queue_coalesced_outbox_entries_for_the_cloud,
    a_restarted_agent_serves_every_twin_from_its_store,
    metrics_and_health_are_served_on_loopback,
    a_full_outbox_refuses_new_properties_with_503_and_applies_nothing,
    deltas_follow_the_id_form_the_mapper_uses,
    only_a_changed_device_state_is_queued_for_the_cloud,
    a_write_error_reaches_the_outbox_without_changing_the_twin,
    accepted_desired_values_are_echoed_and_the_version_summary_is_queued,
    a_node_with_a_hundred_devices_serves_a_burst_of_reports_right_after_start,
);

/// Regression test for a deadlock with the embedded rumqttd: the agent answers a burst of
/// reports with three QoS 1 publishes each while it holds the broker's publishes unacknowledged
/// until their commit. When the broker's window towards the agent was full, rumqttd held back the
/// PUBACKs (and PINGRESPs) it owed the agent, the agent's own window filled up behind them, and
/// its acknowledgements queued behind its publishes: nothing moved until the keep-alive expired.
async fn a_node_with_a_hundred_devices_serves_a_burst_of_reports_right_after_start(
    kind: BrokerKind,
) {
    const DEVICES: usize = 100;
    const PROPERTIES: usize = 10;
    const BURST: usize = 600;
    let files = tempfile::tempdir().expect("temp dir");
    let devices_file = files.path().join("devices.yaml");
    std::fs::write(&devices_file, sensor_fleet_yaml(NODE, DEVICES, PROPERTIES))
        .expect("devices file");

    let edge = Edge::start_with_devices(kind, devices_file).await;
    assert_eq!(
        edge.agent.devices_outcome().map(|o| o.added.len()),
        Some(DEVICES),
        "{kind}"
    );
    let mut mapper = TestClient::connect(edge.broker_addr(), "burst")
        .await
        .expect("connects");
    mapper
        .subscribe("$hw/events/device/+/+/twin/+/result")
        .await
        .expect("subscribes");
    let last = format!("default/dev-{}", DEVICES - 1);
    let got = request(
        &mut mapper,
        &device_topic(&last, "twin/get"),
        r#"{"event_id":"g1"}"#,
        &device_topic(&last, "twin/get/result"),
    )
    .await;
    assert_eq!(got["twin"]["p9"]["expected"]["value"], "0", "{kind}: {got}");

    // Many reports outstanding at once, as a fleet of mappers sends them.
    for n in 0..BURST {
        let device = format!("default/dev-{}", n % DEVICES);
        let property = (n / DEVICES) % PROPERTIES;
        let report = format!(
            r#"{{"event_id":"u{n}","twin":{{"p{property}":{{"actual":{{"value":"{n}"}}}}}}}}"#
        );
        mapper
            .publish_nowait(
                &device_topic(&device, "twin/update"),
                rumqttc::QoS::AtLeastOnce,
                report,
            )
            .await
            .expect("publishes");
    }
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < BURST {
        let result = mapper.recv().await.unwrap_or_else(|error| {
            panic!(
                "{kind}: {} of {BURST} reports answered: {error}",
                answered.len()
            )
        });
        let result = result.json();
        assert_eq!(result["code"], serde_json::Value::Null, "{kind}: {result}");
        answered.insert(result["event_id"].as_str().unwrap_or_default().to_owned());
    }
    let stored: PropertyTwin = edge
        .store()
        .twin(
            &edgetwin_core::edge::store::DeviceKey::new("default", "dev-99"),
            "p5",
        )
        .expect("reads")
        .expect("p5 is stored");
    assert_eq!(
        stored.reported.map(|half| half.value).as_deref(),
        Some("599")
    );
}

async fn a_report_is_committed_before_its_result_and_followed_by_document_and_delta(
    kind: BrokerKind,
) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let report = r#"{"event_id":"r1","timestamp":0,"twin":{"red":{"actual":{"value":"ON"},"metadata":{"type":"Updated"}}}}"#;
    let result = request(
        &mut mapper,
        &device_topic(LIGHT, "twin/update"),
        report,
        &device_topic(LIGHT, "twin/update/result"),
    )
    .await;
    assert_eq!(result["event_id"], "r1", "{kind}: {result}");
    assert_eq!(
        result["twin"]["red"]["actual"]["value"], "ON",
        "{kind}: {result}"
    );
    // The result was published after the commit: the value is in the file now.
    let stored: PropertyTwin = edge
        .store()
        .twin(&light(), "red")
        .expect("reads")
        .expect("red is stored");
    assert_eq!(
        stored.reported.map(|half| half.value).as_deref(),
        Some("ON")
    );

    // The document and delta the agent published for its devices file at start can reach the
    // broker after this client subscribed: skip them (the report's document answers "r1", its
    // delta holds red's reported value).
    let document = next_json_where(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/document"),
        |document| document["event_id"] == "r1",
    )
    .await;
    assert_eq!(
        document["twin"]["red"]["current"]["actual"]["value"], "ON",
        "{document}"
    );
    assert_eq!(
        document["twin"]["red"]["last"]["expected"]["value"], "OFF",
        "{document}"
    );
    let delta = next_json_where(
        &mut mapper,
        &device_topic(LIGHT, "twin/update/delta"),
        |delta| delta["twin"]["red"]["actual"]["value"] == "ON",
    )
    .await;
    // Red reports ON against OFF; yellow and green have no report yet: all three differ.
    assert_eq!(
        delta["delta"],
        json!({"red": "OFF", "yellow": "OFF", "green": "OFF"}),
        "{kind}: {delta}"
    );
}

/// The next JSON message on `topic` for which `wanted` holds (earlier ones are dropped).
async fn next_json_where(
    client: &mut TestClient,
    topic: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let message = client.recv_on(topic).await.expect("a message").json();
        if wanted(&message) {
            return message;
        }
    }
}

async fn twin_get_answers_the_whole_twin_in_the_form_it_was_asked(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    for id in [LIGHT, LIGHT_NAME] {
        let result = twin_get(&mut mapper, id).await;
        assert_eq!(result["event_id"], "g");
        let twin = result["twin"].as_object().expect("a twin map");
        assert_eq!(
            twin.keys().map(String::as_str).collect::<Vec<_>>(),
            ["green", "red", "yellow"],
            "{kind} {id}: {result}"
        );
        assert_eq!(twin["red"]["expected"]["value"], "OFF");
        assert_eq!(twin["red"]["metadata"]["type"], "string");
    }
}

async fn state_updates_accept_kubeedge_states_in_any_case(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let topic = device_topic(LIGHT, "state/update");
    let reply = device_topic(LIGHT, "state/update/result");
    for state in [
        "online",
        "OFFLINE",
        "Ok",
        "unknown",
        "UnHealthy",
        "disconnected",
        "ONLINE",
    ] {
        let payload = format!(r#"{{"event_id":"s","state":"{state}"}}"#);
        let result = request(&mut mapper, &topic, &payload, &reply).await;
        assert_eq!(
            result["device"]["state"],
            state.to_ascii_lowercase(),
            "{kind}: {result}"
        );
        assert_eq!(result["device"]["name"], "traffic-light-instance-01");
    }
    let (state, last_online) = edge
        .agent
        .service()
        .device_state(light())
        .await
        .expect("service runs")
        .expect("device exists");
    assert_eq!(state.as_deref(), Some("online"));
    assert!(last_online.is_some_and(|t| t.ends_with('Z')));
}

async fn membership_get_lists_the_devices(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let result = request(
        &mut mapper,
        &node_topic("membership/get"),
        r#"{"event_id":"m"}"#,
        &node_topic("membership/get/result"),
    )
    .await;
    assert_eq!(
        without_volatile(&result),
        json!({"devices": [{"id": LIGHT, "name": LIGHT_NAME, "description": "Light"}]}),
        "{kind}"
    );
}

async fn membership_changes_are_announced_and_specs_are_retained(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let spec_topic =
        format!("edgetwin/v1/node/{NODE}/device/default/traffic-light-instance-01/spec");
    // Once the broker has the spec (a first client saw it), a mapper that connects later still
    // finds it: it is retained. (The first client may have subscribed before the agent's publish
    // arrived at the broker and got it live.)
    let mut early = edge.client().await;
    early.recv_on(&spec_topic).await.expect("the spec");
    let mut late = edge.client().await;
    let spec = late.recv_on(&spec_topic).await.expect("the retained spec");
    assert!(spec.retain, "{kind}: delivered as retained");
    let spec = spec.json();
    assert_eq!(spec["device"]["metadata"]["name"], LIGHT_NAME);
    assert_eq!(spec["model"]["metadata"]["name"], "traffic-light");
    assert_eq!(spec["model"]["spec"]["properties"][3]["type"], "INT");

    let outcome = edge
        .agent
        .service()
        .apply_membership(Membership {
            removed: vec![light()],
            ..Membership::default()
        })
        .await
        .expect("applies");
    assert_eq!(outcome.removed, vec![light()]);
    let removed = late
        .recv_on(&node_topic("membership/updated"))
        .await
        .expect("membership/updated")
        .json();
    assert_eq!(
        without_volatile(&removed),
        json!({"added_devices": null, "removed_devices": [{"id": LIGHT}]}),
        "{kind}"
    );
    let cleared = late.recv_on(&spec_topic).await.expect("the cleared spec");
    assert!(
        cleared.payload.is_empty(),
        "{kind}: an empty retained payload removes the spec"
    );
    let gone = twin_get(&mut late, LIGHT).await;
    assert_eq!(gone["code"], 404, "{kind}: {gone}");

    let membership =
        edgetwin_core::edge::agent::read_devices_file(&fixture("edge-traffic-light.yaml"))
            .expect("loads");
    edge.agent
        .service()
        .apply_membership(membership)
        .await
        .expect("applies");
    let added = late
        .recv_on(&node_topic("membership/updated"))
        .await
        .expect("membership/updated")
        .json();
    assert_eq!(added["added_devices"][0]["id"], LIGHT, "{kind}: {added}");
    assert_eq!(
        added["added_devices"][0]["twin"]["red"]["expected"]["value"],
        "OFF"
    );

    // The same membership again (e.g. the cloud resends it after a reconnection) changes nothing.
    let membership =
        edgetwin_core::edge::agent::read_devices_file(&fixture("edge-traffic-light.yaml"))
            .expect("loads");
    let again = edge
        .agent
        .service()
        .apply_membership(membership)
        .await
        .expect("applies");
    assert_eq!(again, MembershipOutcome::default(), "{kind}");
}

async fn cloud_updated_over_mqtt_changes_nothing(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut intruder = edge.client().await;
    let forged = r#"{"event_id":"x","twin":{"red":{"expected":{"value":"ON"},"expected_version":{"cloud":999999,"edge":0}}}}"#;
    intruder
        .publish(&device_topic(LIGHT, "twin/cloud_updated"), forged)
        .await
        .expect("publishes");
    // Messages from one client are handled in order: the get sees the state after the forgery.
    let twin = twin_get(&mut intruder, LIGHT).await;
    assert_eq!(
        twin["twin"]["red"]["expected"]["value"], "OFF",
        "{kind}: {twin}"
    );
    assert_eq!(
        edge.agent
            .metrics()
            .rejects(edgetwin_core::edge::metrics::Reject::ForgedCloudUpdate),
        1
    );
}

async fn reports_queue_coalesced_outbox_entries_for_the_cloud(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    for value in ["1", "2", "3"] {
        let report = format!(
            r#"{{"event_id":"c{value}","twin":{{"count":{{"actual":{{"value":"{value}"}},"metadata":{{"type":"int"}}}}}}}}"#
        );
        let result = request(
            &mut mapper,
            &device_topic(LIGHT, "twin/update"),
            &report,
            &device_topic(LIGHT, "twin/update/result"),
        )
        .await;
        assert!(result.get("code").is_none(), "{kind}: {result}");
    }
    let service = edge.agent.service();
    let entries = service.outbox_peek(0, 100).await.expect("peeks");
    let count: Vec<_> = entries
        .iter()
        .filter(|e| e.property.as_deref() == Some("count"))
        .collect();
    assert_eq!(
        count.len(),
        1,
        "{kind}: coalesced per property: {entries:?}"
    );
    assert_eq!(count[0].kind, OutboxKind::Twin);
    let payload: serde_json::Value = serde_json::from_str(&count[0].payload).expect("JSON");
    assert_eq!(payload["actual"]["value"], "3", "{payload}");
    assert_eq!(payload["actual_version"]["edge"], 3, "{payload}");
    let last = entries.iter().map(|e| e.seq).max().expect("entries");
    assert_eq!(
        service.outbox_ack(last).await.expect("acks"),
        entries.len() as u64
    );
    assert!(service.outbox_peek(0, 100).await.expect("peeks").is_empty());
}

async fn a_write_error_reaches_the_outbox_without_changing_the_twin(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let service = edge.agent.service();
    let report = r#"{"event_id":"w1","twin":{"green":{"actual":{"value":"OFF"},"metadata":{"type":"string"}}}}"#;
    let refusal = r#"{"event_id":"w2","twin":{"green":{"actual":{"value":"OFF"},"metadata":{"type":"string"},"write_error":{"value":"ON","reason":"red is ON"}}}}"#;
    for payload in [report, refusal] {
        let result = request(
            &mut mapper,
            &device_topic(LIGHT, "twin/update"),
            payload,
            &device_topic(LIGHT, "twin/update/result"),
        )
        .await;
        assert!(result.get("code").is_none(), "{kind}: {result}");
        if payload == report {
            // The cloud took the report: only the refusal is left to send.
            let entries = service.outbox_peek(0, 100).await.expect("peeks");
            let last = entries.iter().map(|e| e.seq).max().expect("entries");
            service.outbox_ack(last).await.expect("acks");
        }
    }
    let entries = service.outbox_peek(0, 100).await.expect("peeks");
    let green: Vec<_> = entries
        .iter()
        .filter(|e| e.property.as_deref() == Some("green"))
        .collect();
    assert_eq!(green.len(), 1, "{kind}: {entries:?}");
    let payload: serde_json::Value = serde_json::from_str(&green[0].payload).expect("JSON");
    assert_eq!(
        payload["write_error"],
        json!({"value": "ON", "reason": "red is ON"}),
        "{kind}: {payload}"
    );
    // An event, not state: the twin the mapper gets back has no trace of it.
    let twin = twin_get(&mut mapper, LIGHT).await;
    assert_eq!(twin["twin"]["green"]["actual"]["value"], "OFF", "{twin}");
    assert!(twin["twin"]["green"].get("write_error").is_none(), "{twin}");
}

async fn a_restarted_agent_serves_every_twin_from_its_store(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    request(
        &mut mapper,
        &device_topic(LIGHT, "twin/update"),
        r#"{"event_id":"r","twin":{"green":{"actual":{"value":"ON"}}}}"#,
        &device_topic(LIGHT, "twin/update/result"),
    )
    .await;
    drop(mapper);
    let mut edge = edge.restart().await;
    let mut mapper = edge.client().await;
    let twin = twin_get(&mut mapper, LIGHT).await;
    assert_eq!(
        twin["twin"]["green"]["actual"]["value"], "ON",
        "{kind}: {twin}"
    );
    assert_eq!(
        twin["twin"]["green"]["expected"]["value"], "OFF",
        "{kind}: {twin}"
    );
}

async fn metrics_and_health_are_served_on_loopback(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    twin_get(&mut mapper, LIGHT).await;
    let addr = edge.agent.http_addr().expect("http is on");
    assert!(addr.ip().is_loopback());
    let ready = http_get(addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{kind}: {ready}");
    let expected = [
        "edgetwin_messages_in_total{kind=\"twin_get\"} 1",
        "edgetwin_messages_out_total{kind=\"get_result\"} 1",
        "edgetwin_devices 1",
        "edgetwin_broker_connected 1",
    ];
    // The agent counts a message out once the bus took it, which can be just after the mapper
    // already received it: poll until the counters catch up (or give up after 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = http_get(addr, "/metrics").await;
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|line| !metrics.contains(line))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind}: missing {missing:?} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
        .await
        .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    response
}

async fn a_full_outbox_refuses_new_properties_with_503_and_applies_nothing(kind: BrokerKind) {
    let mut edge = Edge::start_with(kind, true, |config| config.store.outbox_capacity = 1).await;
    // The cloud takes the echo of the devices file's desired values (the one entry there is
    // room for): the outbox starts empty.
    let service = edge.agent.service().clone();
    let echo = service.outbox_peek(0, 10).await.expect("peeks");
    assert_eq!(echo.len(), 1, "{kind}: {echo:?}");
    service.outbox_ack(echo[0].seq).await.expect("acks");
    let mut mapper = edge.client().await;
    let update = device_topic(LIGHT, "twin/update");
    let reply = device_topic(LIGHT, "twin/update/result");
    let first = request(
        &mut mapper,
        &update,
        r#"{"event_id":"1","twin":{"red":{"actual":{"value":"ON"}}}}"#,
        &reply,
    )
    .await;
    assert!(first.get("code").is_none(), "{kind}: {first}");
    // A newer value of the same property coalesces: still one entry.
    let again = request(
        &mut mapper,
        &update,
        r#"{"event_id":"2","twin":{"red":{"actual":{"value":"OFF"}}}}"#,
        &reply,
    )
    .await;
    assert!(again.get("code").is_none(), "{kind}: {again}");
    let refused = request(
        &mut mapper,
        &update,
        r#"{"event_id":"3","twin":{"green":{"actual":{"value":"ON"}}}}"#,
        &reply,
    )
    .await;
    assert_eq!(refused["code"], 503, "{kind}: {refused}");
    assert_eq!(refused["event_id"], "3");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("outbox is full")),
        "{refused}"
    );
    let twin = twin_get(&mut mapper, LIGHT).await;
    assert!(
        twin["twin"]["green"].get("actual").is_none(),
        "{kind}: not applied: {twin}"
    );
    assert_eq!(twin["twin"]["red"]["actual"]["value"], "OFF");
    // Once the cloud drains the outbox, the report goes through.
    let last = service
        .outbox_peek(0, 10)
        .await
        .expect("peeks")
        .last()
        .map(|e| e.seq)
        .expect("one entry");
    service.outbox_ack(last).await.expect("acks");
    let accepted = request(
        &mut mapper,
        &update,
        r#"{"event_id":"4","twin":{"green":{"actual":{"value":"ON"}}}}"#,
        &reply,
    )
    .await;
    assert!(accepted.get("code").is_none(), "{kind}: {accepted}");
}

async fn deltas_follow_the_id_form_the_mapper_uses(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut old_mapper = edge.client().await;
    request(
        &mut old_mapper,
        &device_topic(LIGHT_NAME, "twin/update"),
        r#"{"event_id":"n","twin":{"red":{"actual":{"value":"ON"}}}}"#,
        &device_topic(LIGHT_NAME, "twin/update/result"),
    )
    .await;
    let delta = old_mapper
        .recv_on(&device_topic(LIGHT_NAME, "twin/update/delta"))
        .await
        .expect("a delta on the {name} form");
    assert_eq!(delta.json()["delta"]["red"], "OFF", "{kind}");
}

async fn only_a_changed_device_state_is_queued_for_the_cloud(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let service = edge.agent.service().clone();
    let mut state_seqs = Vec::new();
    for state in ["online", "online", "offline"] {
        request(
            &mut mapper,
            &device_topic(LIGHT, "state/update"),
            &format!(r#"{{"state":"{state}"}}"#),
            &device_topic(LIGHT, "state/update/result"),
        )
        .await;
        let entries = service.outbox_peek(0, 100).await.expect("peeks");
        let states: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == OutboxKind::State)
            .collect();
        assert_eq!(states.len(), 1, "{kind}: one state entry per device");
        let payload: serde_json::Value = serde_json::from_str(&states[0].payload).expect("JSON");
        assert_eq!(payload["device"]["state"], state, "{kind}: {payload}");
        state_seqs.push(states[0].seq);
    }
    assert_eq!(
        state_seqs[0], state_seqs[1],
        "{kind}: an unchanged state is not queued again"
    );
    assert!(state_seqs[2] > state_seqs[1], "{kind}: a changed state is");
}

async fn accepted_desired_values_are_echoed_and_the_version_summary_is_queued(kind: BrokerKind) {
    let edge = Edge::start(kind).await;
    let service = edge.agent.service().clone();
    // The devices file's desired values were accepted: each is echoed with its cloud version
    // (the cloud's observedDesired, the Applied condition).
    let entries = service.outbox_peek(0, 100).await.expect("peeks");
    let echoes: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == OutboxKind::Twin)
        .collect();
    let names: Vec<_> = echoes
        .iter()
        .filter_map(|e| e.property.as_deref())
        .collect();
    assert_eq!(names, ["green", "red", "yellow"], "{kind}: {entries:?}");
    for echo in &echoes {
        let payload: serde_json::Value = serde_json::from_str(&echo.payload).expect("JSON");
        assert_eq!(payload["expected"]["value"], "OFF", "{kind}: {payload}");
        // The file's Device has a numeric resourceVersion: that is its cloud revision.
        assert_eq!(
            payload["expected_version"]["cloud"], 123_456,
            "{kind}: {payload}"
        );
    }

    // A newer summary replaces an unsent one; its digest covers the spec's generation and the
    // version of each desired value held.
    service.queue_summary(Some(4)).await.expect("queues");
    service.queue_summary(Some(5)).await.expect("queues");
    let entries = service.outbox_peek(0, 100).await.expect("peeks");
    let summaries: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == OutboxKind::Summary)
        .collect();
    assert_eq!(summaries.len(), 1, "{kind}: {entries:?}");
    let content: edgetwin_model::wire::cloud_edge::SummaryContent =
        serde_json::from_str(&summaries[0].payload).expect("a summary");
    assert_eq!(content.applied, Some(5));
    let membership =
        edgetwin_core::edge::agent::read_devices_file(&fixture("edge-traffic-light.yaml"))
            .expect("loads");
    let device = &membership.devices[0];
    let expected = edgetwin_model::wire::cloud_edge::desired_digest(
        device.generation(),
        ["green", "red", "yellow"].map(|name| (name, 123_456)),
    );
    assert_eq!(
        content.devices,
        std::collections::BTreeMap::from([(LIGHT.to_owned(), expected)]),
        "{kind}"
    );
}
