//! Checking a running mapper's pipelines against `edgetwin pipeline test`'s prediction.
//!
//! A test declares the property under test twice on the same device register: once plain, once
//! with the pipeline. Both are read in the same batch, so they get the same raw values with the
//! same timestamps; the plain property's samples (through an HTTP sink into a [`SampleTap`]) are
//! therefore exactly the input the pipeline saw. [`predict`] runs that input through
//! `edgetwin_model::pipeline::preview::run`, the function behind `edgetwin pipeline test`, and
//! the test compares the prediction with what the pipeline property's sinks and twin received.

use std::sync::{Arc, Mutex};

use edgetwin_model::pipeline::preview::{self, PreviewRow};
use edgetwin_model::pipeline::{Outcome, Pipeline, PipelineSpec, Sample as PipelineSample};
use edgetwin_model::value::{PropertyType, Value};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One sample an HTTP sink posted (KubeEdge's data model fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TappedSample {
    /// The device's namespace.
    pub namespace: String,
    /// The device's name.
    pub device_name: String,
    /// The property.
    pub property_name: String,
    /// The value's wire form.
    pub value: String,
    /// When it was read (or released by a pipeline timer), Unix ms.
    pub timestamp: i64,
}

/// An HTTP server standing for an HTTP sink's destination: it keeps every sample posted to it,
/// in arrival order, and answers `204`.
#[derive(Debug)]
pub struct SampleTap {
    port: u16,
    samples: Arc<Mutex<Vec<TappedSample>>>,
    task: JoinHandle<()>,
}

impl SampleTap {
    /// Listens on a free loopback port.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> SampleTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&samples);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Some(sample) = read_post(stream).await {
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                }
            }
        });
        SampleTap {
            port,
            samples,
            task,
        }
    }

    /// The port, for the sink's `pushMethod.http` (`hostName: http://127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `pushMethod.http` block (YAML, indented by `indent` spaces) posting to this tap.
    pub fn push_method_yaml(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}http:\n{pad}  hostName: http://127.0.0.1\n{pad}  port: {}\n{pad}  requestPath: /samples\n",
            self.port
        )
    }

    /// The samples of one property so far, in arrival order.
    pub fn of(&self, property: &str) -> Vec<TappedSample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.property_name == property)
            .cloned()
            .collect()
    }

    /// `(timestamp, value)` of one property's samples, in arrival order.
    pub fn series(&self, property: &str) -> Vec<(i64, String)> {
        self.of(property)
            .into_iter()
            .map(|s| (s.timestamp, s.value))
            .collect()
    }
}

impl Drop for SampleTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_post(mut stream: TcpStream) -> Option<TappedSample> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let body = loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                break body.to_owned();
            }
        }
    };
    let _ = stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        .await;
    serde_json::from_str(&body).ok()
}

/// What `edgetwin pipeline test` predicts for the raw samples `(timestamp, wire value)` of a
/// property of type `ty`: the `(time, value)` of every report, timer releases included (at their
/// deadline), in order, with the preview's rows for a failure message.
///
/// # Panics
/// When the pipeline does not build or a raw value is not of the type.
pub fn predict(
    spec: &PipelineSpec,
    ty: PropertyType,
    raw: &[(i64, String)],
) -> (Vec<(i64, String)>, String) {
    let mut pipeline = Pipeline::build(spec).expect("a valid pipeline");
    let samples: Vec<PipelineSample> = raw
        .iter()
        .map(|(at, wire)| {
            let value: Value = ty.parse(wire).expect("a raw value of the property's type");
            PipelineSample::new(value, u64::try_from(*at).unwrap_or(0))
        })
        .collect();
    let rows: Vec<PreviewRow> = preview::run(&mut pipeline, samples);
    let reported = rows
        .iter()
        .filter_map(|row| match &row.result {
            Ok(Outcome::Report { value, .. }) => Some((row.at_ms as i64, value.to_wire())),
            _ => None,
        })
        .collect();
    (reported, preview::render_table(&rows))
}

/// The values a twin report sequence carries for `property`, in order.
pub fn twin_values(reports: &[crate::testkit::TwinReport], property: &str) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| r.values.get(property).cloned())
        .collect()
}

/// Whether `part` is `whole` with some elements left out (order kept).
pub fn is_subsequence(part: &[String], whole: &[String]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

/// Parses pipeline steps from YAML (what goes under `pipeline:`).
///
/// # Panics
/// When the YAML is not a list of steps.
pub fn pipeline_spec(yaml: &str) -> PipelineSpec {
    let device = format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: x}}\nspec:\n  properties:\n  - name: p\n    pipeline:\n{}",
        yaml.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let docs = edgetwin_model::devices::load::from_str(&device, "pipeline").expect("valid steps");
    match &docs[0].manifest {
        edgetwin_model::devices::load::Manifest::Device(d) => {
            d.spec.properties[0].pipeline.clone().expect("a pipeline")
        }
        edgetwin_model::devices::load::Manifest::DeviceModel(_) => unreachable!("a Device"),
    }
}

/// Checks that the samples the tap got for `property` (with the pipeline `pipeline_yaml`, type
/// `ty`) are exactly what `edgetwin pipeline test` predicts from the samples of `raw` (the same
/// register without a pipeline), and returns them. Releases the preview makes after the last raw
/// sample (a value still held when the mapper stopped) are not expected.
///
/// # Panics
/// When they differ (the message shows the preview's table).
pub fn assert_predicted(
    tap: &SampleTap,
    raw: &str,
    property: &str,
    ty: PropertyType,
    pipeline_yaml: &str,
) -> Vec<(i64, String)> {
    let input = tap.series(raw);
    assert!(!input.is_empty(), "no raw samples of {raw}");
    let last = input.last().map_or(0, |(at, _)| *at);
    let (mut predicted, table) = predict(&pipeline_spec(pipeline_yaml), ty, &input);
    predicted.retain(|(at, _)| *at <= last);
    let actual = tap.series(property);
    assert_eq!(
        actual, predicted,
        "{property}: the mapper's samples differ from the preview of {raw}'s samples:\n{table}"
    );
    actual
}

/// A consumer of an MQTT sink: keeps every sample published under a topic filter.
#[derive(Debug)]
pub struct MqttTap {
    samples: Arc<Mutex<Vec<(String, TappedSample)>>>,
    task: JoinHandle<()>,
}

impl MqttTap {
    /// Subscribes to `filter` on the broker at `127.0.0.1:port` (QoS 1) and waits for the
    /// subscription.
    ///
    /// # Panics
    /// When the subscription is not acknowledged in time.
    pub async fn start(port: u16, filter: &str) -> MqttTap {
        let mut options = rumqttc::MqttOptions::new(
            format!("mqtt-tap-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(std::time::Duration::from_secs(5));
        let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .expect("subscribe queued");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&samples);
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            while let Ok(event) = events.poll().await {
                match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                        if let Ok(sample) = serde_json::from_slice::<TappedSample>(&p.payload) {
                            kept.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((p.topic.clone(), sample));
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), subscribed)
            .await
            .expect("subscribed in time")
            .expect("subscribed");
        MqttTap { samples, task }
    }

    /// `(timestamp, value)` of the samples published on `topic`, in arrival order.
    pub fn series(&self, topic: &str) -> Vec<(i64, String)> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, s)| (s.timestamp, s.value.clone()))
            .collect()
    }
}

impl Drop for MqttTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
