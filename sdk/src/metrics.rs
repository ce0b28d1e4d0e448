//! Prometheus metrics of a mapper: reads, writes, errors and latency per device, twin reports,
//! MQTT reconnects and sink deliveries. Served in the Prometheus text format by
//! [`crate::http::serve_metrics`] on a loopback port.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-device series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeviceLabels {
    /// `{namespace}/{name}`.
    pub device: String,
}

/// Labels of per-device error series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `{namespace}/{name}`.
    pub device: String,
    /// [`crate::DriverError::kind`].
    pub kind: String,
}

/// Labels of per-device state series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StateLabels {
    /// `{namespace}/{name}`.
    pub device: String,
    /// `online`, `offline` or `unhealthy`.
    pub state: String,
}

/// Labels of per-sink series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink's name, e.g. `mqtt:sensors/temp` or `http:127.0.0.1:8080/ingest`.
    pub sink: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs … 1.6 s, doubling: `exponential_buckets(0.0001, 2.0, 15)` without its `powf`, the
    // only use of libm in a mapper binary (loading libm costs resident memory: BENCHMARKS.md,
    // "Mapper SDK › Design choices"). 15 bounds and +Inf fill the 16 slots that the histogram's
    // bucket vector grows to exactly (one more would double it to 32 slots: 256 bytes more per
    // histogram, two per device).
    let mut bounds = [0.0001_f64; 15];
    for i in 1..bounds.len() {
        bounds[i] = bounds[i - 1] * 2.0;
    }
    Histogram::new(bounds)
}

/// All series of one mapper. Cheap to clone (every series is reference counted).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Points read successfully.
    pub reads: Family<DeviceLabels, Counter>,
    /// Points that failed to read.
    pub read_errors: Family<ErrorLabels, Counter>,
    /// Duration of one batched read.
    pub read_seconds: HistogramFamily<DeviceLabels>,
    /// Successful writes.
    pub writes: Family<DeviceLabels, Counter>,
    /// Failed writes.
    pub write_errors: Family<ErrorLabels, Counter>,
    /// Duration of one write.
    pub write_seconds: HistogramFamily<DeviceLabels>,
    /// `twin/update` messages published.
    pub reports: Family<DeviceLabels, Counter>,
    /// 1 for the device's current state, 0 for the others.
    pub device_state: Family<StateLabels, Gauge>,
    /// Connections to the device opened.
    pub connects: Family<DeviceLabels, Counter>,
    /// Samples delivered by a sink.
    pub sink_sent: Family<SinkLabels, Counter>,
    /// Failed sink delivery attempts (each is retried).
    pub sink_errors: Family<SinkLabels, Counter>,
    /// Samples dropped because a sink's queue was full.
    pub sink_dropped: Family<SinkLabels, Counter>,
    /// Samples a sink's destination refused for good (not retried).
    pub sink_rejected: Family<SinkLabels, Counter>,
    /// Samples waiting in a sink's queue.
    pub sink_queued: Family<SinkLabels, Gauge>,
    /// 1 while a sink delivers, 0 from a failed delivery until the next success.
    pub sink_up: Family<SinkLabels, Gauge>,
    /// MQTT connections (re)established.
    pub mqtt_connects: Counter,
    /// MQTT messages the runtime could not queue (client buffer full while offline).
    pub mqtt_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every series registered under the `edgetwin_mapper` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgetwin_mapper");
        let reads = Family::default();
        let read_errors = Family::default();
        let read_seconds: HistogramFamily<DeviceLabels> =
            Family::new_with_constructor(latency_histogram);
        let writes = Family::default();
        let write_errors = Family::default();
        let write_seconds: HistogramFamily<DeviceLabels> =
            Family::new_with_constructor(latency_histogram);
        let reports = Family::default();
        let device_state = Family::default();
        let connects = Family::default();
        let sink_sent = Family::default();
        let sink_errors = Family::default();
        let sink_dropped = Family::default();
        let sink_rejected = Family::default();
        let sink_queued = Family::default();
        let sink_up = Family::default();
        let mqtt_connects = Counter::default();
        let mqtt_dropped = Counter::default();
        registry.register("reads", "Points read", reads.clone());
        registry.register(
            "read_errors",
            "Points that failed to read",
            read_errors.clone(),
        );
        registry.register(
            "read_duration_seconds",
            "Duration of one batched read",
            read_seconds.clone(),
        );
        registry.register("writes", "Successful writes", writes.clone());
        registry.register("write_errors", "Failed writes", write_errors.clone());
        registry.register(
            "write_duration_seconds",
            "Duration of one write",
            write_seconds.clone(),
        );
        registry.register("reports", "twin/update messages published", reports.clone());
        registry.register(
            "device_state",
            "1 for the device's current state",
            device_state.clone(),
        );
        registry.register("connects", "Device sessions opened", connects.clone());
        registry.register(
            "sink_sent",
            "Samples delivered by a sink",
            sink_sent.clone(),
        );
        registry.register(
            "sink_errors",
            "Failed sink delivery attempts",
            sink_errors.clone(),
        );
        registry.register(
            "sink_dropped",
            "Samples dropped because a sink queue was full",
            sink_dropped.clone(),
        );
        registry.register(
            "sink_rejected",
            "Samples a sink's destination refused for good",
            sink_rejected.clone(),
        );
        registry.register(
            "sink_queued",
            "Samples waiting in a sink's queue",
            sink_queued.clone(),
        );
        registry.register(
            "sink_up",
            "1 while a sink delivers, 0 while its deliveries fail",
            sink_up.clone(),
        );
        registry.register(
            "mqtt_connects",
            "MQTT connections established",
            mqtt_connects.clone(),
        );
        registry.register(
            "mqtt_dropped",
            "MQTT messages not queued (client buffer full)",
            mqtt_dropped.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reads,
            read_errors,
            read_seconds,
            writes,
            write_errors,
            write_seconds,
            reports,
            device_state,
            connects,
            sink_sent,
            sink_errors,
            sink_dropped,
            sink_rejected,
            sink_queued,
            sink_up,
            mqtt_connects,
            mqtt_dropped,
        }
    }

    /// The series in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The per-device metrics handle used by a device task.
    pub fn device(&self, device: &str) -> DeviceMetrics {
        let labels = DeviceLabels {
            device: device.to_owned(),
        };
        DeviceMetrics {
            reads: self.reads.get_or_create_owned(&labels),
            read_seconds: self.read_seconds.get_or_create_owned(&labels),
            writes: self.writes.get_or_create_owned(&labels),
            write_seconds: self.write_seconds.get_or_create_owned(&labels),
            reports: self.reports.get_or_create_owned(&labels),
            connects: self.connects.get_or_create_owned(&labels),
            device: device.to_owned(),
            metrics: self.clone(),
        }
    }

    /// Successful writes to a device so far.
    pub fn writes_of(&self, device: &str) -> u64 {
        self.writes
            .get(&DeviceLabels {
                device: device.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    /// Points of a device that failed to read so far with errors of `kind`
    /// ([`crate::DriverError::kind`]).
    pub fn read_errors_of(&self, device: &str, kind: &str) -> u64 {
        self.read_errors
            .get(&ErrorLabels {
                device: device.to_owned(),
                kind: kind.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    /// Writes to a device that failed so far with errors of `kind`.
    pub fn write_errors_of(&self, device: &str, kind: &str) -> u64 {
        self.write_errors
            .get(&ErrorLabels {
                device: device.to_owned(),
                kind: kind.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    /// `twin/update` messages published for a device so far.
    pub fn reports_of(&self, device: &str) -> u64 {
        self.reports
            .get(&DeviceLabels {
                device: device.to_owned(),
            })
            .map_or(0, |c| c.get())
    }
}

/// The series of one device, resolved once so the hot path does no label lookups.
#[derive(Debug, Clone)]
pub struct DeviceMetrics {
    reads: Counter,
    read_seconds: Histogram,
    writes: Counter,
    write_seconds: Histogram,
    reports: Counter,
    connects: Counter,
    device: String,
    metrics: Metrics,
}

impl DeviceMetrics {
    /// Records one batched read of `ok` points that succeeded.
    pub fn read(&self, ok: usize, took: Duration) {
        self.reads.inc_by(ok as u64);
        self.read_seconds.observe(took.as_secs_f64());
    }

    /// Records a point that failed to read.
    pub fn read_error(&self, kind: &str) {
        self.metrics
            .read_errors
            .get_or_create(&ErrorLabels {
                device: self.device.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Records a successful write.
    pub fn write(&self, took: Duration) {
        self.writes.inc();
        self.write_seconds.observe(took.as_secs_f64());
    }

    /// Records a failed write.
    pub fn write_error(&self, kind: &str) {
        self.metrics
            .write_errors
            .get_or_create(&ErrorLabels {
                device: self.device.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Records a `twin/update` published.
    pub fn report(&self) {
        self.reports.inc();
    }

    /// Records a session opened.
    pub fn connect(&self) {
        self.connects.inc();
    }

    /// Sets the device's state gauge: 1 for `state`, 0 for the other states.
    pub fn state(&self, state: &str) {
        for known in ["online", "offline", "unhealthy"] {
            self.metrics
                .device_state
                .get_or_create(&StateLabels {
                    device: self.device.clone(),
                    state: known.to_owned(),
                })
                .set(i64::from(known == state));
        }
    }

    /// Drops the device's state series (the device was removed).
    pub fn forget_state(&self) {
        for known in ["online", "offline", "unhealthy"] {
            self.metrics.device_state.remove(&StateLabels {
                device: self.device.clone(),
                state: known.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_series_are_counted_and_encoded() {
        let metrics = Metrics::new();
        let lamp = metrics.device("default/lamp");
        lamp.read(3, Duration::from_millis(2));
        lamp.read_error("timeout");
        lamp.write(Duration::from_millis(1));
        lamp.report();
        lamp.state("online");
        assert_eq!(metrics.writes_of("default/lamp"), 1);
        assert_eq!(metrics.reports_of("default/lamp"), 1);
        assert_eq!(metrics.writes_of("default/other"), 0);
        let text = metrics.encode();
        assert!(
            text.contains("edgetwin_mapper_reads_total{device=\"default/lamp\"} 3"),
            "{text}"
        );
        assert!(text.contains(
            "edgetwin_mapper_read_errors_total{device=\"default/lamp\",kind=\"timeout\"} 1"
        ));
        assert!(
            text.contains(
                "edgetwin_mapper_device_state{device=\"default/lamp\",state=\"online\"} 1"
            )
        );
        assert!(
            text.contains(
                "edgetwin_mapper_device_state{device=\"default/lamp\",state=\"offline\"} 0"
            )
        );
        assert!(
            text.contains("edgetwin_mapper_read_duration_seconds_count{device=\"default/lamp\"} 1")
        );
        lamp.forget_state();
        assert!(!metrics.encode().contains("state=\"online\""));
    }
}
