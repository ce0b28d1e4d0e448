//! The MQTT transport: a rumqttc client to the broker (an external one, or any broker by URL).
//!
//! One task drives rumqttc's event loop: it (re)connects with exponential backoff, subscribes at
//! QoS 1 to the agent's topic filters on every connection, and forwards each inbound publish to
//! the twin service as a [`BusEvent`].
//!
//! **Acknowledgements.** Manual acks are on: a QoS 1 publish is acknowledged to the broker only
//! when the service calls [`Bus::ack`](super::Bus::ack), after the change it carries is
//! committed. The session is persistent (`clean_session = false`), so a publish that was never
//! acknowledged (the agent crashed before committing it) is redelivered by the broker when the
//! agent reconnects. An [`AckToken`] belongs to one connection; acknowledging after a reconnect is
//! skipped, because the broker redelivers that publish anyway and its packet id may have been
//! reused.
//!
//! **No deadlock by construction.** The event loop never waits for the service: inbound publishes
//! go to the service over an unbounded channel, whose length is bounded in practice by the
//! broker's in-flight window (unacknowledged QoS 1 publishes). The service may wait for room in
//! rumqttc's request channel when it publishes, because the event loop keeps draining it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS, Request,
    Subscribe, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{BusError, BusEvent, BusOptions, Connection, Inbound, Message, TlsFiles};

/// Capacity of rumqttc's request channel (publishes and acks waiting for the event loop).
const REQUEST_CAPACITY: usize = 1024;
/// Our QoS 1 publishes awaiting the broker's PUBACK. A batch of N requests publishes about 3N
/// messages before its N acks (which queue behind them), and the broker sends no more requests
/// until it has those acks: with a window of 100 towards us (rumqttd's), a batch publishes ~300,
/// so a window of 100 on our side stalled the stream until 200 PUBACKs came back.
const OUTGOING_INFLIGHT: u16 = 500;

/// Identifies a QoS 1 publish to acknowledge, on the connection it arrived on.
#[derive(Debug, Clone)]
pub struct AckToken {
    generation: u64,
    publish: Publish,
}

/// The publishing side of the MQTT transport.
#[derive(Clone)]
pub(super) struct MqttClient {
    client: AsyncClient,
    generation: Arc<AtomicU64>,
}

impl MqttClient {
    pub(super) async fn publish_all(&self, messages: Vec<Message>) -> Result<(), BusError> {
        for message in messages {
            self.client
                .publish(message.topic, message.qos, message.retain, message.payload)
                .await
                .map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }

    pub(super) async fn ack(&self, token: &AckToken) -> Result<(), BusError> {
        if token.generation != self.generation.load(Ordering::Acquire) {
            tracing::debug!(
                pkid = token.publish.pkid,
                "ack skipped: arrived on an old connection"
            );
            return Ok(());
        }
        self.client
            .ack(&token.publish)
            .await
            .map_err(|_| BusError::Closed)
    }

    pub(super) async fn disconnect(&self) -> Result<(), BusError> {
        self.client.disconnect().await.map_err(|_| BusError::Closed)
    }
}

/// The MQTT client, its connection state, its events and its event loop task.
pub(super) type Started = (
    MqttClient,
    watch::Receiver<Connection>,
    mpsc::UnboundedReceiver<BusEvent>,
    JoinHandle<()>,
);

/// Starts the client and the task that drives its event loop.
pub(super) fn start(options: BusOptions) -> Result<Started, BusError> {
    let mqtt = mqtt_options(&options)?;
    let (client, mut eventloop) = AsyncClient::new(mqtt, REQUEST_CAPACITY);
    // Results and acks are small packets answered one by one: without TCP_NODELAY, Nagle's
    // algorithm holds them back until the peer's delayed ACK (tens of ms on Linux).
    eventloop.network_options.set_tcp_nodelay(true);
    let generation = Arc::new(AtomicU64::new(0));
    let (connection_tx, connection) = watch::channel(Connection::Down);
    let (events_tx, events) = mpsc::unbounded_channel();
    let driver = Driver {
        eventloop,
        options,
        generation: generation.clone(),
        connection: connection_tx,
        events: events_tx,
    };
    let task = tokio::spawn(driver.run());
    Ok((MqttClient { client, generation }, connection, events, task))
}

/// Owns rumqttc's event loop.
struct Driver {
    eventloop: EventLoop,
    options: BusOptions,
    generation: Arc<AtomicU64>,
    connection: watch::Sender<Connection>,
    events: mpsc::UnboundedSender<BusEvent>,
}

impl Driver {
    async fn run(mut self) {
        let mut backoff = self.options.reconnect_min;
        // Between CONNACK and SUBACK: whether the broker kept our session.
        let mut subscribing: Option<bool> = None;
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                    backoff = self.options.reconnect_min;
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    if self.options.subscriptions.is_empty() {
                        self.up(connack.session_present);
                    } else {
                        self.subscribe();
                        subscribing = Some(connack.session_present);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    // rumqttc acknowledges by QoS and packet id only.
                    let ack = (publish.qos != QoS::AtMostOnce).then(|| {
                        let mut token = Publish::new("", publish.qos, Vec::new());
                        token.pkid = publish.pkid;
                        AckToken {
                            generation: self.generation.load(Ordering::Acquire),
                            publish: token,
                        }
                    });
                    self.emit(BusEvent::Message(Inbound {
                        topic: publish.topic,
                        payload: publish.payload,
                        ack,
                    }));
                }
                Ok(Event::Incoming(Packet::SubAck(suback))) => {
                    for (filter, code) in
                        self.options.subscriptions.iter().zip(&suback.return_codes)
                    {
                        if matches!(code, SubscribeReasonCode::Failure) {
                            tracing::error!(%filter, "the broker refused the subscription");
                        }
                    }
                    if let Some(session_present) = subscribing.take() {
                        self.up(session_present);
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    self.connection.send_replace(Connection::Down);
                    tracing::info!("disconnected from the broker (shutdown)");
                    return;
                }
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => {
                    self.connection.send_replace(Connection::Down);
                    return;
                }
                Err(error) => {
                    subscribing = None;
                    let was_up = *self.connection.borrow() == Connection::Up;
                    self.connection.send_replace(Connection::Down);
                    if was_up {
                        tracing::warn!(%error, "lost the broker connection; reconnecting");
                        self.emit(BusEvent::Disconnected {
                            reason: error.to_string(),
                        });
                    } else {
                        tracing::warn!(%error, retry_in = ?backoff, "cannot reach the broker");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.reconnect_max);
                }
            }
        }
    }

    /// Connected and subscribed: tell the service and readiness.
    fn up(&self, session_present: bool) {
        let endpoint = &self.options.endpoint;
        tracing::info!(
            broker = %format_args!("{}:{}", endpoint.host, endpoint.port),
            session_present,
            generation = self.generation.load(Ordering::Acquire),
            "connected to the broker and subscribed"
        );
        self.connection.send_replace(Connection::Up);
        self.emit(BusEvent::Connected { session_present });
    }

    /// Queues the subscriptions ahead of user requests. Written into the event loop's own queue
    /// (not the request channel) so this task never waits on a channel it drains itself.
    fn subscribe(&mut self) {
        if self.options.subscriptions.is_empty() {
            return;
        }
        let filters = self
            .options
            .subscriptions
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        self.eventloop
            .pending
            .push_front(Request::Subscribe(Subscribe::new_many(filters)));
    }

    fn emit(&self, event: BusEvent) {
        // The receiver is gone only while the agent shuts down.
        let _ = self.events.send(event);
    }
}

fn mqtt_options(options: &BusOptions) -> Result<MqttOptions, BusError> {
    let endpoint = &options.endpoint;
    let mut mqtt = MqttOptions::new(&options.client_id, &endpoint.host, endpoint.port);
    mqtt.set_keep_alive(options.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(options.max_packet_bytes, options.max_packet_bytes)
        .set_inflight(OUTGOING_INFLIGHT);
    if let Some((user, password)) = &options.credentials {
        mqtt.set_credentials(user, password);
    }
    if let Some(tls) = &endpoint.tls {
        mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(tls)?),
        )));
    }
    Ok(mqtt)
}

/// A rustls client config (ring provider) trusting `ca_file`, with the client certificate when
/// given.
fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, BusError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&files.ca_file)? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(path), None) | (None, Some(path)) => {
            return Err(BusError::TlsFile {
                path: path.clone(),
                reason: "a client certificate needs both certFile and keyFile".into(),
            });
        }
    };
    Ok(config)
}

fn read_pem(path: &PathBuf) -> Result<Vec<u8>, BusError> {
    std::fs::read(path).map_err(|e| BusError::TlsFile {
        path: path.clone(),
        reason: e.to_string(),
    })
}

fn read_certs(path: &PathBuf) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BusError> {
    let pem = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BusError::TlsFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(BusError::TlsFile {
            path: path.clone(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &PathBuf) -> Result<rustls::pki_types::PrivateKeyDer<'static>, BusError> {
    let pem = read_pem(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| BusError::TlsFile {
            path: path.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| BusError::TlsFile {
            path: path.clone(),
            reason: "no PEM private key in the file".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{connected, next_event, next_message, test_options};
    use super::super::{Bus, BusEvent};
    use super::*;
    use edgetwin_testkit::{BrokerKind, TIMEOUT, TestBroker, TestClient};
    use std::time::Duration;

    fn options(broker: &TestBroker, client_id: &str, filters: &[&str]) -> BusOptions {
        test_options(broker.port(), client_id, filters)
    }

    #[tokio::test]
    async fn subscribes_receives_publishes_and_acks_on_both_brokers() {
        for kind in BrokerKind::ALL {
            if !edgetwin_testkit::broker::available(kind, "bus::mqtt") {
                continue;
            }
            let broker = TestBroker::start(kind).unwrap();
            let (bus, mut events, task) = Bus::start(options(&broker, "agent", &["in/+"])).unwrap();
            connected(&mut events).await;
            assert_eq!(bus.connection(), Connection::Up);

            let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
            peer.subscribe("out/#").await.unwrap();
            peer.publish("in/a", "hello").await.unwrap();
            let inbound = next_message(&mut events).await;
            assert_eq!(
                (inbound.topic.as_str(), &inbound.payload[..]),
                ("in/a", &b"hello"[..]),
                "{kind}"
            );
            bus.ack(inbound.ack.as_ref().expect("QoS 1 needs an ack"))
                .await
                .unwrap();

            bus.publish("out/x", b"reply".to_vec(), QoS::AtLeastOnce, false)
                .await
                .unwrap();
            let reply = peer.recv_on("out/x").await.unwrap();
            assert_eq!(&reply.payload[..], b"reply", "{kind}");

            bus.disconnect().await.unwrap();
            tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
            assert_eq!(bus.connection(), Connection::Down);
        }
    }

    #[tokio::test]
    async fn a_burst_beyond_the_inflight_window_arrives_whole_and_in_order_on_both_brokers() {
        // The vendored rumqttc writes queued requests in bulk, stopping at the inflight window
        // (500): 1500 QoS 1 publishes handed over at once cross it three times.
        const COUNT: usize = 1500;
        for kind in BrokerKind::ALL {
            if !edgetwin_testkit::broker::available(kind, "bus::mqtt") {
                continue;
            }
            let broker = TestBroker::start(kind).unwrap();
            let (bus, mut events, _task) = Bus::start(options(&broker, "agent", &[])).unwrap();
            connected(&mut events).await;
            let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
            peer.subscribe("out/#").await.unwrap();
            let burst = (0..COUNT)
                .map(|i| Message {
                    topic: "out/burst".into(),
                    payload: i.to_string().into_bytes(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                })
                .collect();
            bus.publish_all(burst).await.unwrap();
            for i in 0..COUNT {
                let message = peer.recv_on("out/burst").await.unwrap();
                assert_eq!(&message.payload[..], i.to_string().as_bytes(), "{kind}");
            }
        }
    }

    #[tokio::test]
    async fn dollar_topics_are_routed_but_not_to_leading_wildcards_on_both_brokers() {
        // KubeEdge's topics start with `$hw`; the embedded rumqttd is patched to carry them.
        for kind in BrokerKind::ALL {
            if !edgetwin_testkit::broker::available(kind, "bus::mqtt") {
                continue;
            }
            let broker = TestBroker::start(kind).unwrap();
            let filters = ["$hw/events/device/+/twin/+", "+/events/#", "#"];
            let (_bus, mut events, _task) =
                Bus::start(options(&broker, "agent", &filters)).unwrap();
            connected(&mut events).await;
            let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
            peer.publish("$hw/events/device/lamp/twin/update", "dollar")
                .await
                .unwrap();
            peer.publish("plain/events/x", "plain").await.unwrap();
            let first = next_message(&mut events).await;
            assert_eq!(
                (first.topic.as_str(), &first.payload[..]),
                ("$hw/events/device/lamp/twin/update", &b"dollar"[..]),
                "{kind}"
            );
            // `plain/...` matches two filters: brokers may deliver it once or per filter.
            let second = next_message(&mut events).await;
            assert_eq!(
                &second.payload[..],
                b"plain",
                "{kind}: `+`/`#` never match `$hw`"
            );
        }
    }

    #[tokio::test]
    async fn an_unacked_publish_is_redelivered_after_the_agent_comes_back() {
        // The broker must outlive the agent: mosquitto, like in production with an external broker.
        if !edgetwin_testkit::broker::available(BrokerKind::Mosquitto, "bus::mqtt") {
            return;
        }
        let broker = TestBroker::start(BrokerKind::Mosquitto).unwrap();
        let (bus, mut events, task) = Bus::start(options(&broker, "agent", &["in/+"])).unwrap();
        connected(&mut events).await;
        let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
        peer.publish("in/a", "first").await.unwrap();
        let first = next_message(&mut events).await;
        assert!(first.ack.is_some());
        // "Crash" before committing: stop without acknowledging.
        task.abort();
        drop(bus);

        let (bus, mut events, _task) = Bus::start(options(&broker, "agent", &["in/+"])).unwrap();
        // The broker resends right after CONNACK, possibly before our SUBACK.
        let again = next_message(&mut events).await;
        assert_eq!(&again.payload[..], b"first");
        assert!(connected(&mut events).await, "the broker kept the session");
        bus.ack(again.ack.as_ref().unwrap()).await.unwrap();
    }

    #[tokio::test]
    async fn reconnects_and_resubscribes_after_the_broker_restarts() {
        if !edgetwin_testkit::broker::available(BrokerKind::Mosquitto, "bus::mqtt") {
            return;
        }
        let broker = TestBroker::start(BrokerKind::Mosquitto).unwrap();
        let (bus, mut events, _task) = Bus::start(options(&broker, "agent", &["in/+"])).unwrap();
        connected(&mut events).await;
        let mut connection = bus.watch_connection();

        // mosquitto without persistence forgets the session: only resubscribing brings messages.
        broker.restart(Duration::ZERO).await.unwrap();
        loop {
            match next_event(&mut events).await {
                BusEvent::Disconnected { .. } => continue,
                BusEvent::Connected { session_present } => {
                    assert!(!session_present);
                    break;
                }
                BusEvent::Message(m) => panic!("unexpected message on {}", m.topic),
            }
        }
        connection.wait_for(|c| *c == Connection::Up).await.unwrap();
        let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
        peer.publish("in/b", "after restart").await.unwrap();
        let inbound = next_message(&mut events).await;
        assert_eq!(&inbound.payload[..], b"after restart");
    }

    #[tokio::test]
    async fn a_broker_that_is_not_there_yet_is_retried_until_it_appears() {
        let port = edgetwin_testkit::free_port().unwrap();
        let mut opts = BusOptions {
            subscriptions: vec!["in/+".into()],
            ..options(
                &TestBroker::start(BrokerKind::Embedded).unwrap(),
                "agent",
                &[],
            )
        };
        opts.endpoint.port = port;
        let (bus, mut events, _task) = Bus::start(opts).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(bus.connection(), Connection::Down);
        let broker = crate::edge::broker::EmbeddedBroker::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            1 << 20,
        )
        .unwrap();
        connected(&mut events).await;
        let mut peer = TestClient::connect(broker.addr(), "peer").await.unwrap();
        peer.publish("in/c", "late").await.unwrap();
        assert_eq!(&next_message(&mut events).await.payload[..], b"late");
    }

    /// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files.
    fn tls_files(dir: &std::path::Path) -> (TlsFiles, edgetwin_testkit::TlsMaterial) {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "edgetwin test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, usage| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            (
                params.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(vec!["agent".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let ca_file = write("ca.pem", &ca_cert.pem());
        (
            TlsFiles {
                ca_file: ca_file.clone(),
                cert_file: Some(write("client.pem", &client_cert)),
                key_file: Some(write("client.key", &client_key)),
            },
            edgetwin_testkit::TlsMaterial {
                ca_file,
                cert_file: write("server.pem", &server_cert),
                key_file: write("server.key", &server_key),
                require_client_cert: true,
            },
        )
    }

    #[tokio::test]
    async fn connects_over_tls_with_a_client_certificate_and_a_password() {
        if !edgetwin_testkit::broker::available(BrokerKind::Mosquitto, "bus::mqtt tls") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (client_tls, server_tls) = tls_files(dir.path());
        let broker = TestBroker::mosquitto(edgetwin_testkit::MosquittoOptions {
            tls: Some(server_tls),
            user: Some(("edge".into(), "s3cret".into())),
        })
        .unwrap();
        let mut opts = options(&broker, "agent", &["in/+"]);
        opts.endpoint.tls = Some(client_tls);
        opts.credentials = Some(("edge".into(), "s3cret".into()));
        let (bus, mut events, _task) = Bus::start(opts).unwrap();
        connected(&mut events).await;
        bus.publish("in/self", b"over tls".to_vec(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(&next_message(&mut events).await.payload[..], b"over tls");
    }

    #[test]
    fn tls_settings_with_a_missing_or_half_configured_file_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = tls_files(dir.path());
        files.key_file = None;
        let err = tls_config(&files).unwrap_err().to_string();
        assert!(err.contains("both certFile and keyFile"), "{err}");
        let missing = TlsFiles {
            ca_file: dir.path().join("nope.pem"),
            ..TlsFiles::default()
        };
        let err = tls_config(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        std::fs::write(dir.path().join("empty.pem"), "not pem").unwrap();
        let empty = TlsFiles {
            ca_file: dir.path().join("empty.pem"),
            ..TlsFiles::default()
        };
        let err = tls_config(&empty).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
