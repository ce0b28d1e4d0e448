//! The local-link transport: the agent as an in-process connection of the embedded rumqttd.
//!
//! rumqttd's router serves network clients and local links alike: a link hands it packets
//! (`LinkTx`) and takes its notifications (`LinkRx`) through shared queues, so a publish from the
//! agent costs no TCP segment, no MQTT encoding and no syscall, and a whole batch of answers is
//! handed over under one lock with one wake-up of the router.
//!
//! - **Subscriptions are QoS 0 on this link**: nothing travels between the router and the agent
//!   that could be lost, so there is nothing to acknowledge and no in-flight window (rumqttd's is
//!   100 publishes towards a QoS 1 subscriber). Flow control is the router's own: it hands over at
//!   most 200 forwards and then waits until the link asks for more (`Unschedule` → `wake`). This
//!   task asks only once the service has room for them (a bounded channel), so a busy service
//!   holds the forwards back in the broker's commit log, as a slow network client would.
//! - **Publishes go to the router at QoS 0**, with their retain flag: rumqttd delivers every
//!   forward at the QoS of the receiving subscription (a mapper subscribed at QoS 1 gets QoS 1
//!   with retries), so the QoS of a publish on an in-process link would only add acks.
//! - **The session is clean**: the broker lives in the agent's process, so a session could
//!   outlive neither. The router drops a link if a network client connects with the same client
//!   id; the task then reconnects with backoff, like the MQTT transport after a lost connection.
//!   Answers published while the link is down fail with [`BusError::NotConnected`] (logged by
//!   the service); their requests were already taken from the broker, so those mappers get no
//!   answer — the price of the QoS 0 subscription, paid only when another client takes the
//!   agent's client id.

use std::sync::Arc;

use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{self, Filter, Packet, Publish, RetainForwardRule, Subscribe};
use rumqttd::{LocalLinks, Notification};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use super::{BusError, BusEvent, BusOptions, Connection, Inbound, Message};

/// Inbound publishes waiting for the service. A few of the router's hand-overs (200 each): enough
/// to keep the service's batches full, small enough to leave the backlog in the broker.
const EVENTS_CAPACITY: usize = 1024;

/// The publishing side of the local link.
#[derive(Clone)]
pub(super) struct LocalClient {
    tx: SharedTx,
    stop: Arc<watch::Sender<bool>>,
}

/// The link's sending half while connected.
type SharedTx = Arc<Mutex<Option<LinkTx>>>;

impl LocalClient {
    pub(super) async fn publish_all(&self, messages: Vec<Message>) -> Result<(), BusError> {
        let mut tx = self.tx.lock().await;
        let tx = tx.as_mut().ok_or(BusError::NotConnected)?;
        // QoS 0 towards the router: rumqttd delivers every forward at the QoS of the receiving
        // subscription, so a publish's own QoS would only make the router acknowledge it.
        let packets = messages.into_iter().map(|message| {
            let publish = Publish::new(
                Bytes::from(message.topic),
                Bytes::from(message.payload),
                message.retain,
            );
            Packet::Publish(publish, None)
        });
        tx.send_all(packets).await.map_err(|_| BusError::Closed)?;
        Ok(())
    }

    /// Leaves the broker; the link task ends.
    pub(super) async fn disconnect(&self) {
        self.stop.send_replace(true);
        if let Some(mut tx) = self.tx.lock().await.take() {
            let disconnect = protocol::Disconnect {
                reason_code: protocol::DisconnectReasonCode::NormalDisconnection,
            };
            // The router may be gone already (process exit); nothing is left to tell it then.
            let _ = tx.send_all([Packet::Disconnect(disconnect, None)]).await;
        }
    }
}

/// The local client, its connection state, its events and its link task.
pub(super) type Started = (
    LocalClient,
    watch::Receiver<Connection>,
    mpsc::Receiver<BusEvent>,
    JoinHandle<()>,
);

/// Starts the task that connects the link and forwards what the router sends.
pub(super) fn start(links: LocalLinks, options: BusOptions) -> Started {
    let tx = SharedTx::default();
    let (stop_tx, stop) = watch::channel(false);
    let (connection_tx, connection) = watch::channel(Connection::Down);
    let (events_tx, events) = mpsc::channel(EVENTS_CAPACITY);
    let task = tokio::spawn(
        LinkTask {
            links,
            options,
            tx: tx.clone(),
            stop,
            connection: connection_tx,
            events: events_tx,
        }
        .run(),
    );
    let client = LocalClient {
        tx,
        stop: Arc::new(stop_tx),
    };
    (client, connection, events, task)
}

/// Why forwarding stopped.
enum Ended {
    /// `disconnect` was called, or the service is gone.
    Stopped,
    /// The router dropped the link.
    Lost(String),
}

/// Owns the receiving half of the link.
struct LinkTask {
    links: LocalLinks,
    options: BusOptions,
    tx: SharedTx,
    stop: watch::Receiver<bool>,
    connection: watch::Sender<Connection>,
    events: mpsc::Sender<BusEvent>,
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = self.options.reconnect_min;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let ended = match self.connect().await {
                Ok(rx) => {
                    backoff = self.options.reconnect_min;
                    tracing::info!(
                        client_id = %self.options.client_id,
                        "connected to the embedded broker (local link) and subscribed"
                    );
                    self.connection.send_replace(Connection::Up);
                    if self
                        .events
                        .send(BusEvent::Connected {
                            session_present: false,
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    let ended = self.forward(rx).await;
                    *self.tx.lock().await = None;
                    self.connection.send_replace(Connection::Down);
                    ended
                }
                Err(reason) => Ended::Lost(reason),
            };
            match ended {
                Ended::Stopped => break,
                Ended::Lost(reason) => {
                    tracing::warn!(%reason, retry_in = ?backoff, "local link to the embedded broker lost; reconnecting");
                    let _ = self.events.send(BusEvent::Disconnected { reason }).await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait_for(|stop| *stop) => break,
            }
            backoff = (backoff * 2).min(self.options.reconnect_max);
        }
        self.connection.send_replace(Connection::Down);
        tracing::info!("disconnected from the embedded broker (shutdown)");
    }

    /// Opens the link and subscribes; the receiving half.
    async fn connect(&mut self) -> Result<LinkRx, String> {
        let links = self.links.clone();
        let client_id = self.options.client_id.clone();
        // The router answers the connect over a blocking channel.
        let (mut tx, rx) = tokio::task::spawn_blocking(move || {
            links.connect(&client_id).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())??;
        let filters = self
            .options
            .subscriptions
            .iter()
            .map(|path| Filter {
                path: path.clone(),
                qos: protocol::QoS::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::OnEverySubscribe,
            })
            .collect::<Vec<_>>();
        if !filters.is_empty() {
            let subscribe = Subscribe { pkid: 1, filters };
            tx.send_all([Packet::Subscribe(subscribe, None)])
                .await
                .map_err(|error| error.to_string())?;
        }
        *self.tx.lock().await = Some(tx);
        Ok(rx)
    }

    /// Hands the router's forwards to the service until the link or the bus ends.
    async fn forward(&mut self, mut rx: LinkRx) -> Ended {
        loop {
            let notification = tokio::select! {
                notification = rx.next() => notification,
                _ = self.stop.wait_for(|stop| *stop) => return Ended::Stopped,
            };
            match notification {
                Ok(Some(Notification::Forward(forward))) => {
                    edgetwin_hoptrace::mark("edge.bus.forwarded");
                    let Ok(topic) = String::from_utf8(forward.publish.topic.to_vec()) else {
                        // The router checks topics are UTF-8 before it stores a publish.
                        tracing::warn!("dropped a forward whose topic is not UTF-8");
                        continue;
                    };
                    let inbound = Inbound {
                        topic,
                        payload: forward.publish.payload,
                        ack: None,
                    };
                    if self.events.send(BusEvent::Message(inbound)).await.is_err() {
                        return Ended::Stopped;
                    }
                }
                // The router paused this link after a full hand-over: ask for the next one.
                Ok(Some(Notification::Unschedule)) => {
                    if let Err(error) = rx.wake().await {
                        return Ended::Lost(error.to_string());
                    }
                }
                Ok(Some(Notification::Disconnect(disconnect, _))) => {
                    return Ended::Lost(format!(
                        "the broker disconnected the link: {:?}",
                        disconnect.reason_code
                    ));
                }
                // The subscription's ack; a wake-up with nothing new.
                Ok(Some(_) | None) => {}
                Err(error) => {
                    return Ended::Lost(format!("the broker dropped the link: {error}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{connected, next_event, next_message, test_options};
    use super::super::{Bus, BusEvent, Connection};
    use crate::edge::broker::EmbeddedBroker;
    use edgetwin_testkit::{TIMEOUT, TestClient};
    use rumqttc::QoS;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn broker() -> EmbeddedBroker {
        EmbeddedBroker::start("127.0.0.1:0".parse().expect("address"), 1 << 20)
            .expect("broker starts")
    }

    #[tokio::test]
    async fn exchanges_dollar_topics_and_retained_messages_with_network_clients() {
        let broker = broker();
        let options = test_options(broker.addr().port(), "agent", &["$hw/events/device/+/in"]);
        let (bus, mut events, task) = Bus::start_embedded(&broker, options);
        assert!(!connected(&mut events).await, "a clean session");
        assert_eq!(bus.connection(), Connection::Up);

        let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
        peer.subscribe("$hw/events/device/+/out").await.unwrap();
        peer.publish("$hw/events/device/lamp/in", "hello")
            .await
            .unwrap();
        let inbound = next_message(&mut events).await;
        assert_eq!(
            (inbound.topic.as_str(), &inbound.payload[..]),
            ("$hw/events/device/lamp/in", &b"hello"[..])
        );
        assert!(inbound.ack.is_none(), "nothing to acknowledge in-process");

        bus.publish_all(vec![
            super::Message {
                topic: "$hw/events/device/lamp/out".into(),
                payload: b"one".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: false,
            },
            super::Message {
                topic: "$hw/events/device/lamp/out".into(),
                payload: b"two".to_vec(),
                qos: QoS::AtMostOnce,
                retain: false,
            },
            super::Message {
                topic: "edgetwin/spec/lamp".into(),
                payload: b"kept".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
            },
        ])
        .await
        .unwrap();
        for expected in ["one", "two"] {
            let message = peer.recv_on("$hw/events/device/lamp/out").await.unwrap();
            assert_eq!(&message.payload[..], expected.as_bytes());
        }
        // A subscriber that comes later still gets the retained message.
        let mut late = TestClient::connect(broker.addr(), "late").await.unwrap();
        late.subscribe("edgetwin/#").await.unwrap();
        let retained = late.recv_on("edgetwin/spec/lamp").await.unwrap();
        assert_eq!(&retained.payload[..], b"kept");

        bus.disconnect().await.unwrap();
        tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
        assert_eq!(bus.connection(), Connection::Down);
        assert!(
            bus.publish("x", Vec::new(), QoS::AtMostOnce, false)
                .await
                .is_err(),
            "nothing is published after the disconnect"
        );
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_routers_hand_over_arrives_whole_and_in_order() {
        // The router hands a link at most 200 forwards and then waits to be asked for more, and
        // the events channel holds 1024: 3000 publishes go through both limits while the
        // receiver is not reading.
        const COUNT: usize = 3000;
        let broker = broker();
        let options = test_options(broker.addr().port(), "agent", &["in/#"]);
        let (_bus, mut events, _task) = Bus::start_embedded(&broker, options);
        connected(&mut events).await;
        let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
        for i in 0..COUNT {
            peer.publish("in/burst", i.to_string()).await.unwrap();
        }
        for i in 0..COUNT {
            let message = next_message(&mut events).await;
            assert_eq!(&message.payload[..], i.to_string().as_bytes());
        }
    }

    #[tokio::test]
    async fn a_network_client_taking_the_client_id_only_interrupts_the_link() {
        let broker = broker();
        let options = test_options(broker.addr().port(), "agent", &["in/#"]);
        let (bus, mut events, _task) = Bus::start_embedded(&broker, options);
        connected(&mut events).await;

        // MQTT: a new connection with a client id takes over the session of the old one. A raw
        // CONNECT (a client library would reconnect and take it back again and again).
        let mut intruder = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
        let mut connect = vec![0x10, 17, 0, 4];
        connect.extend_from_slice(b"MQTT");
        connect.extend_from_slice(&[4, 0x02, 0, 60, 0, 5]);
        connect.extend_from_slice(b"agent");
        intruder.write_all(&connect).await.unwrap();
        let mut connack = [0u8; 4];
        tokio::time::timeout(TIMEOUT, intruder.read_exact(&mut connack))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "the broker accepts the intruder");
        match next_event(&mut events).await {
            BusEvent::Disconnected { reason } => assert!(reason.contains("link"), "{reason}"),
            other => panic!("expected the link to drop, got {other:?}"),
        }
        assert!(!connected(&mut events).await);
        assert_eq!(bus.connection(), Connection::Up);
        drop(intruder);
        let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
        peer.publish("in/again", "after").await.unwrap();
        assert_eq!(&next_message(&mut events).await.payload[..], b"after");
    }
}
