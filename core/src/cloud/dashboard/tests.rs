//! The dashboard over the embedded registry's real HTTP server on a free loopback port.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::view::DeviceView;
use crate::cloud::registry::embedded::ApplyMode;
use crate::cloud::registry::embedded::testkit::{TestServer, device, model};
use edgetwin_model::devices::{
    ConditionType, DeviceStatus, Manifest, PropertyCondition, Twin, TwinProperty,
};

const WAIT: Duration = Duration::from_secs(10);

/// The registry's API server with the dashboard merged in, as `edgetwin cloud` serves them.
async fn dashboard_server() -> TestServer {
    dashboard_server_with(super::MAX_STREAMS).await
}

/// The same with at most `max_streams` event streams.
async fn dashboard_server_with(max_streams: usize) -> TestServer {
    TestServer::start_merged(Default::default(), move |registry, stopping| {
        super::router(std::sync::Arc::new(registry.clone()), stopping, max_streams)
    })
    .await
}

async fn seed(server: &TestServer) {
    for manifest in [Manifest::DeviceModel(model()), Manifest::Device(device())] {
        server
            .registry
            .apply_manifest(manifest, ApplyMode::CreateOrReplace)
            .await
            .expect("seeded");
    }
}

fn red_reported(value: &str, condition: ConditionType) -> DeviceStatus {
    let mut status = DeviceStatus::default();
    let twin: &mut Twin = status.twin_mut("red");
    twin.reported = Some(TwinProperty::new(value));
    twin.condition = Some(PropertyCondition::new(
        condition,
        "2026-01-02T03:04:05Z".parse().expect("timestamp"),
    ));
    status.state = Some("online".into());
    status
}

/// A GET without a token, answered in full (the server closes an HTTP/1.0 connection).
async fn get(server: &TestServer, path: &str) -> String {
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .expect("writes");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .expect("reads");
    response
}

/// An open `/dashboard/events` stream, read event by event.
struct Events {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
}

impl Events {
    async fn open(server: &TestServer) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        stream
            .write_all(b"GET /dashboard/events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .expect("writes");
        let mut lines = BufReader::new(stream).lines();
        let status = lines.next_line().await.expect("reads").expect("a status");
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let header = lines.next_line().await.expect("reads").expect("headers");
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-type:") {
                assert_eq!(value.trim(), "text/event-stream");
            }
        }
        Self { lines }
    }

    /// The next event as (name, JSON data); `None` when the server closed the stream.
    async fn next(&mut self) -> Option<(String, Value)> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .expect("an event in time")
                .expect("reads")?;
            if line.is_empty() {
                if data.is_empty() {
                    continue; // a keep-alive comment's terminator
                }
                return Some((name, serde_json::from_str(&data).expect("JSON data")));
            }
            if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim_start());
            }
        }
    }

    /// Skips events until one named `wanted`.
    async fn until(&mut self, wanted: &str) -> Value {
        loop {
            let (name, data) = self.next().await.expect("the stream goes on");
            if name == wanted {
                return data;
            }
        }
    }
}

#[test]
fn a_device_view_pairs_desired_with_reported_and_leaves_configuration_out() {
    let mut device = device();
    device.status = Some(red_reported("ON", ConditionType::Verified));
    device
        .status
        .as_mut()
        .expect("status")
        .twin_mut("extra")
        .reported = Some(TwinProperty::new("7"));
    let view = DeviceView::of(&device);

    assert_eq!(view.name, "traffic-light");
    assert_eq!(view.node.as_deref(), Some("pi-1"));
    assert_eq!(view.state.as_deref(), Some("online"));
    let names: Vec<&str> = view.properties.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["red", "amber", "green", "brightness", "cycles", "extra"]
    );
    let red = &view.properties[0];
    assert_eq!(red.desired.as_deref(), Some("OFF"));
    assert_eq!(red.reported.as_deref(), Some("ON"));
    assert_eq!(
        red.condition.as_ref().map(|c| c.kind),
        Some(ConditionType::Verified)
    );
    assert_eq!(
        view.last_update,
        Some("2026-01-02T03:04:05Z".parse().expect("timestamp"))
    );

    let json = serde_json::to_string(&view).expect("serializes");
    for secret in ["configData", "visitors", "gpiochip", "\"line\""] {
        assert!(!json.contains(secret), "{secret} leaked into {json}");
    }
}

#[test]
fn last_update_is_the_newest_reported_timestamp() {
    let mut device = device();
    let mut status = red_reported("ON", ConditionType::Applied);
    let mut reported = TwinProperty::new("OFF");
    // 2026-06-01T00:00:00Z in milliseconds, as mappers stamp reported values.
    reported
        .metadata
        .insert("timestamp".into(), "1780272000000".into());
    status.twin_mut("green").reported = Some(reported);
    device.status = Some(status);
    assert_eq!(
        DeviceView::of(&device).last_update,
        Some("2026-06-01T00:00:00Z".parse().expect("timestamp"))
    );
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_token() {
    let server = dashboard_server().await;
    let page = get(&server, "/").await;
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.contains("text/html"));
    assert!(page.contains("/dashboard/app.js"));
    let script = get(&server, "/dashboard/app.js").await;
    assert!(script.contains("text/javascript"));
    assert!(script.contains("new EventSource(\"/dashboard/events\")"));
    let style = get(&server, "/dashboard/style.css").await;
    assert!(style.contains("text/css"));
    // The API itself stays closed.
    let api = get(&server, "/apis/devices.kubeedge.io/v1beta1/devices").await;
    assert!(api.starts_with("HTTP/1.0 401"), "{api}");
    server.stop().await;
}

#[tokio::test]
async fn the_event_stream_lists_devices_then_follows_reported_changes() {
    let server = dashboard_server().await;
    seed(&server).await;
    let mut events = Events::open(&server).await;

    let model = events.until("model").await;
    assert_eq!(model["name"], "traffic-light-model");
    assert_eq!(model["properties"][0]["type"], "STRING");
    assert_eq!(model["properties"][4]["accessMode"], "ReadOnly");
    let listed = events.until("device").await;
    assert_eq!(listed["name"], "traffic-light");
    assert_eq!(listed["properties"][0]["reported"], Value::Null);
    events.until("synced").await;

    server
        .registry
        .patch_device_status(
            "default",
            "traffic-light",
            red_reported("ON", ConditionType::Verified),
        )
        .await
        .expect("status written");
    let changed = events.until("device").await;
    assert_eq!(changed["properties"][0]["name"], "red");
    assert_eq!(changed["properties"][0]["reported"], "ON");
    assert_eq!(changed["properties"][0]["condition"]["type"], "Verified");
    assert_eq!(changed["state"], "online");
    assert!(
        !changed.to_string().contains("configData"),
        "configuration stays out of the stream"
    );

    server
        .registry
        .delete::<edgetwin_model::devices::Device>("default", "traffic-light")
        .await
        .expect("deleted");
    let deleted = events.until("deleted").await;
    assert_eq!(deleted["name"], "traffic-light");
    assert_eq!(deleted["namespace"], "default");

    server.stop().await;
}

#[tokio::test]
async fn open_streams_end_when_the_server_stops() {
    let server = dashboard_server().await;
    seed(&server).await;
    let mut events = Events::open(&server).await;
    events.until("synced").await;
    server.stop().await;
    while let Some((name, _)) = events.next().await {
        assert_ne!(name, "synced", "nothing new after the stop");
    }
}

#[tokio::test]
async fn streams_over_the_cap_are_refused_with_a_status_and_slots_come_back_when_streams_close() {
    let server = dashboard_server_with(2).await;
    seed(&server).await;
    let mut first = Events::open(&server).await;
    first.until("synced").await;
    let mut second = Events::open(&server).await;
    second.until("synced").await;

    // A third is refused at once, with a Kubernetes Status, and its connection is closed (an
    // HTTP/1.1 client that keeps connections open must not hold the API's slots with it).
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream
        .write_all(b"GET /dashboard/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("answered and closed in time")
        .expect("reads");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    let body: Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit is 2"),
        "{body}"
    );

    // A closed stream gives its slot (and its registry watch) back: a new one opens.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        stream
            .write_all(b"GET /dashboard/events HTTP/1.0\r\n\r\n")
            .await
            .expect("writes");
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).await.expect("a status line");
        if &status == b"HTTP/1.0 200" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
    server.stop().await;
}
