//! Bad input, each case over real MQTT on both brokers: where KubeEdge answers, the agent answers
//! `{code, reason}`; otherwise it logs a warning and counts the reject. Every test ends by checking
//! that the agent still serves.

mod support;

use edgetwin_core::edge::metrics::Reject;
use std::time::Duration;

use edgetwin_testkit::raw_mqtt::RawPublish;
use edgetwin_testkit::{BrokerKind, TestClient};
use support::*;

on_both_brokers!(
    malformed_json,
    json_of_the_wrong_shape,
    a_value_of_the_wrong_type,
    an_unknown_device,
    an_unknown_property,
    an_oversize_payload,
    an_unknown_device_state,
    an_empty_topic_level,
    a_wildcard_or_nul_in_a_published_topic,
    an_unknown_topic_suffix,
    a_membership_get_that_is_not_json,
);

/// Sends a twin/update with `payload` and returns the answer.
async fn update(mapper: &mut TestClient, payload: &str) -> serde_json::Value {
    request(
        mapper,
        &device_topic(LIGHT, "twin/update"),
        payload,
        &device_topic(LIGHT, "twin/update/result"),
    )
    .await
}

/// The agent still answers a twin/get.
async fn still_serving(mapper: &mut TestClient) {
    let twin = request(
        mapper,
        &device_topic(LIGHT, "twin/get"),
        r#"{"event_id":"alive"}"#,
        &device_topic(LIGHT, "twin/get/result"),
    )
    .await;
    assert_eq!(twin["event_id"], "alive");
    assert_eq!(twin["twin"]["red"]["expected"]["value"], "OFF", "{twin}");
}

fn assert_error(answer: &serde_json::Value, code: i64, reason_part: &str) {
    assert_eq!(answer["code"], code, "{answer}");
    let reason = answer["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(reason_part),
        "reason {reason:?} lacks {reason_part:?}"
    );
}

async fn malformed_json(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let answer = update(&mut mapper, r#"{"event_id":"m1","twin":{"#).await;
    assert_error(&answer, 400, "malformed JSON");
    assert_eq!(
        edge.agent.metrics().rejects(Reject::MalformedJson),
        1,
        "{kind}"
    );
    still_serving(&mut mapper).await;
}

async fn json_of_the_wrong_shape(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let answer = update(
        &mut mapper,
        r#"{"event_id":"w1","twin":{"red":{"actual":{"value":5}}}}"#,
    )
    .await;
    assert_error(&answer, 400, "twin.red.actual.value");
    assert_eq!(
        answer["event_id"], "w1",
        "{kind}: the event id survives a bad shape"
    );
    assert_eq!(
        edge.agent.metrics().rejects(Reject::WrongShape),
        1,
        "{kind}"
    );
    still_serving(&mut mapper).await;
}

async fn a_value_of_the_wrong_type(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let answer = update(
        &mut mapper,
        r#"{"event_id":"t1","twin":{"count":{"actual":{"value":"twelve"}}}}"#,
    )
    .await;
    assert_error(&answer, 400, "the value is not int or integer");
    let stored: Option<edgetwin_model::twin::PropertyTwin> =
        edge.store().twin(&light(), "count").expect("reads");
    assert!(stored.is_none(), "{kind}: nothing was written");
    still_serving(&mut mapper).await;
}

async fn an_unknown_device(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    for (event, reply, reason) in [
        (
            "twin/update",
            "twin/update/result",
            "update rejected due to the device is not existed",
        ),
        (
            "twin/get",
            "twin/get/result",
            "Device default/nope not found while getting twin",
        ),
        ("state/update", "state/update/result", "not found"),
    ] {
        let answer = request(
            &mut mapper,
            &device_topic("default/nope", event),
            r#"{"event_id":"u1","state":"online","twin":{}}"#,
            &device_topic("default/nope", reply),
        )
        .await;
        assert_error(&answer, 404, reason);
        assert_eq!(answer["event_id"], "u1");
    }
    assert_eq!(
        edge.agent.metrics().rejects(Reject::UnknownDevice),
        3,
        "{kind}"
    );
    still_serving(&mut mapper).await;
}

async fn an_unknown_property(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let answer = update(
        &mut mapper,
        r#"{"event_id":"p1","twin":{"blue":{"actual":{"value":"ON"}}}}"#,
    )
    .await;
    assert_error(&answer, 400, "\"blue\" is not defined in the device model");
    still_serving(&mut mapper).await;
}

async fn an_oversize_payload(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let huge = format!(
        r#"{{"event_id":"big","twin":{{"red":{{"actual":{{"value":"{}"}}}}}}}}"#,
        "x".repeat(1 << 20)
    );
    let answer = update(&mut mapper, &huge).await;
    assert_error(&answer, 400, "exceeds the limit of 1048576 bytes");
    assert_eq!(edge.agent.metrics().rejects(Reject::TooLarge), 1, "{kind}");
    still_serving(&mut mapper).await;
}

async fn an_unknown_device_state(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    for (payload, reason) in [
        (
            r#"{"event_id":"s1","state":"sleepy"}"#,
            "unknown device state \"sleepy\": use one of online, offline",
        ),
        (r#"{"event_id":"s2"}"#, "the request has no state"),
    ] {
        let answer = request(
            &mut mapper,
            &device_topic(LIGHT, "state/update"),
            payload,
            &device_topic(LIGHT, "state/update/result"),
        )
        .await;
        assert_error(&answer, 400, reason);
    }
    assert_eq!(edge.agent.metrics().rejects(Reject::BadState), 2, "{kind}");
    still_serving(&mut mapper).await;
}

async fn an_empty_topic_level(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    mapper
        .publish("$hw/events/device//twin/update", r#"{"twin":{}}"#)
        .await
        .expect("publishes");
    // Handled in order: once the next request is answered, the bad one was seen.
    still_serving(&mut mapper).await;
    assert_eq!(refused(&edge, Reject::BadTopic), 1, "{kind}");
}

/// How often a bad publish was refused: by the agent for `reason`, or already by the embedded
/// broker's bus policy (which lets only well-formed requests through to the agent).
fn refused(edge: &Edge, reason: Reject) -> u64 {
    let metrics = edge.agent.metrics();
    metrics.rejects(reason) + metrics.bus_refusals("publish")
}

async fn a_wildcard_or_nul_in_a_published_topic(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    // MQTT client libraries refuse such topics; send the bytes by hand.
    let login = edge.credentials(support::TEST_CLIENT);
    for topic in [
        "$hw/events/device/a+b/twin/update",
        "$hw/events/device/a#/twin/update",
        "$hw/events/device/a\0b/twin/update",
    ] {
        RawPublish {
            client_id: "test-raw",
            login: Some((&login.username, &login.password)),
            topic,
            payload: b"{}",
            retained_qos1: false,
        }
        .send(edge.broker_addr(), Duration::from_secs(5))
        .await;
    }
    let mut mapper = edge.client().await;
    still_serving(&mut mapper).await;
    // Both brokers drop the publishing client (MQTT forbids wildcards and NUL in topic names):
    // nothing reaches the agent.
    assert_eq!(edge.agent.metrics().rejects(Reject::BadTopic), 0, "{kind}");
}

// The capturing subscriber is the process's global one: the refusal is logged on the embedded
// broker's thread (its bus policy refuses the topic before the agent sees it). Embedded broker
// only: mosquitto drops a client whose topic has a control character (MQTT 3.1.1 section 1.5.3).
#[tokio::test]
async fn a_line_break_in_a_topic_never_reaches_the_log_raw() {
    let kind = BrokerKind::Embedded;
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    // No other test of this binary sets a global subscriber.
    tracing::subscriber::set_global_default(subscriber).expect("the global subscriber");
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    let forged = "ERROR forged: pin 17 is high";
    mapper
        .publish(
            &device_topic(&format!("x\n{forged}"), "twin/update"),
            r#"{"event_id":"f"}"#,
        )
        .await
        .expect("publishes");
    still_serving(&mut mapper).await;
    assert_eq!(
        refused(&edge, Reject::BadTopic),
        1,
        "{kind}: the topic is refused"
    );
    let text = log.text();
    assert!(
        !text.lines().any(|line| line.starts_with(forged)),
        "{kind}: a forged line in the log:\n{text}"
    );
    assert!(
        text.contains("x\\nERROR forged"),
        "{kind}: logged escaped:\n{text}"
    );
}

/// A log writer that keeps what is written.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn an_unknown_topic_suffix(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    mapper
        .publish(&device_topic(LIGHT, "twin/bogus"), r#"{"event_id":"b"}"#)
        .await
        .expect("publishes");
    still_serving(&mut mapper).await;
    assert_eq!(refused(&edge, Reject::UnknownTopic), 1, "{kind}");
}

async fn a_membership_get_that_is_not_json(kind: BrokerKind) {
    let mut edge = Edge::start(kind).await;
    let mut mapper = edge.client().await;
    mapper
        .publish(&node_topic("membership/get"), "not json")
        .await
        .expect("publishes");
    // KubeEdge has no error shape for membership/get: no answer, a warning and a count.
    let answer = request(
        &mut mapper,
        &node_topic("membership/get"),
        r#"{"event_id":"ok"}"#,
        &node_topic("membership/get/result"),
    )
    .await;
    assert_eq!(
        answer["event_id"], "ok",
        "{kind}: the first answer is to the good request"
    );
    assert_eq!(
        edge.agent.metrics().rejects(Reject::MalformedJson),
        1,
        "{kind}"
    );
}
