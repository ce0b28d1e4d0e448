//! The event bus: how the twin service reaches the MQTT broker. Two transports behind one
//! interface ([`Bus`] to publish, [`BusEvents`] to receive):
//!
//! - **MQTT** ([`Bus::start`], module `mqtt`): a rumqttc client to an external broker (TLS,
//!   credentials, reconnect with backoff, manual acks after the commit).
//! - **Local link** ([`Bus::start_embedded`], module `local`, feature `embedded-broker`): when the
//!   broker is the embedded rumqttd, the agent is one of its in-process connections. Publishes go
//!   into the router's queue and forwards come out of it: no TCP, no MQTT encoding, no syscalls.
//!
//! What the service sees is the same: [`BusEvent::Connected`] once subscribed (again),
//! [`BusEvent::Message`] per inbound publish, [`BusEvent::Disconnected`] when the connection is
//! lost. Durability is the same too: the service answers only after its commit, and an
//! [`AckToken`] (MQTT only) tells the external broker it may forget a publish. Towards the
//! embedded broker there is nothing to acknowledge: it lives and dies with the agent's process,
//! and a publisher's own client resends whatever the broker had not acknowledged to it.

#[cfg(feature = "embedded-broker")]
mod local;
mod mqtt;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::QoS;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use mqtt::AckToken;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsFiles>,
}

/// PEM files for a TLS connection to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// CA certificate(s) that sign the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate chain, for brokers that require client certificates.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

/// How the agent's bus connects. The local link uses only the client id, the subscriptions and
/// the reconnect delays.
#[derive(Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// The broker.
    pub endpoint: Endpoint,
    /// MQTT client id; stable across restarts so the broker keeps the session.
    pub client_id: String,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Largest packet accepted or sent.
    pub max_packet_bytes: usize,
    /// First reconnect delay; doubles per failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Topic filters subscribed on every connection.
    pub subscriptions: Vec<String>,
}

impl fmt::Debug for BusOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusOptions")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

/// Errors of the event bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A TLS file could not be read or holds nothing usable.
    #[error("broker TLS: {path}: {reason}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The TLS configuration is not valid.
    #[error("broker TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The event loop is gone (the bus was shut down).
    #[error("the MQTT event loop has stopped")]
    Closed,
    /// The local link to the embedded broker is down (it is being re-established).
    #[error("not connected to the embedded broker")]
    NotConnected,
}

/// What the bus tells the service.
#[derive(Debug)]
pub enum BusEvent {
    /// Connected (again) to the broker and (re)subscribed.
    Connected {
        /// Whether the broker still had our session.
        session_present: bool,
    },
    /// The connection was lost; the bus retries with backoff.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// An inbound publish on one of our filters.
    Message(Inbound),
}

/// An inbound publish.
#[derive(Debug)]
pub struct Inbound {
    /// The topic it was published on.
    pub topic: String,
    /// The payload.
    pub payload: bytes::Bytes,
    /// Present for QoS 1/2 publishes from an external broker: pass to [`Bus::ack`] once the
    /// publish is handled.
    pub ack: Option<AckToken>,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Its QoS.
    pub qos: QoS,
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
}

/// Whether the bus is connected, for readiness probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Not connected (yet, or any more).
    Down,
    /// Connected and subscribed.
    Up,
}

/// The events of a running bus, in the order they happened.
#[derive(Debug)]
pub struct BusEvents(Events);

#[derive(Debug)]
enum Events {
    /// MQTT: the event loop never waits for the service (see module `mqtt`).
    Unbounded(mpsc::UnboundedReceiver<BusEvent>),
    /// Local link: the link task waits for room, so the router holds back (and buffers) forwards
    /// while the service is busy.
    #[cfg_attr(not(feature = "embedded-broker"), allow(dead_code))]
    Bounded(mpsc::Receiver<BusEvent>),
}

impl BusEvents {
    /// The next event; `None` once the bus has stopped.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        match &mut self.0 {
            Events::Unbounded(events) => events.recv().await,
            Events::Bounded(events) => events.recv().await,
        }
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<BusEvent> {
        match &mut self.0 {
            Events::Unbounded(events) => events.try_recv().ok(),
            Events::Bounded(events) => events.try_recv().ok(),
        }
    }
}

/// The handle the service publishes and acknowledges through. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    transport: Transport,
    connection: watch::Receiver<Connection>,
}

#[derive(Clone)]
enum Transport {
    Mqtt(mqtt::MqttClient),
    #[cfg(feature = "embedded-broker")]
    Local(local::LocalClient),
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match &self.transport {
            Transport::Mqtt(_) => "mqtt",
            #[cfg(feature = "embedded-broker")]
            Transport::Local(_) => "local link",
        };
        f.debug_struct("Bus")
            .field("transport", &transport)
            .field("connection", &*self.connection.borrow())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Starts an MQTT client to the broker of `options`: returns the handle, the events for the
    /// service and the event loop task (it ends after [`Bus::disconnect`]).
    pub fn start(options: BusOptions) -> Result<(Bus, BusEvents, JoinHandle<()>), BusError> {
        let (client, connection, events, task) = mqtt::start(options)?;
        Ok((
            Bus {
                transport: Transport::Mqtt(client),
                connection,
            },
            BusEvents(Events::Unbounded(events)),
            task,
        ))
    }

    /// Connects to the embedded broker through an in-process link (client id, subscriptions
    /// and reconnect delays from `options`); returns like [`Bus::start`].
    #[cfg(feature = "embedded-broker")]
    pub fn start_embedded(
        broker: &crate::edge::broker::EmbeddedBroker,
        options: BusOptions,
    ) -> (Bus, BusEvents, JoinHandle<()>) {
        let (client, connection, events, task) = local::start(broker.local_links(), options);
        (
            Bus {
                transport: Transport::Local(client),
                connection,
            },
            BusEvents(Events::Bounded(events)),
            task,
        )
    }

    /// Publishes `payload` on `topic`.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), BusError> {
        self.publish_all(vec![Message {
            topic: topic.to_owned(),
            payload,
            qos,
            retain,
        }])
        .await
    }

    /// Publishes `messages` in order (on the local link: handed to the router at once).
    pub async fn publish_all(&self, messages: Vec<Message>) -> Result<(), BusError> {
        match &self.transport {
            Transport::Mqtt(client) => client.publish_all(messages).await,
            #[cfg(feature = "embedded-broker")]
            Transport::Local(client) => client.publish_all(messages).await,
        }
    }

    /// Acknowledges an inbound publish to the broker. Skipped (the broker will redeliver) when the
    /// connection it arrived on is gone.
    pub async fn ack(&self, token: &AckToken) -> Result<(), BusError> {
        match &self.transport {
            Transport::Mqtt(client) => client.ack(token).await,
            // Publishes over the local link carry no token.
            #[cfg(feature = "embedded-broker")]
            Transport::Local(_) => Ok(()),
        }
    }

    /// The current connection state.
    pub fn connection(&self) -> Connection {
        *self.connection.borrow()
    }

    /// A receiver that sees every connection state change.
    pub fn watch_connection(&self) -> watch::Receiver<Connection> {
        self.connection.clone()
    }

    /// Disconnects from the broker; the bus task ends afterwards.
    pub async fn disconnect(&self) -> Result<(), BusError> {
        match &self.transport {
            Transport::Mqtt(client) => client.disconnect().await,
            #[cfg(feature = "embedded-broker")]
            Transport::Local(client) => {
                client.disconnect().await;
                Ok(())
            }
        }
    }
}

/// Helpers the transports' tests share.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use edgetwin_testkit::TIMEOUT;

    /// Options for a broker on 127.0.0.1:`port`, with short reconnect delays.
    pub(crate) fn test_options(port: u16, client_id: &str, filters: &[&str]) -> BusOptions {
        BusOptions {
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port,
                tls: None,
            },
            client_id: client_id.into(),
            credentials: None,
            keep_alive: Duration::from_secs(30),
            max_packet_bytes: 1 << 20,
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(200),
            subscriptions: filters.iter().map(|f| f.to_string()).collect(),
        }
    }

    pub(crate) async fn next_event(events: &mut BusEvents) -> BusEvent {
        tokio::time::timeout(TIMEOUT, events.recv())
            .await
            .expect("a bus event in time")
            .expect("the bus is running")
    }

    pub(crate) async fn next_message(events: &mut BusEvents) -> Inbound {
        loop {
            if let BusEvent::Message(m) = next_event(events).await {
                return m;
            }
        }
    }

    /// Waits for the next `Connected`; whether the session was present.
    pub(crate) async fn connected(events: &mut BusEvents) -> bool {
        loop {
            if let BusEvent::Connected { session_present } = next_event(events).await {
                return session_present;
            }
        }
    }
}
