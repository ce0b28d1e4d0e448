//! Sinks: where a property's samples go besides the twin (KubeEdge's `pushMethod`).
//!
//! - `mqtt`: publish to a topic (qos, retained), on the mapper's broker or another one
//!   (`address`);
//! - `http`: `POST` the sample as JSON to `hostName:port/requestPath`;
//! - `otel` (feature `sink-otel`): OpenTelemetry gauges over OTLP/HTTP;
//! - `dbMethod.redis` (feature `sink-redis`): a sorted set per device;
//! - `dbMethod.mysql` (feature `sink-mysql`): a table per property, created when absent;
//! - `dbMethod.influxdb2` (feature `sink-influxdb2`): the InfluxDB v2 write API;
//! - `dbMethod.TDEngine` (feature `sink-tdengine`): TDengine's REST interface.
//!
//! A sink the mapper was built without, and `anomalyDetection`, are refused when the device is
//! loaded (the device is marked `unhealthy` with the reason): a configured destination is never
//! silently ignored. Passwords and tokens come from files or the environment ([`credentials`]).
//!
//! Each distinct destination has one bounded, ordered queue and one worker task that delivers in
//! batches ([`queue`]); properties with the same destination share it. Every sink receives the
//! values the pipeline let through, the same ones the twin gets. `docs/data-pipeline.md`
//! documents each sink with an example.

pub mod credentials;
#[cfg(feature = "sink-influxdb2")]
pub mod influxdb2;
#[cfg(feature = "sink-mysql")]
mod mysql;
#[cfg(feature = "sink-otel")]
pub mod otel;
mod push;
pub mod queue;
#[cfg(feature = "sink-redis")]
mod redis;
mod spec;
#[cfg(feature = "sink-tdengine")]
pub mod tdengine;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgetwin_model::value::{PropertyType, Value};
use serde::Serialize;
use tokio::task::JoinSet;

use self::credentials::Secrets;
use self::queue::{Deliver, QueueLimits, QueueMetrics, SinkQueue, run_worker, sink_backoff};
pub use self::spec::{
    DB_TIMEOUT, Influxdb2Spec, MysqlSpec, OtelSpec, RedisSpec, SinkSpec, TdEngineSpec, mysql_table,
    sink_specs, tdengine_stable, tdengine_subtable,
};
use crate::driver::DeviceId;
use crate::metrics::{Metrics, SinkLabels};
use crate::mqtt::Bus;

/// Samples each sink queue holds before dropping the oldest.
pub const SINK_QUEUE_CAPACITY: usize = 1024;

/// Bytes of samples each sink queue holds before dropping the oldest (by
/// [`Sample::approx_bytes`]; bounds queues of large string or bytes values).
pub const SINK_QUEUE_BYTES: usize = 4 * 1024 * 1024;

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

    /// Roughly how much memory the sample holds (for the queue's byte limit).
    pub fn approx_bytes(&self) -> usize {
        let value = match &self.value {
            Value::String(text) => text.len(),
            Value::Bytes(bytes) => bytes.len(),
            Value::Int(_) | Value::Float(_) | Value::Boolean(_) => 0,
        };
        std::mem::size_of::<Sample>()
            + self.device.namespace.len()
            + self.device.name.len()
            + self.property.len()
            + value
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

    /// Why the sink is down (its deliveries fail), or `None` while it delivers.
    pub fn failure(&self) -> Option<String> {
        self.queue.failure()
    }

    /// Samples waiting to be delivered.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

/// How the sinks of a mapper are set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// The bounds of each sink's queue.
    pub limits: QueueLimits,
    /// A directory of secret files, one per variable name, looked at before the environment
    /// (see [`Secrets`]).
    pub secrets_dir: Option<PathBuf>,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            limits: QueueLimits {
                samples: SINK_QUEUE_CAPACITY,
                bytes: SINK_QUEUE_BYTES,
            },
            secrets_dir: None,
        }
    }
}

/// Every sink of a mapper, created on first use and shared by all devices.
#[derive(Debug)]
pub struct Sinks {
    bus: Bus,
    metrics: Metrics,
    client_id: String,
    limits: QueueLimits,
    #[cfg_attr(
        not(any(
            feature = "sink-redis",
            feature = "sink-mysql",
            feature = "sink-influxdb2",
            feature = "sink-tdengine"
        )),
        allow(dead_code)
    )]
    secrets: Secrets,
    open: Mutex<HashMap<SinkSpec, SinkHandle>>,
    workers: Mutex<JoinSet<()>>,
}

impl Sinks {
    /// A registry whose `mqtt` sinks without an address publish through `bus`.
    pub fn new(bus: Bus, metrics: Metrics, client_id: &str, settings: SinkSettings) -> Arc<Self> {
        Arc::new(Self {
            bus,
            metrics,
            client_id: client_id.to_owned(),
            limits: settings.limits,
            secrets: Secrets::new(settings.secrets_dir),
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
        let labels = SinkLabels { sink: spec.name() };
        let queue = SinkQueue::new(
            labels.sink.clone(),
            self.limits,
            QueueMetrics {
                sent: self.metrics.sink_sent.get_or_create_owned(&labels),
                errors: self.metrics.sink_errors.get_or_create_owned(&labels),
                dropped: self.metrics.sink_dropped.get_or_create_owned(&labels),
                rejected: self.metrics.sink_rejected.get_or_create_owned(&labels),
                queued: self.metrics.sink_queued.get_or_create_owned(&labels),
                up: self.metrics.sink_up.get_or_create_owned(&labels),
            },
        );
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let worker = Worker {
            queue: Arc::clone(&queue),
            workers: &mut workers,
        };
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
                        worker.workers.spawn(push::drain_inbound(inbound, task));
                        bus
                    }
                };
                worker.start(push::MqttDestination::new(bus, topic, *qos, *retained));
            }
            SinkSpec::Http { target, timeout } => {
                worker.start(push::HttpDestination::new(target.clone(), *timeout));
            }
            #[cfg(feature = "sink-otel")]
            SinkSpec::Otel(otel) => worker.start(otel::OtelDestination::new(otel.clone())),
            #[cfg(feature = "sink-redis")]
            SinkSpec::Redis(redis) => worker.start(redis::RedisDestination::new(
                redis.clone(),
                self.secrets.clone(),
            )),
            #[cfg(feature = "sink-mysql")]
            SinkSpec::Mysql(mysql) => worker.start(mysql::MysqlDestination::new(
                mysql.clone(),
                self.secrets.clone(),
            )),
            #[cfg(feature = "sink-influxdb2")]
            SinkSpec::Influxdb2(influx) => worker.start(influxdb2::Influxdb2Destination::new(
                influx.clone(),
                self.secrets.clone(),
            )),
            #[cfg(feature = "sink-tdengine")]
            SinkSpec::TdEngine(td) => worker.start(tdengine::TdEngineDestination::new(
                td.clone(),
                self.secrets.clone(),
            )),
            #[allow(unreachable_patterns)] // every variant is handled when every feature is on
            other => worker.start(push::NotBuilt::new(other)),
        }
        let handle = SinkHandle { queue };
        open.insert(spec.clone(), handle.clone());
        handle
    }

    /// Gives queued samples up to `grace` to be delivered, then stops every worker.
    pub async fn shutdown(&self, grace: Duration) {
        let queues: Vec<SinkHandle> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let drained = async {
            while queues.iter().any(|h| !h.queue.is_idle()) {
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

/// Starts the worker of one queue.
struct Worker<'a> {
    queue: Arc<SinkQueue>,
    workers: &'a mut JoinSet<()>,
}

impl Worker<'_> {
    fn start<D: Deliver>(self, destination: D) {
        self.workers
            .spawn(run_worker(self.queue, destination, sink_backoff()));
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
