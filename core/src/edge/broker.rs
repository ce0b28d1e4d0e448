//! The embedded MQTT broker: rumqttd, started in-process on a loopback address.
//!
//! rumqttd runs its router and its listener on threads of its own (each with a small
//! current-thread tokio runtime). rumqttd 0.20 has no way to stop a running broker, so the broker
//! lives until the process exits; [`EmbeddedBroker`] is a handle that carries its address and opens
//! local links to it.
//! The agent starts at most one, and talks to it through a local link (see `edge::bus`), not TCP.
//!
//! Memory: rumqttd keeps recent publishes per subscription filter in an in-memory commit log of
//! `segment_bytes × SEGMENT_COUNT`; we keep segments small (the agent consumes its filters
//! immediately, and mappers their own) so the edge stays within its RSS budget.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, LocalLinks, RouterConfig, ServerSettings};

/// Segments kept in memory per subscription filter (besides the active one).
const SEGMENT_COUNT: usize = 2;
/// Size of one commit-log segment when the packet limit is smaller.
const MIN_SEGMENT_BYTES: usize = 256 * 1024;
/// How long to wait for the listener to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// `max_packet_bytes`, and returns once it accepts connections.
    pub fn start(
        listen: SocketAddr,
        max_packet_bytes: usize,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let addr = reserve(listen)?;
        let mut broker = Broker::new(config(addr, max_packet_bytes));
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
        tracing::info!(%addr, "embedded broker listening");
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

fn config(addr: SocketAddr, max_packet_bytes: usize) -> Config {
    let server = ServerSettings {
        name: "edge".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_packet_bytes,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            max_segment_size: max_packet_bytes.max(MIN_SEGMENT_BYTES),
            max_segment_count: SEGMENT_COUNT,
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
        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert_ne!(broker.addr().port(), 0);
        TcpStream::connect(broker.addr()).unwrap();
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = EmbeddedBroker::start(addr, 1 << 20).unwrap_err();
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

        let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
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
}
