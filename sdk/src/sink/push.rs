//! KubeEdge's push methods that need no client library: `mqtt` and `http`, one sample per
//! message or request (KubeEdge's consumers expect one `DataModel` each), and the stand-in for a
//! sink whose feature the mapper was built without.

use std::time::Duration;

use rumqttc::QoS;

use super::queue::{Deliver, DeliveryError};
use super::{Sample, SinkSpec};
use crate::http::{HttpError, HttpTarget, post_json};
use crate::mqtt::{Bus, Inbound};

/// Publishes each sample to a topic.
pub(super) struct MqttDestination {
    bus: Bus,
    topic: String,
    qos: QoS,
    retained: bool,
}

impl MqttDestination {
    pub(super) fn new(bus: Bus, topic: &str, qos: u8, retained: bool) -> Self {
        Self {
            bus,
            topic: topic.to_owned(),
            qos: match qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            },
            retained,
        }
    }
}

impl Deliver for MqttDestination {
    const MAX_BATCH: usize = 64;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        for (index, sample) in batch.iter().enumerate() {
            self.bus
                .publish_wait(&self.topic, sample.to_json(), self.qos, self.retained)
                .await
                .map_err(|e| DeliveryError::transient(e.to_string()).after(index))?;
        }
        Ok(())
    }
}

/// POSTs each sample as JSON.
pub(super) struct HttpDestination {
    target: HttpTarget,
    timeout: Duration,
}

impl HttpDestination {
    pub(super) fn new(target: HttpTarget, timeout: Duration) -> Self {
        Self { target, timeout }
    }
}

impl Deliver for HttpDestination {
    const MAX_BATCH: usize = 64;

    async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
        for (index, sample) in batch.iter().enumerate() {
            post_json(&self.target, &sample.to_json(), self.timeout)
                .await
                .map_err(|e| http_failure(e).after(index))?;
        }
        Ok(())
    }
}

/// A 4xx answer (but 408 and 429) refuses the sample itself; anything else may pass later.
fn http_failure(err: HttpError) -> DeliveryError {
    match err {
        HttpError::Status(status)
            if (400..500).contains(&status) && status != 408 && status != 429 =>
        {
            DeliveryError::permanent(format!("status {status}"))
        }
        other => DeliveryError::transient(other.to_string()),
    }
}

/// A sink whose cargo feature this mapper was built without: never delivers, and says why
/// (loading a device refuses such sinks first; this covers specs built in code).
pub(super) struct NotBuilt {
    reason: String,
}

impl NotBuilt {
    pub(super) fn new(spec: &SinkSpec) -> Self {
        Self {
            reason: format!(
                "the mapper was built without the feature of sink {}",
                spec.name()
            ),
        }
    }
}

impl Deliver for NotBuilt {
    const MAX_BATCH: usize = 1;

    async fn deliver(&mut self, _batch: &[Sample]) -> Result<(), DeliveryError> {
        Err(DeliveryError::transient(self.reason.clone()))
    }
}

/// A sink's own MQTT connection receives nothing it needs; this keeps its event loop running.
pub(super) async fn drain_inbound(
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    task: tokio::task::JoinHandle<()>,
) {
    while inbound.recv().await.is_some() {}
    task.abort();
}
