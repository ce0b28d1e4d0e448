//! The runtime against a real broker (rumqttd over loopback TCP), the in-test edge and the
//! simulated driver: coalesced reports, isolation of a dead device, in-place writes, the circuit
//! breaker, push, heartbeat, sinks, spec changes, selectors and shutdown.

mod support;

use std::time::Duration;

use edgetwin_sdk::Value;
use edgetwin_sdk::runtime::Selector;
use support::{MODEL, NODE, Rig, WAIT, meter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn reads_are_batched_and_reported_in_one_update_per_device() {
    let rig = Rig::start().await;
    let mapper = rig.online_meter(|_| {}).await;
    // `count` changes on every read: wait for a few reports.
    let device = rig
        .edge
        .wait_for("default/meter", WAIT, "five reports", |d| {
            d.reports.len() >= 5
        })
        .await
        .expect("reports");
    // The first report carries every property; later ones only `count`, the one that changes.
    assert_eq!(
        device.reports[0].values.keys().collect::<Vec<_>>(),
        ["count", "enabled", "level"]
    );
    for report in &device.reports[1..] {
        assert_eq!(report.values.keys().collect::<Vec<_>>(), ["count"]);
    }
    let reads = mapper.metrics().encode();
    assert!(reads.contains("edgetwin_mapper_reads_total{device=\"default/meter\"}"));
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn desired_values_are_written_in_place_without_a_new_session() {
    let rig = Rig::start().await;
    rig.publish(&format!("{MODEL}{}", meter("meter", "", "")));
    let mapper = rig.mapper(|_| {});
    rig.edge
        .wait_reported("default/meter", "level", "0", WAIT)
        .await
        .expect("first report");
    for value in ["7", "8", "9"] {
        rig.edge.set_desired("default/meter", "level", value);
        rig.edge
            .wait_reported("default/meter", "level", value, WAIT)
            .await
            .expect("written and read back");
    }
    // The same desired value again writes nothing.
    rig.edge.set_desired("default/meter", "level", "9");
    rig.edge.set_desired("default/meter", "enabled", "true");
    rig.edge
        .wait_reported("default/meter", "enabled", "true", WAIT)
        .await
        .expect("enabled");
    let writes: Vec<_> = rig
        .sim
        .writes("default/meter")
        .into_iter()
        .map(|w| (w.register, w.value))
        .collect();
    assert_eq!(
        writes,
        vec![
            ("level".to_owned(), Value::Int(7)),
            ("level".to_owned(), Value::Int(8)),
            ("level".to_owned(), Value::Int(9)),
            ("enabled".to_owned(), Value::Boolean(true)),
        ]
    );
    assert_eq!(rig.sim.connects("default/meter"), 1, "no session restart");
    assert_eq!(mapper.metrics().writes_of("default/meter"), 4);
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_refused_write_is_reported_as_a_write_error_with_the_last_read_value() {
    let rig = Rig::start().await;
    let mapper = rig.online_meter(|_| {}).await;
    rig.sim
        .refuse_writes("default/meter", "level", Some("level above the tank limit"));
    rig.edge.set_desired("default/meter", "level", "50");
    let device = rig
        .edge
        .wait_for("default/meter", WAIT, "a write error", |d| {
            d.write_errors.contains_key("level")
        })
        .await
        .expect("write error reported");
    let error = &device.write_errors["level"];
    assert_eq!(error.value, "50");
    assert_eq!(error.reason, "level above the tank limit");
    let refusal = device
        .reports
        .iter()
        .rev()
        .find(|r| r.values.contains_key("level"))
        .expect("the refusal carries the last read value");
    assert_eq!(refusal.values["level"], "0");
    assert!(rig.sim.writes("default/meter").is_empty());

    // Once the device accepts again, a new desired value is written and read back.
    rig.sim.refuse_writes("default/meter", "level", None);
    rig.edge.set_desired("default/meter", "level", "51");
    rig.edge
        .wait_reported("default/meter", "level", "51", WAIT)
        .await
        .expect("written");
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn desired_values_for_read_only_or_unknown_properties_and_bad_values_are_ignored() {
    let rig = Rig::start().await;
    let mapper = rig.online_meter(|_| {}).await;
    rig.edge.set_desired("default/meter", "count", "100");
    rig.edge.set_desired("default/meter", "nope", "1");
    rig.edge
        .set_desired("default/meter", "level", "not a number");
    rig.edge.set_desired("default/meter", "enabled", "true");
    rig.edge
        .wait_reported("default/meter", "enabled", "true", WAIT)
        .await
        .expect("the good value is written");
    let registers: Vec<_> = rig
        .sim
        .writes("default/meter")
        .into_iter()
        .map(|w| w.register)
        .collect();
    assert_eq!(registers, ["enabled"]);
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_dead_or_slow_device_does_not_stall_the_others() {
    let rig = Rig::start().await;
    rig.sim.set_reachable("default/dead", false);
    rig.sim.set_latency("default/slow", Duration::from_secs(30));
    rig.publish(&format!(
        "{MODEL}{}{}{}",
        meter("dead", "", ""),
        meter("slow", "", ""),
        meter("good", "", "")
    ));
    let mapper = rig.mapper(|o| o.connect_timeout = Duration::from_millis(300));
    let dead = rig
        .edge
        .wait_state("default/dead", "offline", WAIT)
        .await
        .expect("dead is offline");
    assert!(
        dead.reason
            .as_deref()
            .unwrap_or_default()
            .contains("unreachable"),
        "{dead:?}"
    );
    rig.edge
        .wait_state("default/slow", "offline", WAIT)
        .await
        .expect("slow times out");
    rig.edge.set_desired("default/good", "level", "3");
    rig.edge
        .wait_reported("default/good", "level", "3", WAIT)
        .await
        .expect("the good device works");
    rig.sim.set_reachable("default/dead", true);
    rig.edge
        .wait_state("default/dead", "online", WAIT)
        .await
        .expect("dead comes back");
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn repeated_read_failures_open_the_breaker_and_the_session_is_reopened() {
    let rig = Rig::start().await;
    let mapper = rig.online_meter(|o| o.breaker_threshold = 3).await;
    rig.sim.fail_next_reads("default/meter", 3);
    let offline = rig
        .edge
        .wait_state("default/meter", "offline", WAIT)
        .await
        .expect("the breaker opened");
    assert!(
        offline
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("simulated read failure"),
        "{offline:?}"
    );
    rig.edge
        .wait_state("default/meter", "online", WAIT)
        .await
        .expect("reopened after the backoff");
    assert_eq!(rig.sim.connects("default/meter"), 2);
    assert_eq!(
        rig.sim.open_sessions("default/meter"),
        1,
        "the old session was closed"
    );
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_lost_link_is_noticed_and_reconnected() {
    let rig = Rig::start().await;
    let mapper = rig.online_meter(|_| {}).await;
    rig.sim.set_reachable("default/meter", false);
    rig.edge
        .wait_state("default/meter", "offline", WAIT)
        .await
        .expect("offline on disconnect");
    rig.sim.set_reachable("default/meter", true);
    rig.edge
        .wait_state("default/meter", "online", WAIT)
        .await
        .expect("online again");
    rig.edge.set_desired("default/meter", "level", "4");
    rig.edge
        .wait_reported("default/meter", "level", "4", WAIT)
        .await
        .expect("works after the reconnect");
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn pushed_values_are_reported_without_polling() {
    let rig = Rig::start().await;
    let button_model = MODEL.replace(
        "register: enabled",
        "register: enabled\n          push: true",
    );
    rig.publish(&format!("{button_model}{}", meter("meter", "", "")));
    let mapper = rig.mapper(|o| o.default_collect_cycle = Duration::from_secs(3600));
    rig.edge
        .wait_reported("default/meter", "enabled", "false", WAIT)
        .await
        .expect("first value");
    rig.sim
        .set_value("default/meter", "enabled", Value::Boolean(true));
    rig.edge
        .wait_reported("default/meter", "enabled", "true", WAIT)
        .await
        .expect("pushed value reported");
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_heartbeat_re_reports_unchanged_values() {
    let rig = Rig::start().await;
    rig.publish(&format!("{MODEL}{}", meter("meter", "", "")));
    let mapper = rig.mapper(|o| o.heartbeat = Some(Duration::from_millis(200)));
    let device = rig
        .edge
        .wait_for("default/meter", WAIT, "three reports of level", |d| {
            d.reports
                .iter()
                .filter(|r| r.values.contains_key("level"))
                .count()
                >= 3
        })
        .await
        .expect("heartbeats");
    assert!(
        device
            .reports
            .iter()
            .filter_map(|r| r.values.get("level"))
            .all(|v| v == "0")
    );
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_spec_change_restarts_the_device_but_a_desired_only_change_does_not() {
    let rig = Rig::start().await;
    let with_desired = |value: &str| {
        format!(
            "{MODEL}{}",
            meter(
                "meter",
                "",
                &format!(
                    "  properties:\n    - name: level\n      desired:\n        value: \"{value}\"\n"
                )
            )
        )
    };
    rig.publish(&with_desired("1"));
    let mapper = rig.mapper(|_| {});
    rig.edge
        .wait_state("default/meter", "online", WAIT)
        .await
        .expect("online");
    rig.publish(&with_desired("2"));
    // Prove the republished spec was processed before checking nothing restarted: a device
    // added after it in the same stream comes online.
    rig.publish(&format!("{MODEL}{}", meter("marker", "", "")));
    rig.edge
        .wait_state("default/marker", "online", WAIT)
        .await
        .expect("marker online");
    assert_eq!(rig.sim.connects("default/meter"), 1);

    rig.publish(&format!(
        "{MODEL}{}",
        meter(
            "meter",
            "",
            "  properties:\n    - name: level\n      collectCycle: 70\n"
        )
    ));
    rig.edge
        .wait_for("default/meter", WAIT, "a second session", |_| {
            rig.sim.connects("default/meter") == 2
        })
        .await
        .ok();
    assert_eq!(rig.sim.connects("default/meter"), 2);
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_specs_mark_the_device_unhealthy_with_the_reason() {
    let rig = Rig::start().await;
    rig.publish(&format!(
        "{MODEL}{}{}{}",
        meter(
            "otel",
            "",
            "  properties:\n    - name: level\n      pushMethod:\n        otel:\n          endpointURL: http://127.0.0.1:4318\n"
        ),
        meter(
            "badpin",
            "",
            "  properties:\n    - name: level\n      visitors:\n        protocolName: sim\n        configData:\n          register: [1]\n"
        ),
        meter("good", "", "")
    ));
    let mapper = rig.mapper(|_| {});
    let otel = rig
        .edge
        .wait_state("default/otel", "unhealthy", WAIT)
        .await
        .expect("otel refused");
    assert_eq!(
        otel.reason.as_deref(),
        Some("device default/otel, property level: pushMethod.otel: not supported yet")
    );
    let bad = rig
        .edge
        .wait_state("default/badpin", "unhealthy", WAIT)
        .await
        .expect("bad visitor refused");
    assert_eq!(
        bad.reason.as_deref(),
        Some(
            "device default/badpin, property level: visitors.configData.register: \
             invalid type: sequence, expected a string"
        )
    );
    rig.edge
        .wait_state("default/good", "online", WAIT)
        .await
        .expect("others unaffected");
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_publishes_offline_for_every_device() {
    let rig = Rig::start().await;
    rig.publish(&format!(
        "{MODEL}{}{}",
        meter("a", "", ""),
        meter("b", "", "")
    ));
    let mapper = rig.mapper(|_| {});
    for id in ["default/a", "default/b"] {
        rig.edge
            .wait_state(id, "online", WAIT)
            .await
            .expect("online");
    }
    mapper.shutdown().await.expect("clean shutdown");
    for id in ["default/a", "default/b"] {
        let state = rig
            .edge
            .wait_state(id, "offline", WAIT)
            .await
            .expect("offline");
        assert_eq!(state.reason.as_deref(), Some("mapper stopped"));
        assert_eq!(rig.sim.open_sessions(id), 0, "{id} disconnected");
    }
}

#[tokio::test]
async fn a_selector_splits_devices_between_mapper_instances() {
    let rig = Rig::start().await;
    rig.publish(&format!(
        "{MODEL}{}{}",
        meter("north", "line: north", ""),
        meter("south", "line: south", "")
    ));
    let mut north = Selector::default();
    north.add_label("line=north").expect("valid");
    let mut south = Selector::default();
    south.add_label("line=south").expect("valid");
    let first = rig.mapper(|o| o.selector = north);
    let second = rig.mapper(|o| o.selector = south);
    for id in ["default/north", "default/south"] {
        rig.edge
            .wait_reported(id, "level", "0", WAIT)
            .await
            .expect("served");
    }
    assert_eq!(first.metrics().reports_of("default/south"), 0);
    assert_eq!(second.metrics().reports_of("default/north"), 0);
    assert!(first.metrics().reports_of("default/north") > 0);
    assert!(second.metrics().reports_of("default/south") > 0);
    first.shutdown().await.expect("clean shutdown");
    second.shutdown().await.expect("clean shutdown");
}

#[cfg(feature = "yaml")]
#[tokio::test]
async fn devices_come_from_a_yaml_directory() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("meters.yaml"),
        format!("{MODEL}{}{}", meter("m1", "", ""), meter("m2", "", "")),
    )
    .expect("written");
    let path = dir.path().to_owned();
    let mapper =
        rig.mapper(move |o| o.source = edgetwin_sdk::runtime::DeviceSource::Directory(path));
    for id in ["default/m1", "default/m2"] {
        rig.edge
            .wait_state(id, "online", WAIT)
            .await
            .expect("online");
    }
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn devices_come_from_a_kubeedge_device_profile() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = dir.path().join("deviceProfile.json");
    // KubeEdge's v1alpha2 ConfigMap content; the collect cycle in nanoseconds (100 ms).
    std::fs::write(
        &profile,
        r#"{
          "deviceInstances": [{
            "id": "meter-01", "name": "meter", "protocol": "sim-proto", "model": "meter-model",
            "propertyVisitors": [
              {"propertyName": "count", "protocol": "sim", "collectCycle": 100000000,
               "visitorConfig": {"register": "count", "step": 1}}
            ]
          }],
          "deviceModels": [{
            "name": "meter-model",
            "properties": [{"name": "count", "dataType": "int", "accessMode": "ReadOnly"}]
          }],
          "protocols": [{"name": "sim-proto", "protocol": "sim", "protocolConfig": {"latencyMs": 1}}]
        }"#,
    )
    .expect("written");
    let mapper =
        rig.mapper(move |o| o.source = edgetwin_sdk::runtime::DeviceSource::DeviceProfile(profile));
    rig.edge
        .wait_state("default/meter-01", "online", WAIT)
        .await
        .expect("online");
    rig.edge
        .wait_for("default/meter-01", WAIT, "two reports of count", |d| {
            d.reports
                .iter()
                .filter(|r| r.values.contains_key("count"))
                .count()
                >= 2
        })
        .await
        .expect("count reported");
    mapper.shutdown().await.expect("clean shutdown");
}

#[cfg(feature = "yaml")]
#[tokio::test]
async fn a_broken_yaml_directory_stops_the_mapper_with_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nspec: [\n",
    )
    .expect("written");
    let message = start_failure_with_devices_dir(dir.path()).await;
    assert!(message.contains("bad.yaml"), "{message}");
}

/// Why a mapper with devices from `dir` stopped at start.
async fn start_failure_with_devices_dir(dir: &std::path::Path) -> String {
    edgetwin_sdk::Mapper::builder()
        .driver(edgetwin_sdk::testkit::SimDriver::new())
        .node(NODE)
        .devices_dir(dir)
        .build()
        .expect("valid settings")
        .run_until(std::future::pending())
        .await
        .expect_err("the directory cannot be served")
        .to_string()
}

#[cfg(not(feature = "yaml"))]
#[tokio::test]
async fn without_the_yaml_feature_a_device_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let message = start_failure_with_devices_dir(dir.path()).await;
    assert!(
        message.contains(&dir.path().display().to_string())
            && message.contains("built without YAML support"),
        "{message}"
    );
}

/// The simulated driver with a bug: its first connect panics.
struct PanicsOnce {
    sim: edgetwin_sdk::testkit::SimDriver,
    panicked: std::sync::atomic::AtomicBool,
}

type SimConfig = edgetwin_sdk::DeviceConfig<
    <edgetwin_sdk::testkit::SimDriver as edgetwin_sdk::Driver>::ProtocolConfig,
    <edgetwin_sdk::testkit::SimDriver as edgetwin_sdk::Driver>::VisitorConfig,
>;

impl edgetwin_sdk::Driver for PanicsOnce {
    const PROTOCOL: &'static str = "sim";
    type ProtocolConfig =
        <edgetwin_sdk::testkit::SimDriver as edgetwin_sdk::Driver>::ProtocolConfig;
    type VisitorConfig = <edgetwin_sdk::testkit::SimDriver as edgetwin_sdk::Driver>::VisitorConfig;
    type Session = <edgetwin_sdk::testkit::SimDriver as edgetwin_sdk::Driver>::Session;

    async fn connect(
        &self,
        device: &SimConfig,
    ) -> Result<Self::Session, edgetwin_sdk::DriverError> {
        if !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("driver bug on the first connect");
        }
        edgetwin_sdk::Driver::connect(&self.sim, device).await
    }
}

#[tokio::test]
async fn a_device_whose_driver_panics_is_restarted_in_its_task() {
    let rig = Rig::start().await;
    rig.publish(&format!("{MODEL}{}", meter("a", "", "")));
    let driver = PanicsOnce {
        sim: rig.sim.clone(),
        panicked: Default::default(),
    };
    let mapper = rig.mapper_with(driver, |_| {});
    // The first connect panicked in the device's task; the task restarts the device (after 1 s)
    // and the second connect succeeds.
    rig.edge
        .wait_state("default/a", "online", WAIT)
        .await
        .expect("online after the restart");
    rig.edge
        .wait_for("default/a", WAIT, "a reported value", |d| {
            !d.reported.is_empty()
        })
        .await
        .expect("values reported after the restart");
    mapper.shutdown().await.expect("clean shutdown");
}

/// Reads HTTP requests from one connection at a time and returns their bodies.
async fn collect_posts(
    listener: tokio::net::TcpListener,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= head_end + 4 + len {
                    let _ = tx.send(text[head_end + 4..].to_owned());
                    break;
                }
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .await;
    }
}

#[tokio::test]
async fn samples_reach_the_mqtt_and_http_sinks() {
    let rig = Rig::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, mut posts) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(collect_posts(listener, tx));

    // A plain MQTT client on the same broker stands for the consumer of the MQTT sink.
    let mut options = rumqttc::MqttOptions::new("sink-consumer", "127.0.0.1", rig.broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
    client
        .subscribe("plant/meter/count", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (mqtt_tx, mut mqtt_samples) = tokio::sync::mpsc::unbounded_channel();
    let consumer = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                let _ = mqtt_tx.send(String::from_utf8_lossy(&p.payload).to_string());
            }
        }
    });

    rig.publish(&format!(
        "{MODEL}{}",
        meter(
            "meter",
            "",
            &format!(
                "  properties:\n    - name: count\n      pushMethod:\n        mqtt:\n          topic: plant/meter/count\n          qos: 1\n        http:\n          hostName: http://127.0.0.1\n          port: {port}\n          requestPath: /ingest\n"
            )
        )
    ));
    let mapper = rig.mapper(|_| {});
    let from_mqtt = tokio::time::timeout(WAIT, mqtt_samples.recv())
        .await
        .expect("an MQTT sample in time")
        .expect("a sample");
    let from_http = tokio::time::timeout(WAIT, posts.recv())
        .await
        .expect("an HTTP sample in time")
        .expect("a sample");
    for sample in [from_mqtt, from_http] {
        let json: serde_json::Value = serde_json::from_str(&sample).expect("JSON");
        assert_eq!(json["namespace"], "default");
        assert_eq!(json["deviceName"], "meter");
        assert_eq!(json["propertyName"], "count");
        assert_eq!(json["type"], "int");
        assert!(
            json["value"]
                .as_str()
                .is_some_and(|v| v.parse::<i64>().is_ok()),
            "{json}"
        );
    }
    let sent = mapper.metrics().encode();
    assert!(
        sent.contains("edgetwin_mapper_sink_sent_total{sink=\"mqtt:plant/meter/count\"}"),
        "{sent}"
    );
    mapper.shutdown().await.expect("clean shutdown");
    server.abort();
    consumer.abort();
}

#[tokio::test]
async fn the_mapper_survives_a_broker_restart() {
    let rig = Rig::start().await;
    let mapper = rig.online_meter(|_| {}).await;
    let gets = rig.edge.device("default/meter").twin_gets;
    rig.broker
        .restart(Duration::from_millis(300))
        .await
        .expect("restarted");
    rig.edge
        .wait_for("default/meter", WAIT, "a twin/get after the restart", |d| {
            d.twin_gets > gets
        })
        .await
        .expect("resync");
    rig.edge.set_desired("default/meter", "level", "6");
    rig.edge
        .wait_reported("default/meter", "level", "6", WAIT)
        .await
        .expect("deltas arrive again");
    assert_eq!(
        rig.sim.connects("default/meter"),
        1,
        "the device session survived"
    );
    mapper.shutdown().await.expect("clean shutdown");
}
