//! [`TestBroker`]: an in-process MQTT broker (rumqttd) on a free loopback port, which a test can
//! restart.
//!
//! rumqttd cannot be stopped, so clients reach it through a small TCP proxy that the test
//! controls: [`TestBroker::restart`] cuts every client connection, refuses new ones while it
//! starts a **fresh** broker (no sessions, subscriptions or retained messages, as after a real
//! restart) and then lets clients in again on the same port. The replaced broker keeps a thread
//! until the test process ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::mqtt::BrokerAddr;

/// A restartable in-process broker for tests. Dropping it stops the proxy (clients see the
/// broker go away).
#[derive(Debug)]
pub struct TestBroker {
    port: u16,
    proxy: JoinHandle<()>,
    shared: Arc<Mutex<ProxyState>>,
}

#[derive(Debug)]
struct ProxyState {
    upstream: Option<SocketAddr>,
    connections: Vec<AbortHandle>,
}

impl TestBroker {
    /// Starts a broker and its proxy on free loopback ports.
    pub async fn start() -> std::io::Result<TestBroker> {
        let upstream = start_rumqttd().await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Mutex::new(ProxyState {
            upstream: Some(upstream),
            connections: Vec::new(),
        }));
        let proxy = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(TestBroker {
            port,
            proxy,
            shared,
        })
    }

    /// The port clients connect to (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address clients connect to.
    pub fn addr(&self) -> BrokerAddr {
        BrokerAddr {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    /// Cuts every connection, keeps refusing clients for `down`, then serves them with a fresh
    /// broker.
    pub async fn restart(&self, down: Duration) -> std::io::Result<()> {
        {
            let mut state = self.state();
            state.upstream = None;
            for connection in state.connections.drain(..) {
                connection.abort();
            }
        }
        tokio::time::sleep(down).await;
        let upstream = start_rumqttd().await?;
        self.state().upstream = Some(upstream);
        Ok(())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.proxy.abort();
        for connection in self.state().connections.drain(..) {
            connection.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<ProxyState>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = shared.lock().unwrap_or_else(|p| p.into_inner()).upstream;
        // While restarting, a client is dropped at once, like a refused connection.
        let Some(upstream) = upstream else {
            continue;
        };
        let task = tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        state.connections.retain(|c| !c.is_finished());
        state.connections.push(task.abort_handle());
    }
}

/// Starts a rumqttd broker on a free loopback port and waits until it accepts connections.
async fn start_rumqttd() -> std::io::Result<SocketAddr> {
    // rumqttd binds by itself: find a free port, release it and hand it over.
    let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let config = broker_config(addr);
    std::thread::Builder::new()
        .name(format!("test-broker-{}", addr.port()))
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(err) = broker.start() {
                tracing::error!(error = %err, "test broker stopped");
            }
        })?;
    for _ in 0..500 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(addr);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(std::io::Error::other(format!(
        "the test broker did not listen on {addr} within 5 s"
    )))
}

fn broker_config(listen: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "test-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 2 * 1024 * 1024,
            // Retained messages beyond the free inflight slots are dropped by rumqttd: keep
            // room for every device spec of a test node.
            max_inflight_count: 2000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 5000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("test-v4".to_owned(), server)])),
        ..Config::default()
    }
}
