//! Pipelines end to end through the sim mapper's runtime: a Device whose properties declare
//! pipelines and sinks; one sample feeds the twin and every sink (HTTP, MQTT, Redis) with the
//! values the pipeline produced; a desired value passes the reverse pipeline on its way to the
//! device; and `edgetwin pipeline test`'s preview of the raw samples predicts exactly what the
//! running mapper sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgetwin_sdk::testkit::kit::servers::{RedisServer, TempDir};
use edgetwin_sdk::testkit::pipeline_check::{
    SampleTap, assert_predicted, is_subsequence, twin_values,
};
use edgetwin_sdk::testkit::{BrokerKind, SimDriver, TestBroker, TestEdge};
use edgetwin_sdk::{Mapper, PropertyType, Value};
use serde_json::Value as Json;

const NODE: &str = "edge-1";
const WAIT: Duration = Duration::from_secs(15);

const SMOOTH: &str = "- scale: {factor: 0.5}\n- deadband: {absolute: 1}\n";
const WINDOWED: &str = "- window: {size: 3, aggregate: mean}\n";
const LIMITED: &str = "- rateLimit: {minInterval: 300ms}\n";
const SETPOINT: &str =
    "- scale: {factor: 0.1}\n- round: {decimals: 1}\n- clamp: {min: 0, max: 50}\n";

fn model() -> String {
    let prop = |name: &str, ty: &str, access: &str, register: &str| {
        format!(
            "    - name: {name}\n      type: {ty}\n      accessMode: {access}\n      visitors:\n        protocolName: sim\n        configData: {{register: {register}, initial: 0}}\n"
        )
    };
    format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {{name: meter-model, namespace: default}}\nspec:\n  protocol: sim\n  properties:\n{}{}{}{}{}",
        prop("raw", "INT", "ReadOnly", "level"),
        prop("smooth", "FLOAT", "ReadOnly", "level"),
        prop("windowed", "FLOAT", "ReadOnly", "level"),
        prop("limited", "INT", "ReadOnly", "level"),
        prop("setpoint", "FLOAT", "ReadWrite", "setpoint"),
    )
}

/// The device: every pipeline property goes to the tap, an MQTT topic and (when Redis runs)
/// Redis; `raw` (the same register, no pipeline) to the tap only.
fn device(tap: &SampleTap, redis: Option<&RedisServer>) -> String {
    let sinks = |topic: &str| {
        let mut push = format!(
            "      pushMethod:\n{}        mqtt: {{topic: plant/{topic}, qos: 1}}\n",
            tap.push_method_yaml(8)
        );
        if let Some(redis) = redis {
            push.push_str(&format!(
                "        dbMethod:\n          redis:\n            redisClientConfig: {{addr: \"{}\"}}\n",
                redis.addr()
            ));
        }
        push
    };
    let piped = |name: &str, steps: &str| {
        let steps: String = steps.lines().map(|l| format!("        {l}\n")).collect();
        format!(
            "    - name: {name}\n      pipeline:\n{steps}{}",
            sinks(name)
        )
    };
    format!(
        "---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: meter, namespace: default}}\nspec:\n  deviceModelRef: {{name: meter-model}}\n  nodeName: {NODE}\n  protocol: {{protocolName: sim}}\n  properties:\n    - name: raw\n      pushMethod:\n{}{}{}{}{}",
        tap.push_method_yaml(8),
        piped("smooth", SMOOTH),
        piped("windowed", WINDOWED),
        piped("limited", LIMITED),
        piped("setpoint", SETPOINT),
    )
}

#[tokio::test]
async fn pipelines_feed_twin_and_sinks_as_the_preview_predicts() {
    edgetwin_sdk::cli::init_logging();
    let redis = RedisServer::start("sim_pipelines_redis");
    let broker = TestBroker::start(BrokerKind::Embedded).expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let tap = SampleTap::start().await;
    let secrets = TempDir::new("secrets");
    std::fs::write(
        secrets.path().join("EDGETWIN_REDIS_PASSWORD"),
        RedisServer::PASSWORD,
    )
    .expect("secret");

    // A consumer of the MQTT sink.
    let mut options = rumqttc::MqttOptions::new("plant-consumer", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
    client
        .subscribe("plant/#", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let mqtt: Arc<Mutex<Vec<(String, Json)>>> = Arc::default();
    let kept = Arc::clone(&mqtt);
    let consumer = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                let json = serde_json::from_slice(&p.payload).expect("sample JSON");
                kept.lock().expect("lock").push((p.topic.clone(), json));
            }
        }
    });

    edge.publish_devices(&format!("{}{}", model(), device(&tap, redis.as_ref())))
        .expect("test YAML");
    let sim = SimDriver::new();
    let dir = secrets.path().to_path_buf();
    let mapper = Mapper::builder()
        .driver(sim.clone())
        .node(NODE)
        .broker(broker.addr().to_string())
        .options(move |o| {
            o.default_collect_cycle = Duration::from_millis(50);
            o.default_report_cycle = Duration::from_millis(50);
            o.secrets_dir = Some(dir);
        })
        .build()
        .expect("valid settings")
        .spawn();
    edge.wait_state("default/meter", "online", WAIT)
        .await
        .expect("online");

    // The device's level moves; the pipelines see it at every 50 ms read.
    for level in [10, 10, 11, 14, 14, 15, 20, 21, 21, 30, 31, 31, 31, 8, 8] {
        sim.set_value("default/meter", "level", Value::Int(level));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // A desired value goes down through the reverse pipeline: 25.3 → 253 on the device.
    edge.set_desired("default/meter", "setpoint", "25.3");
    edge.wait_reported("default/meter", "setpoint", "25.3", WAIT)
        .await
        .expect("written and read back");
    let written: Vec<Value> = sim
        .writes("default/meter")
        .into_iter()
        .map(|w| w.value)
        .collect();
    assert_eq!(written, [Value::Float(253.0)]);
    // Outside the clamp range: refused before the device, reported as a write error.
    edge.set_desired("default/meter", "setpoint", "80");
    let refused = edge
        .wait_for("default/meter", WAIT, "a write error", |d| {
            d.write_errors.contains_key("setpoint")
        })
        .await
        .expect("refused");
    assert!(
        refused.write_errors["setpoint"].reason.contains("clamp"),
        "{:?}",
        refused.write_errors
    );
    assert_eq!(sim.writes("default/meter").len(), 1, "nothing else written");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let twin = edge.device("default/meter");
    mapper.shutdown().await.expect("clean shutdown");

    // Each pipeline property's sink samples are the preview of the raw samples.
    let smooth = assert_predicted(&tap, "raw", "smooth", PropertyType::Float, SMOOTH);
    let windowed = assert_predicted(&tap, "raw", "windowed", PropertyType::Float, WINDOWED);
    let limited = assert_predicted(&tap, "raw", "limited", PropertyType::Int, LIMITED);
    let raw = tap.series("raw");
    // The pipelines did their jobs: deadband suppressed, the window aggregated, the rate limit
    // dropped superseded values.
    assert!(
        smooth.len() < raw.len() / 3,
        "deadband: {} of {}",
        smooth.len(),
        raw.len()
    );
    assert_eq!(windowed.len(), raw.len() / 3, "one mean per 3 samples");
    assert!(
        windowed.iter().any(|(_, v)| v.contains('.')),
        "a mean between levels: {windowed:?}"
    );
    assert!(
        limited.len() < raw.len() / 3,
        "rate limit: {} of {}",
        limited.len(),
        raw.len()
    );
    assert!(
        limited.windows(2).all(|w| w[1].0 - w[0].0 >= 300),
        "at most one per 300 ms: {limited:?}"
    );

    // The same values reached the MQTT sink, in order, and (when it ran) Redis.
    let mqtt = mqtt.lock().expect("lock").clone();
    for (name, expected) in [
        ("smooth", &smooth),
        ("windowed", &windowed),
        ("limited", &limited),
    ] {
        let got: Vec<(i64, String)> = mqtt
            .iter()
            .filter(|(topic, _)| *topic == format!("plant/{name}"))
            .map(|(_, j)| {
                (
                    j["timestamp"].as_i64().unwrap_or(0),
                    j["value"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(&got, expected, "MQTT sink of {name}");
        // The twin got those values too (coalesced per report cycle: some may be skipped).
        let values: Vec<String> = expected.iter().map(|(_, v)| v.clone()).collect();
        let reported = twin_values(&twin.reports, name);
        assert!(!reported.is_empty(), "{name} reported");
        assert!(
            is_subsequence(&reported, &values),
            "{name}: twin {reported:?} vs {values:?}"
        );
    }
    if let Some(redis) = &redis {
        let members = redis.cli(&["ZRANGE", "meter", "0", "-1"]);
        for (name, expected) in [
            ("smooth", &smooth),
            ("windowed", &windowed),
            ("limited", &limited),
        ] {
            let mut got: Vec<(i64, String)> = members
                .lines()
                .filter_map(|l| serde_json::from_str::<Json>(l).ok())
                .filter(|j| j["propertyName"] == name)
                .map(|j| {
                    (
                        j["timestamp"].as_i64().unwrap_or(0),
                        j["value"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            got.sort();
            let mut expected = expected.clone();
            expected.sort();
            assert_eq!(got, expected, "Redis sink of {name}");
        }
    }
    consumer.abort();
}
