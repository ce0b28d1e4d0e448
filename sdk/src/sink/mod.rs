//! Sinks: where a property's samples go besides the twin (KubeEdge's `pushMethod`).
//!
//! - `mqtt`: publish to a topic (qos, retained), on the mapper's broker or another one
//!   (`address`);
//! - `http`: `POST` the sample as JSON to `hostName:port/requestPath`.
//!
//! `otel`, `dbMethod` (influxdb2, redis, TDengine, mysql) and `anomalyDetection` are refused when
//! the device is loaded with a "not supported yet" error (the device is marked `unhealthy` with
//! it): a configured destination is never silently ignored.
//!
//! Each distinct destination has one bounded, ordered queue and one worker task
//! ([`queue`]); properties with the same `pushMethod` share it.

pub mod queue;
mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgetwin_model::value::{PropertyType, Value};
use rumqttc::QoS;
use serde::Serialize;
use tokio::task::JoinSet;

use self::queue::{Deliver, SinkQueue, WorkerCounters, run_worker, sink_backoff};
pub use self::spec::{SinkSpec, sink_specs};
use crate::driver::DeviceId;
use crate::http::{HttpTarget, post_json};
use crate::metrics::{Metrics, SinkLabels};
use crate::mqtt::{Bus, Inbound};

/// Samples each sink queue holds before dropping the oldest.
pub const SINK_QUEUE_CAPACITY: usize = 1024;

/// One value read from a device, after the pipeline: what every sink receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The device.
    pub device: DeviceId,
    /// The property.
    pub property: String,
    /// The property's type.
    pub ty: PropertyType,
    /// The value.
    pub value: Value,
    /// When it was read (Unix milliseconds).
    pub timestamp_ms: i64,
}

/// The JSON a sink sends: KubeEdge mapper-framework's `DataModel` fields, in camelCase.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SampleJson<'a> {
    namespace: &'a str,
    device_name: &'a str,
    property_name: &'a str,
    value: String,
    #[serde(rename = "type")]
    ty: &'static str,
    timestamp: i64,
}

impl Sample {
    /// The sample as the JSON body sinks send.
    pub fn to_json(&self) -> Vec<u8> {
        let json = SampleJson {
            namespace: &self.device.namespace,
            device_name: &self.device.name,
            property_name: &self.property,
            value: self.value.to_wire(),
            ty: self.ty.twin_type_name(),
            timestamp: self.timestamp_ms,
        };
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&json).unwrap_or_default()
    }
}

/// A handle to push samples into one sink. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    queue: Arc<SinkQueue>,
}

impl SinkHandle {
    /// Queues a sample (never blocks; drops the oldest when full).
    pub fn push(&self, sample: Sample) {
        self.queue.push(sample);
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        self.queue.name()
    }
}

/// Every sink of a mapper, created on first use and shared by all devices.
#[derive(Debug)]
pub struct Sinks {
    bus: Bus,
    metrics: Metrics,
    client_id: String,
    open: Mutex<HashMap<SinkSpec, SinkHandle>>,
    workers: Mutex<JoinSet<()>>,
}

impl Sinks {
    /// A registry whose `mqtt` sinks without an address publish through `bus`.
    pub fn new(bus: Bus, metrics: Metrics, client_id: &str) -> Arc<Self> {
        Arc::new(Self {
            bus,
            metrics,
            client_id: client_id.to_owned(),
            open: Mutex::new(HashMap::new()),
            workers: Mutex::new(JoinSet::new()),
        })
    }

    /// The sink for `spec`, starting its worker the first time.
    pub fn handle(&self, spec: &SinkSpec) -> SinkHandle {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = open.get(spec) {
            return handle.clone();
        }
        let name = spec.name();
        let labels = SinkLabels { sink: name.clone() };
        let queue = SinkQueue::new(
            name,
            SINK_QUEUE_CAPACITY,
            self.metrics.sink_dropped.get_or_create_owned(&labels),
        );
        let counters = WorkerCounters {
            sent: self.metrics.sink_sent.get_or_create_owned(&labels),
            errors: self.metrics.sink_errors.get_or_create_owned(&labels),
        };
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        match spec {
            SinkSpec::Mqtt {
                broker,
                topic,
                qos,
                retained,
            } => {
                let bus = match broker {
                    None => self.bus.clone(),
                    Some(broker) => {
                        // Another broker: the node's bus credentials are not for it.
                        let client_id = format!("{}-sink-{}", self.client_id, open.len());
                        let (bus, inbound, task) =
                            Bus::start(broker, None, &client_id, self.metrics.clone());
                        workers.spawn(drain_inbound(inbound, task));
                        bus
                    }
                };
                let destination = MqttDestination {
                    bus,
                    topic: topic.clone(),
                    qos: qos_of(*qos),
                    retained: *retained,
                };
                workers.spawn(run_worker(
                    Arc::clone(&queue),
                    destination,
                    counters,
                    sink_backoff(),
                ));
            }
            SinkSpec::Http { target, timeout } => {
                let destination = HttpDestination {
                    target: target.clone(),
                    timeout: *timeout,
                };
                workers.spawn(run_worker(
                    Arc::clone(&queue),
                    destination,
                    counters,
                    sink_backoff(),
                ));
            }
        }
        let handle = SinkHandle { queue };
        open.insert(spec.clone(), handle.clone());
        handle
    }

    /// Gives queued samples up to `grace` to drain, then stops every worker.
    pub async fn shutdown(&self, grace: Duration) {
        let queues: Vec<SinkHandle> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let drained = async {
            while queues.iter().any(|h| !h.queue.is_empty()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(grace, drained).await;
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

/// A sink's own MQTT connection receives nothing it needs; this keeps its event loop running.
async fn drain_inbound(
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    task: tokio::task::JoinHandle<()>,
) {
    while inbound.recv().await.is_some() {}
    task.abort();
}

fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

struct MqttDestination {
    bus: Bus,
    topic: String,
    qos: QoS,
    retained: bool,
}

impl Deliver for MqttDestination {
    async fn deliver(&mut self, sample: &Sample) -> Result<(), String> {
        self.bus
            .publish_wait(&self.topic, sample.to_json(), self.qos, self.retained)
            .await
            .map_err(|e| e.to_string())
    }
}

struct HttpDestination {
    target: HttpTarget,
    timeout: Duration,
}

impl Deliver for HttpDestination {
    async fn deliver(&mut self, sample: &Sample) -> Result<(), String> {
        post_json(&self.target, &sample.to_json(), self.timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_serialise_like_kubeedge_data_models() {
        let sample = Sample {
            device: DeviceId::new("plant", "meter"),
            property: "temperature".into(),
            ty: PropertyType::Float,
            value: Value::Float(21.5),
            timestamp_ms: 1_700_000_000_000,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&sample.to_json()).expect("valid JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "namespace": "plant",
                "deviceName": "meter",
                "propertyName": "temperature",
                "value": "21.5",
                "type": "float",
                "timestamp": 1_700_000_000_000i64,
            })
        );
    }
}
