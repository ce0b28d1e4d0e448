//! The agent's Prometheus metrics (OpenMetrics text via `prometheus-client`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `edgetwin_messages_in_total` | counter | `kind`: twin_update, twin_get, state_update, membership_get, twin_cloud_updated |
//! | `edgetwin_messages_out_total` | counter | `kind`: update_result, update_delta, update_document, get_result, state_result, membership_get_result, membership_updated, device_spec |
//! | `edgetwin_rejects_total` | counter | `reason`, see [`Reject`] |
//! | `edgetwin_store_commit_seconds` | histogram | |
//! | `edgetwin_batch_messages` | histogram | |
//! | `edgetwin_outbox_entries` | gauge | |
//! | `edgetwin_devices` | gauge | |
//! | `edgetwin_broker_connected` | gauge | |
//! | `edgetwin_broker_reconnects_total` | counter | |
//! | `edgetwin_bus_refused_total` | counter | `what`: connect, publish, subscribe (the embedded broker's access control) |

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why an inbound message was refused (the `reason` label of `edgetwin_rejects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The payload is not JSON.
    MalformedJson,
    /// The JSON has the wrong shape.
    WrongShape,
    /// The payload is larger than `limits.maxPayloadBytes`.
    TooLarge,
    /// The topic has an empty level or a wildcard, or the wrong number of levels.
    BadTopic,
    /// The topic ends in an event the agent does not handle.
    UnknownTopic,
    /// No such device on this node.
    UnknownDevice,
    /// The twin engine refused the change (wrong type, unknown property, stale version, …).
    Refused,
    /// A state that is not one of KubeEdge's device states.
    BadState,
    /// `twin/cloud_updated` over MQTT (only the cloud tunnel may sync desired values).
    ForgedCloudUpdate,
    /// The outbox is full.
    OutboxFull,
    /// The store failed.
    StoreError,
}

impl Reject {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::MalformedJson => "malformed_json",
            Reject::WrongShape => "wrong_shape",
            Reject::TooLarge => "too_large",
            Reject::BadTopic => "bad_topic",
            Reject::UnknownTopic => "unknown_topic",
            Reject::UnknownDevice => "unknown_device",
            Reject::Refused => "refused",
            Reject::BadState => "bad_state",
            Reject::ForgedCloudUpdate => "forged_cloud_update",
            Reject::OutboxFull => "outbox_full",
            Reject::StoreError => "store_error",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    what: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric of the agent. Shared (`Arc`) between the service and the HTTP endpoint.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages_in: Family<KindLabel, Counter>,
    messages_out: Family<KindLabel, Counter>,
    rejects: Family<ReasonLabel, Counter>,
    store_commit: Histogram,
    batch_messages: Histogram,
    outbox_entries: Gauge,
    devices: Gauge,
    broker_connected: Gauge,
    broker_reconnects: Counter,
    bus_refused: Family<WhatLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `count` histogram bounds from `first`, each twice the one before. (Not prometheus-client's
/// `exponential_buckets`, whose `powf` would be the edge binary's only use of libm.)
fn doubling_buckets(first: f64, count: usize) -> impl Iterator<Item = f64> {
    std::iter::successors(Some(first), |bound| Some(bound * 2.0)).take(count)
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let messages_in = Family::<KindLabel, Counter>::default();
        let messages_out = Family::<KindLabel, Counter>::default();
        let rejects = Family::<ReasonLabel, Counter>::default();
        // 50 µs … ~3 s.
        let store_commit = Histogram::new(doubling_buckets(0.000_05, 17));
        let batch_messages = Histogram::new(doubling_buckets(1.0, 12));
        let outbox_entries = Gauge::default();
        let devices = Gauge::default();
        let broker_connected = Gauge::default();
        let broker_reconnects = Counter::default();
        let bus_refused = Family::<WhatLabel, Counter>::default();
        registry.register(
            "edgetwin_messages_in",
            "MQTT messages received by the agent, by kind",
            messages_in.clone(),
        );
        registry.register(
            "edgetwin_messages_out",
            "MQTT messages published by the agent, by kind",
            messages_out.clone(),
        );
        registry.register(
            "edgetwin_rejects",
            "Inbound messages refused, by reason",
            rejects.clone(),
        );
        registry.register(
            "edgetwin_store_commit_seconds",
            "Time to commit one batch to the store",
            store_commit.clone(),
        );
        registry.register(
            "edgetwin_batch_messages",
            "Inbound messages applied per store transaction",
            batch_messages.clone(),
        );
        registry.register(
            "edgetwin_outbox_entries",
            "Cloud-bound entries waiting in the outbox",
            outbox_entries.clone(),
        );
        registry.register(
            "edgetwin_devices",
            "Devices served by this node",
            devices.clone(),
        );
        registry.register(
            "edgetwin_broker_connected",
            "1 when the agent is connected to the MQTT broker",
            broker_connected.clone(),
        );
        registry.register(
            "edgetwin_broker_reconnects",
            "Connections to the broker after the first",
            broker_reconnects.clone(),
        );
        registry.register(
            "edgetwin_bus_refused",
            "Connections, publishes and subscriptions the bus policy refused",
            bus_refused.clone(),
        );
        Metrics {
            registry,
            messages_in,
            messages_out,
            rejects,
            store_commit,
            batch_messages,
            outbox_entries,
            devices,
            broker_connected,
            broker_reconnects,
            bus_refused,
        }
    }

    /// Counts a connection, publish or subscription the bus policy refused.
    pub fn bus_refused(&self, what: &'static str) {
        self.bus_refused.get_or_create(&WhatLabel { what }).inc();
    }

    /// How many `what`s the bus policy refused (tests and diagnostics).
    pub fn bus_refusals(&self, what: &'static str) -> u64 {
        self.bus_refused.get_or_create(&WhatLabel { what }).get()
    }

    /// Counts a received message.
    pub fn message_in(&self, kind: &'static str) {
        self.messages_in.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts `n` published messages of one kind.
    pub fn messages_out(&self, kind: &'static str, n: u64) {
        self.messages_out
            .get_or_create(&KindLabel { kind })
            .inc_by(n);
    }

    /// Counts a refused message.
    pub fn reject(&self, reason: Reject) {
        self.rejects
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Records one committed batch.
    pub fn batch_committed(&self, messages: usize, took: Duration) {
        self.store_commit.observe(took.as_secs_f64());
        self.batch_messages.observe(messages as f64);
    }

    /// Sets the outbox depth.
    pub fn set_outbox_entries(&self, entries: u64) {
        self.outbox_entries.set(entries as i64);
    }

    /// Sets the number of devices.
    pub fn set_devices(&self, devices: usize) {
        self.devices.set(devices as i64);
    }

    /// Records a connection state change.
    pub fn broker_connection(&self, connected: bool, reconnect: bool) {
        self.broker_connected.set(i64::from(connected));
        if reconnect {
            self.broker_reconnects.inc();
        }
    }

    /// The count of rejects for `reason` (tests and diagnostics).
    pub fn rejects(&self, reason: Reject) -> u64 {
        self.rejects
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .get()
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_buckets_are_the_exponential_ones_without_powf() {
        let doubled: Vec<f64> = doubling_buckets(0.000_05, 17).collect();
        let exponential: Vec<f64> =
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 17).collect();
        assert_eq!(doubled.len(), exponential.len());
        for (ours, theirs) in doubled.iter().zip(&exponential) {
            assert!(
                (ours - theirs).abs() <= theirs * 1e-12,
                "{ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn renders_counters_with_labels_gauges_and_histograms() {
        let metrics = Metrics::new();
        metrics.message_in("twin_update");
        metrics.message_in("twin_update");
        metrics.messages_out("update_result", 2);
        metrics.reject(Reject::UnknownDevice);
        metrics.batch_committed(3, Duration::from_micros(300));
        metrics.set_outbox_entries(7);
        metrics.set_devices(2);
        metrics.broker_connection(true, false);
        let text = metrics.render();
        for line in [
            "edgetwin_messages_in_total{kind=\"twin_update\"} 2",
            "edgetwin_messages_out_total{kind=\"update_result\"} 2",
            "edgetwin_rejects_total{reason=\"unknown_device\"} 1",
            "edgetwin_store_commit_seconds_count 1",
            "edgetwin_batch_messages_sum 3.0",
            "edgetwin_outbox_entries 7",
            "edgetwin_devices 2",
            "edgetwin_broker_connected 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(metrics.rejects(Reject::UnknownDevice), 1);
    }
}
