//! The mapper's one MQTT connection: a rumqttc client shared by every device task, an event
//! loop task that reconnects with backoff, and a subscription registry that is replayed after
//! every (re)connect, because a clean session forgets subscriptions.
//!
//! Publishing never blocks a device task: [`Bus::publish`] queues the message in the client's
//! bounded buffer or drops it (counted in `edgetwin_mapper_mqtt_dropped_total`). Nothing is lost
//! for good by a drop: after a reconnect every device asks for its twin again and re-reports
//! all its values.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::breaker::Backoff;
use crate::metrics::Metrics;

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A broker address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker address {input:?}: {reason}")]
pub struct BrokerAddrError {
    input: String,
    reason: &'static str,
}

impl BrokerAddr {
    /// Parses `host`, `host:port`, `mqtt://host:port` or `tcp://host:port` (port 1883 when
    /// absent). TLS schemes are refused: the mapper talks to a broker on its own node.
    pub fn parse(input: &str) -> Result<Self, BrokerAddrError> {
        let err = |reason| BrokerAddrError {
            input: input.to_owned(),
            reason,
        };
        let rest = match input.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some(("mqtts" | "ssl" | "tls", _)) => {
                return Err(err("TLS brokers are not supported yet"));
            }
            Some(_) => return Err(err("the scheme must be mqtt:// or tcp://")),
            None => input,
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse().map_err(|_| err("the port is not a number"))?,
            ),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl From<std::net::SocketAddr> for BrokerAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        BrokerAddr {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What the connection task hands to the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A connection was (re)established and every subscription replayed.
    Connected,
    /// A message arrived on a subscribed topic.
    Message {
        /// The topic.
        topic: String,
        /// The payload (empty for a removed retained message).
        payload: Vec<u8>,
    },
}

/// A handle on the shared connection. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: AsyncClient,
    subscriptions: Arc<Mutex<BTreeSet<String>>>,
    metrics: Metrics,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

/// How many outgoing requests the client buffers (while offline, or in bursts).
const REQUEST_CAPACITY: usize = 1024;
/// How many incoming messages wait for the runtime before the event loop waits.
const INBOUND_CAPACITY: usize = 1024;

impl Bus {
    /// Starts the connection task for `client_id` on `broker`. Incoming messages and
    /// (re)connects arrive on the returned receiver; the task ends when the receiver is dropped
    /// after [`Bus::disconnect`].
    pub fn start(
        broker: &BrokerAddr,
        client_id: &str,
        metrics: Metrics,
    ) -> (Bus, mpsc::Receiver<Inbound>, JoinHandle<()>) {
        let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        // Spec messages carry a Device and its DeviceModel: allow large ones in.
        options.set_max_packet_size(1024 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        // Reports and deltas are small and latency-bound: no Nagle delay.
        eventloop.network_options.set_tcp_nodelay(true);
        let subscriptions = Arc::new(Mutex::new(BTreeSet::new()));
        let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
        let bus = Bus {
            client,
            subscriptions,
            metrics,
        };
        let task = tokio::spawn(connection_loop(eventloop, bus.clone(), tx, broker.clone()));
        (bus, rx, task)
    }

    /// Subscribes to `filter` (QoS 1) now and after every reconnect.
    pub fn subscribe(&self, filter: &str) {
        let added = self.lock_subscriptions().insert(filter.to_owned());
        if added && self.client.try_subscribe(filter, QoS::AtLeastOnce).is_err() {
            // Replayed on the next connect; counted so a persistent problem is visible.
            self.metrics.mqtt_dropped.inc();
        }
    }

    /// Stops subscribing to `filter`.
    pub fn unsubscribe(&self, filter: &str) {
        if self.lock_subscriptions().remove(filter) && self.client.try_unsubscribe(filter).is_err()
        {
            self.metrics.mqtt_dropped.inc();
        }
    }

    /// Queues a publish; returns `false` (and counts a drop) when the client buffer is full.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, qos: QoS, retain: bool) -> bool {
        let queued = self.client.try_publish(topic, qos, retain, payload).is_ok();
        if !queued {
            self.metrics.mqtt_dropped.inc();
            tracing::debug!(topic, "MQTT client buffer full: message dropped");
        }
        queued
    }

    /// Publishes, waiting for room in the client buffer (used by sinks, which keep order).
    pub async fn publish_wait(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), rumqttc::ClientError> {
        self.client.publish(topic, qos, retain, payload).await
    }

    /// Sends a DISCONNECT after the messages already queued.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }

    fn lock_subscriptions(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // The set stays consistent even if a holder panicked: it is only inserted into and
        // removed from.
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn resubscribe(&self) {
        let filters: Vec<SubscribeFilter> = self
            .lock_subscriptions()
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        if !filters.is_empty() && self.client.try_subscribe_many(filters).is_err() {
            self.metrics.mqtt_dropped.inc();
            tracing::warn!("could not queue the resubscription: client buffer full");
        }
    }
}

async fn connection_loop(
    mut eventloop: EventLoop,
    bus: Bus,
    tx: mpsc::Sender<Inbound>,
    broker: BrokerAddr,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff.reset();
                bus.metrics.mqtt_connects.inc();
                tracing::info!(%broker, "MQTT connected");
                bus.resubscribe();
                if tx.send(Inbound::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = Inbound::Message {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                };
                if tx.send(message).await.is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                tracing::debug!(%broker, "MQTT disconnect sent");
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(err) => {
                if tx.is_closed() {
                    return;
                }
                let delay = backoff.next_delay();
                if connected {
                    tracing::warn!(%broker, error = %err, "MQTT connection lost; reconnecting");
                } else {
                    tracing::debug!(%broker, error = %err, retry_in = ?delay, "MQTT connect failed");
                }
                connected = false;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse_with_or_without_scheme_and_port() {
        let parse = |s| BrokerAddr::parse(s).map(|a| a.to_string());
        assert_eq!(parse("127.0.0.1"), Ok("127.0.0.1:1883".into()));
        assert_eq!(parse("localhost:1884"), Ok("localhost:1884".into()));
        assert_eq!(parse("mqtt://10.0.0.2:1885"), Ok("10.0.0.2:1885".into()));
        assert_eq!(parse("tcp://broker/"), Ok("broker:1883".into()));
        assert!(parse("mqtts://broker:8883").is_err());
        assert!(parse("http://broker").is_err());
        assert!(parse("broker:port").is_err());
        assert!(parse("").is_err());
    }
}
