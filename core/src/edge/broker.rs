//! The embedded MQTT broker: rumqttd, started in-process on a loopback address.
//!
//! rumqttd runs its router and its listener on threads of its own (each with a small
//! current-thread tokio runtime). rumqttd 0.20 has no way to stop a running broker, so the broker
//! lives until the process exits; [`EmbeddedBroker`] is a handle that carries its address and opens
//! local links to it.
//! The agent starts at most one, and talks to it through a local link (see `edge::bus`), not TCP.
//!
//! Access: every network client is authenticated and authorised by the node's bus policy
//! ([`BusAccess`], `edge::access`), through the vendored rumqttd's `ConnectAuthority`; the
//! agent's own local links are not network clients and may do everything.
//!
//! Memory: rumqttd keeps the publishes of each subscription filter in an in-memory commit log.
//! The vendored broker counts a log's size in the bytes its entries really hold and empties a log
//! once every (clean-session) subscriber has read it (vendor/rumqttd/EDGETWIN-PATCH.md), so at
//! rest the logs are empty. What they hold for readers that lag behind (the agent during a burst
//! of reports, a slow mapper) is bounded for all filters together by `LOG_BUDGET_BYTES`; past
//! that the largest log drops its oldest messages, and a reader that had not read them skips them
//! (rumqttd logs a warning).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttd::protocol::{ConnectReturnCode, Login};
use rumqttd::{
    Broker, ClientPermissions, Config, ConnectAuthority, ConnectionSettings, LocalLinks,
    RouterConfig, ServerSettings,
};

use crate::edge::access::BusAccess;
use crate::edge::access::policy::{Principal, Refusal};

use crate::fd_budget;

/// Size of one commit-log segment, in the bytes its entries hold (a message of the size limit
/// fills a segment by itself). Also the step in which an over-budget log drops messages.
const SEGMENT_BYTES: usize = 64 * 1024;
/// The most all commit logs together hold: about 5,800 unread reports of 100 bytes (an entry
/// costs ≈ 260 bytes besides its topic and payload), so a burst of 5,000 reports published at
/// once waits for the agent without loss, while the agent's RSS stays within its budget
/// (BENCHMARKS.md, "Edge agent").
const LOG_BUDGET_BYTES: usize = 2 * 1024 * 1024;
/// Full segments kept per subscription filter besides the active one: one filter may use the
/// whole budget (the agent reads every report through one wildcard filter).
const SEGMENT_COUNT: usize = LOG_BUDGET_BYTES / SEGMENT_BYTES;
/// How long to wait for the listener to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// The default cap on the listener's open connections (mappers and tools; fewer when the
/// descriptor limit says so, see `fd_budget`).
pub const DEFAULT_MAX_CONNECTIONS: usize = fd_budget::DEFAULT_BROKER_CONNECTIONS;
/// A new connection must send its CONNECT within this (an idle connection holds a slot).
const CONNECT_TIMEOUT_MS: u16 = 10_000;

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listen address is taken or not local.
    #[error("embedded broker cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The broker thread could not be started.
    #[error("embedded broker thread: {0}")]
    Thread(std::io::Error),
    /// The broker did not accept connections in time.
    #[error("embedded broker did not start listening on {addr} within {timeout:?}")]
    NotReady {
        /// The address.
        addr: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
}

/// A running embedded broker.
#[derive(Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    links: LocalLinks,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts rumqttd on `listen` (port 0 picks a free port) accepting packets up to
    /// `max_packet_bytes` and at most `max_connections` open connections (or the share the
    /// descriptor limit leaves, when smaller; more wait in the kernel's backlog), with network
    /// clients held to `access`, and returns once it accepts connections. A publish larger than
    /// `max_packet_bytes` is never stored or forwarded, also from a local link, so no subscriber
    /// is ever sent a packet larger than the limit every client of ours reads.
    pub fn start(
        listen: SocketAddr,
        max_packet_bytes: usize,
        max_connections: usize,
        access: Arc<BusAccess>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with(listen, max_packet_bytes, max_connections, Some(access))
    }

    /// A broker without access control, for the tests of the broker's and bus's plumbing.
    #[cfg(test)]
    pub(crate) fn start_open(
        listen: SocketAddr,
        max_packet_bytes: usize,
    ) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with(listen, max_packet_bytes, DEFAULT_MAX_CONNECTIONS, None)
    }

    fn start_with(
        listen: SocketAddr,
        max_packet_bytes: usize,
        max_connections: usize,
        access: Option<Arc<BusAccess>>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let addr = reserve(listen)?;
        let max_connections = fd_budget::cap(fd_budget::Listener::Broker, max_connections);
        let mut broker = Broker::new(config(addr, max_packet_bytes, max_connections, access));
        let links = broker.local_links();
        std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                if let Err(error) = broker.start() {
                    tracing::error!(%error, "embedded broker stopped");
                }
            })
            .map_err(BrokerError::Thread)?;
        wait_until_listening(addr, READY_TIMEOUT)?;
        tracing::info!(%addr, max_connections, "embedded broker listening");
        Ok(EmbeddedBroker { addr, links })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens in-process connections to the broker's router (the agent's bus uses one).
    pub fn local_links(&self) -> LocalLinks {
        self.links.clone()
    }
}

/// Checks that `listen` is free (and resolves port 0 to a concrete free port). rumqttd binds in
/// its own thread and only logs a bind failure, so we find out here instead.
fn reserve(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })?;
    probe.local_addr().map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })
}

/// Polls `addr` until a TCP connection succeeds.
pub(crate) fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> Result<(), BrokerError> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() >= deadline {
            return Err(BrokerError::NotReady { addr, timeout });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Refused publishes logged per connection before the log goes quiet (then one in
/// [`QUIET_EVERY`]); every refusal is counted in the metrics.
const LOUD_REFUSALS: u64 = 10;
/// While quiet, one refused publish in this many is logged.
const QUIET_EVERY: u64 = 1000;

/// rumqttd's view of the bus policy.
struct Authority(Arc<BusAccess>);

impl ConnectAuthority for Authority {
    fn authenticate(
        &self,
        client_id: &str,
        login: Option<&Login>,
    ) -> Result<Arc<dyn ClientPermissions>, ConnectReturnCode> {
        let login = login.map(|l| (l.username.as_str(), l.password.as_str()));
        match self.0.authenticate(client_id, login) {
            Ok(who) => Ok(Arc::new(Client {
                access: Arc::clone(&self.0),
                who,
                refused: AtomicU64::new(0),
            })),
            Err(Refusal::BadLogin) => Err(ConnectReturnCode::BadUserNamePassword),
            Err(Refusal::AnonymousNotAllowed | Refusal::ReservedClientId) => {
                Err(ConnectReturnCode::NotAuthorized)
            }
        }
    }
}

/// A connected network client's permissions.
struct Client {
    access: Arc<BusAccess>,
    who: Principal,
    refused: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("who", &self.access.policy().name_of(self.who))
            .finish_non_exhaustive()
    }
}

impl ClientPermissions for Client {
    fn may_publish(&self, topic: &str) -> bool {
        let quiet = {
            let seen = self.refused.load(Ordering::Relaxed);
            seen >= LOUD_REFUSALS && !seen.is_multiple_of(QUIET_EVERY)
        };
        let allowed = self.access.may_publish(self.who, topic, quiet);
        if !allowed {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    fn may_subscribe(&self, filter: &str) -> bool {
        self.access.may_subscribe(self.who, filter)
    }
}

fn config(
    addr: SocketAddr,
    max_packet_bytes: usize,
    max_connections: usize,
    access: Option<Arc<BusAccess>>,
) -> Config {
    let server = ServerSettings {
        name: "edge".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT_MS,
            max_payload_size: max_packet_bytes,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
            authority: access
                .map(|access| Arc::new(Authority(access)) as Arc<dyn ConnectAuthority>),
        },
        max_connections: Some(max_connections),
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENT_COUNT,
            // `Publish::len` counts the topic, its length prefix and the packet id: the same
            // bytes as the packet's remaining length that the network links check.
            max_publish_size: Some(max_packet_bytes),
            max_total_log_bytes: LOG_BUDGET_BYTES,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("edge".to_owned(), server)])),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_free_port_and_accepts_connections() {
        let broker = EmbeddedBroker::start_open("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert_ne!(broker.addr().port(), 0);
        TcpStream::connect(broker.addr()).unwrap();
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = EmbeddedBroker::start_open(addr, 1 << 20).unwrap_err();
        assert!(matches!(err, BrokerError::Bind { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    /// A link whose client id was taken over (the successor got its connection id) ends late,
    /// as a network client's link does when its socket closes after the takeover: the
    /// successor must stay connected and keep receiving.
    #[tokio::test]
    async fn a_replaced_links_late_disconnect_leaves_its_successor_connected() {
        use rumqttd::Notification;
        use rumqttd::protocol::{Filter, Packet, QoS, RetainForwardRule, Subscribe};

        let broker = EmbeddedBroker::start_open("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let links = broker.local_links();
        let connect = |links: LocalLinks| {
            tokio::task::spawn_blocking(move || links.connect("agent").unwrap())
        };
        let (replaced, _replaced_rx) = connect(links.clone()).await.unwrap();
        let (mut successor, mut successor_rx) = connect(links).await.unwrap();
        let filter = Filter {
            path: "in/#".into(),
            qos: QoS::AtMostOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        };
        let subscribe = Subscribe {
            pkid: 1,
            filters: vec![filter],
        };
        successor
            .send_all([Packet::Subscribe(subscribe, None)])
            .await
            .unwrap();
        replaced.disconnect().unwrap();

        let mut peer = edgetwin_testkit::TestClient::connect(broker.addr(), "peer")
            .await
            .unwrap();
        peer.publish("in/after", "still here").await.unwrap();
        let received = tokio::time::timeout(edgetwin_testkit::TIMEOUT, async {
            loop {
                match successor_rx.next().await {
                    Ok(Some(Notification::Forward(forward))) => return forward.publish.payload,
                    Ok(Some(Notification::Disconnect(..))) | Err(_) => {
                        panic!("the successor was disconnected by its predecessor's end")
                    }
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the successor receives the publish");
        assert_eq!(&received[..], b"still here");
    }

    /// An MQTT 3.1.1 CONNECT with a clean session for `client_id`.
    fn connect_packet(client_id: &str) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        let id = u16::try_from(client_id.len()).unwrap();
        body.extend(id.to_be_bytes());
        body.extend(client_id.as_bytes());
        let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
        packet.extend(body);
        packet
    }

    /// Sends CONNECT on `stream`; `Some` with the CONNACK when it arrives within
    /// `wait`, `None` when it does not.
    fn mqtt_connect(stream: &mut TcpStream, client_id: &str, wait: Duration) -> Option<[u8; 4]> {
        use std::io::{Read, Write};
        stream.write_all(&connect_packet(client_id)).unwrap();
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).ok().map(|()| connack)
    }

    /// At the cap, a new connection waits (no CONNACK) until an open one closes; 256 idle
    /// connections could otherwise take every descriptor of the agent.
    #[test]
    fn at_the_connection_cap_a_new_client_waits_until_one_disconnects() {
        const CONNACK: [u8; 4] = [0x20, 2, 0, 0];
        let broker =
            EmbeddedBroker::start_with("127.0.0.1:0".parse().unwrap(), 1 << 20, 2, None).unwrap();
        let wait = Duration::from_secs(10);
        let mut first = TcpStream::connect(broker.addr()).unwrap();
        assert_eq!(mqtt_connect(&mut first, "first", wait), Some(CONNACK));
        let mut second = TcpStream::connect(broker.addr()).unwrap();
        assert_eq!(mqtt_connect(&mut second, "second", wait), Some(CONNACK));

        let mut third = TcpStream::connect(broker.addr()).unwrap();
        assert_eq!(
            mqtt_connect(&mut third, "third", Duration::from_secs(1)),
            None,
            "a third client got in past the cap of 2"
        );
        drop(first);
        third.set_read_timeout(Some(wait)).unwrap();
        let mut connack = [0u8; 4];
        std::io::Read::read_exact(&mut third, &mut connack).unwrap();
        assert_eq!(
            connack, CONNACK,
            "the waiting client gets in once one leaves"
        );
    }
}
