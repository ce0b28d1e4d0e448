//! Every `pushMethod` in KubeEdge's own v1beta1 samples loads, and runs: with only its addresses
//! pointed at local servers (a real MQTT broker, an HTTP server answering as InfluxDB's write API
//! does), each of its sinks delivers a sample. The fixtures come from
//! `$EDGETWIN_KUBEEDGE_FIXTURES`.

use std::path::Path;
use std::time::Duration;

use edgetwin_sdk::config::resolve;
use edgetwin_sdk::metrics::Metrics;
use edgetwin_sdk::model::devices::load::{self, Manifest};
use edgetwin_sdk::model::devices::{Device, DeviceModel};
use edgetwin_sdk::mqtt::Bus;
use edgetwin_sdk::sink::{Sample, SinkSettings, SinkSpec, Sinks, sink_specs};
use edgetwin_sdk::testkit::{BrokerKind, TestBroker};
use edgetwin_sdk::{DeviceId, Value};
use edgetwin_testkit::fixtures::{files_starting_with, kubeedge_dir};
use edgetwin_testkit::servers::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(15);

/// The v1beta1 instances that declare a `pushMethod`, each with its model (Helm templates,
/// which are not YAML until rendered, are left out).
fn samples_with_push_methods(dir: &Path) -> Vec<(String, Device, DeviceModel)> {
    let mut found = Vec::new();
    for path in files_starting_with(dir, "v1beta1__") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let mut text = std::fs::read_to_string(&path).expect("readable");
        if name == "v1beta1__mqtt__mqttdevice-instance.yaml" {
            // Invalid upstream: the first line is at column 0 and the rest indented by 3 (the
            // model loader's own test keeps that failure). Its content is what a user means.
            text = text
                .lines()
                .map(|l| l.strip_prefix("   ").unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n");
        }
        if !name.ends_with("-instance.yaml") || text.contains("{{") {
            continue;
        }
        let model_path = dir.join(name.replace("-instance.yaml", "-model.yaml"));
        let model_text = std::fs::read_to_string(&model_path).expect("the sample's model");
        let mut device = None;
        let mut model = None;
        for (text, source) in [(&text, &name), (&model_text, &name)] {
            for document in load::from_str(text, source).unwrap_or_else(|e| panic!("{name}: {e}")) {
                match document.manifest {
                    Manifest::Device(d) => device = Some(d),
                    Manifest::DeviceModel(m) => model = Some(m),
                }
            }
        }
        let device = device.expect("a Device");
        if device
            .spec
            .properties
            .iter()
            .any(|p| p.push_method.is_some())
        {
            found.push((name, device, model.expect("a DeviceModel")));
        }
    }
    found
}

#[test]
fn every_push_method_of_the_samples_loads_with_its_device() {
    let Some(dir) = kubeedge_dir("samples", "kubeedge_push_methods") else {
        return;
    };
    let samples = samples_with_push_methods(&dir);
    let names: Vec<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(
        names.contains(&"v1beta1__mqtt__mqttdevice-instance.yaml")
            && names.contains(&"v1beta1__virtual-led__vled-instance.yaml"),
        "{names:?}"
    );
    for (name, device, model) in &samples {
        for prop in &device.spec.properties {
            if let Some(push) = &prop.push_method {
                let sinks = sink_specs(push).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!sinks.is_empty(), "{name}: no sink");
            }
        }
        match resolve(device, Some(model)) {
            Ok(resolved) => assert!(
                resolved.properties.iter().any(|p| !p.sinks.is_empty()),
                "{name}: the sinks are kept"
            ),
            // Inconsistent upstream: the instance's `temperature` is `temperture` in its model.
            Err(err) if name == "v1beta1__mqtt__mqttdevice-instance.yaml" => assert_eq!(
                err.to_string(),
                "device default/beta1-device, property temperature: not a property of \
                 DeviceModel \"temperture-model\""
            ),
            Err(err) => panic!("{name}: {err}"),
        }
    }
}

/// Answers every request with 204, as InfluxDB's write API does on success, and hands over the
/// bodies.
async fn influx_like(tx: tokio::sync::mpsc::UnboundedSender<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        let _ = tx.send(body.to_owned());
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        }
    });
    port
}

#[tokio::test]
async fn every_push_method_of_the_samples_runs_against_local_servers() {
    let Some(dir) = kubeedge_dir("samples", "kubeedge_push_methods_run") else {
        return;
    };
    edgetwin_sdk::cli::init_logging();
    let broker = TestBroker::start(BrokerKind::Embedded).expect("broker");
    let (influx_tx, mut influx) = tokio::sync::mpsc::unbounded_channel();
    let influx_port = influx_like(influx_tx).await;
    let secrets = TempDir::new("secrets");
    std::fs::write(secrets.path().join("EDGETWIN_INFLUXDB2_TOKEN"), "t").expect("token");
    let metrics = Metrics::new();
    let (bus, _inbound, _task) = Bus::start(
        &broker.addr().into(),
        None,
        "fixture-sinks",
        metrics.clone(),
    );
    let sinks = Sinks::new(
        bus,
        metrics,
        "fixture-sinks",
        SinkSettings {
            secrets_dir: Some(secrets.path().to_path_buf()),
            ..SinkSettings::default()
        },
    );
    // A consumer of every topic, standing for whoever reads the MQTT sink.
    let mut options = rumqttc::MqttOptions::new("fixture-consumer", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
    client
        .subscribe("#", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (mqtt_tx, mut published) = tokio::sync::mpsc::unbounded_channel();
    let consumer = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                let _ = mqtt_tx.send((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).to_string(),
                ));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    for (name, device, model) in samples_with_push_methods(&dir) {
        for prop in &device.spec.properties {
            let Some(push) = &prop.push_method else {
                continue;
            };
            // Only the addresses change: the sample's topics, measurement, tags and field keys stay.
            let mut push = push.clone();
            if let Some(mqtt) = push.mqtt.as_mut() {
                mqtt.address = Some(format!("tcp://127.0.0.1:{}", broker.port()));
            }
            if let Some(client) = push
                .db_method
                .as_mut()
                .and_then(|db| db.influxdb2.as_mut())
                .and_then(|i| i.client_config.as_mut())
            {
                client.url = Some(format!("http://127.0.0.1:{influx_port}"));
            }
            let ty = model
                .spec
                .properties
                .iter()
                .find(|m| m.name == prop.name)
                // The mqtt sample's model spells its only property `temperture`.
                .or_else(|| model.spec.properties.first())
                .map(|m| m.property_type)
                .expect("a model property");
            let value = ty
                .parse("30")
                .expect("30 is a value of the sample's numeric type");
            let sample = Sample {
                device: DeviceId::new(device.namespace(), device.name()),
                property: prop.name.clone(),
                ty,
                value: value.clone(),
                timestamp_ms: 1_700_000_000_000,
            };
            for spec in sink_specs(&push).unwrap_or_else(|e| panic!("{name}: {e}")) {
                sinks.handle(&spec).push(sample.clone());
                match &spec {
                    SinkSpec::Mqtt { topic, .. } => {
                        let (got_topic, payload) = tokio::time::timeout(WAIT, published.recv())
                            .await
                            .unwrap_or_else(|_| panic!("{name}: nothing on {topic}"))
                            .expect("a message");
                        assert_eq!(&got_topic, topic, "{name}");
                        assert!(payload.contains("\"propertyName\":"), "{name}: {payload}");
                    }
                    SinkSpec::Influxdb2(influx_spec) => {
                        let body = tokio::time::timeout(WAIT, influx.recv())
                            .await
                            .unwrap_or_else(|_| panic!("{name}: no InfluxDB write"))
                            .expect("a body");
                        let measurement = influx_spec.measurement.clone().unwrap_or_default();
                        assert!(body.starts_with(&measurement), "{name}: {body}");
                        assert!(body.ends_with(" 1700000000000\n"), "{name}: {body}");
                    }
                    other => panic!("{name}: a sink the samples did not have: {}", other.name()),
                }
            }
            assert!(matches!(value, Value::Int(30) | Value::Float(_)));
        }
    }
    sinks.shutdown(Duration::from_secs(1)).await;
    consumer.abort();
}
