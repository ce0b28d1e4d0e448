//! The edge end of the tunnel: [`HubClient`] opens the connection to the cloud (so the node may
//! sit behind NAT or a firewall), keeps it up with reconnects (exponential backoff, full jitter)
//! and runs the link over it.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri, header};
use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, BackoffConfig};
use super::connection::{self, Io, LinkEnd, LinkParts, Socket, ws_config};
use super::frame::{SUBPROTOCOL, TUNNEL_PATH};
use super::inbox::Inbox;
use super::node::NodeName;
use super::outbox::Outbox;
use super::session::SessionConfig;
use super::stats::{StatsSnapshot, TunnelStats};

/// How the edge reaches the cloud.
#[derive(Debug, Clone)]
pub struct HubClientConfig {
    /// The cloud's tunnel endpoint, `wss://host:port` (a path prefix is kept; the node's path is
    /// appended).
    pub url: String,
    /// This node.
    pub node: NodeName,
    /// The node's token, sent as `Authorization: Bearer …` (not needed with a client
    /// certificate that names the node).
    pub token: Option<String>,
    /// TLS: the CA the cloud's certificate must chain to, and optionally a client certificate.
    /// Required for `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Allows a plain `ws://` URL (the `--insecure` flag).
    pub insecure: bool,
    /// Reliability tunables of the link.
    pub session: SessionConfig,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// TCP connect, TLS handshake and WebSocket upgrade must finish within this.
    pub connect_timeout: Duration,
    /// The largest WebSocket message accepted.
    pub max_message_bytes: usize,
}

impl HubClientConfig {
    /// Defaults for everything but the endpoint, identity and TLS.
    pub fn new(
        url: impl Into<String>,
        node: NodeName,
        token: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        HubClientConfig {
            url: url.into(),
            node,
            token,
            tls,
            insecure: false,
            session: SessionConfig::default(),
            backoff: BackoffConfig::default(),
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: edgetwin_model::limits::MAX_TUNNEL_MESSAGE_BYTES,
        }
    }
}

/// A configuration the client refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    /// The URL does not parse or has the wrong scheme.
    #[error("tunnel URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `ws://` without the explicit opt-in.
    #[error("refusing plain ws:// to {url}: use wss:// or pass --insecure")]
    InsecureNotAllowed {
        /// The URL.
        url: String,
    },
    /// `wss://` without a TLS configuration.
    #[error("{url} needs a CA certificate to check the cloud's certificate against")]
    MissingTls {
        /// The URL.
        url: String,
    },
    /// Inconsistent session tunables.
    #[error(transparent)]
    Session(#[from] super::session::SessionConfigError),
}

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection failed.
    #[error("cannot reach {addr}: {source}")]
    Tcp {
        /// host:port.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (e.g. the cloud's certificate does not chain to the CA).
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// The host name checked against the certificate.
        host: String,
        /// The rustls error, e.g. "invalid peer certificate: UnknownIssuer".
        #[source]
        source: std::io::Error,
    },
    /// The cloud refused the upgrade (401: bad token, 403: certificate for another node, …).
    #[error("the cloud refused the connection: HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The cloud's explanation.
        body: String,
    },
    /// The WebSocket upgrade failed otherwise.
    #[error("WebSocket upgrade failed: {0}")]
    Upgrade(String),
    /// The attempt took longer than the connect timeout.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

/// What the client is doing, for health endpoints and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Opening a connection (attempt number since the last established link, from 1).
    Connecting {
        /// The attempt.
        attempt: u32,
    },
    /// The link is up (hello exchanged).
    Connected,
    /// Waiting before the next attempt.
    Waiting {
        /// How long.
        delay: Duration,
        /// Why the last connection ended or failed.
        last_error: String,
    },
    /// Shut down.
    Stopped,
}

/// Starts [`HubClient`]s.
pub struct HubClient;

/// Controls a running client.
pub struct HubClientHandle {
    wake: Arc<Notify>,
    state: watch::Receiver<ClientState>,
    stop: CancellationToken,
    stats: Arc<TunnelStats>,
    task: tokio::task::JoinHandle<()>,
}

/// The parsed endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The full WebSocket URL of this node's tunnel.
    url: String,
    host: String,
    port: u16,
    tls: bool,
}

impl HubClient {
    /// Checks `config` and starts connecting in the background. `outbox` holds what this node
    /// sends; `inbox` applies what the cloud sends.
    pub fn start(
        config: HubClientConfig,
        outbox: Arc<dyn Outbox>,
        inbox: Arc<dyn Inbox>,
    ) -> Result<HubClientHandle, ClientConfigError> {
        let endpoint = endpoint(&config)?;
        config.session.validate()?;
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let stats = Arc::new(TunnelStats::default());
        let (state_tx, state) = watch::channel(ClientState::Connecting { attempt: 1 });
        let parts = LinkParts {
            node: config.node.clone(),
            config: config.session.clone(),
            outbox,
            wake: Arc::clone(&wake),
            inbox,
            stop: stop.clone(),
            stats: Arc::clone(&stats),
            max_message_bytes: config.max_message_bytes,
            side: "edge",
        };
        let task = tokio::spawn(reconnect_loop(config, endpoint, parts, state_tx));
        Ok(HubClientHandle {
            wake,
            state,
            stop,
            stats,
            task,
        })
    }
}

/// Wakes a client's link when its outbox has new entries; cheap to clone and to keep wherever
/// the outbox is appended to.
#[derive(Debug, Clone)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// Tells the link that the outbox has new entries (call after every append).
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

impl HubClientHandle {
    /// Tells the link that the outbox has new entries (call after every append).
    pub fn outbox_changed(&self) {
        self.wake.notify_one();
    }

    /// A handle that does what [`HubClientHandle::outbox_changed`] does, for other tasks.
    pub fn waker(&self) -> OutboxWaker {
        OutboxWaker(Arc::clone(&self.wake))
    }

    /// What the client is doing now.
    pub fn state(&self) -> ClientState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<ClientState> {
        self.state.clone()
    }

    /// The client's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Closes the link (letting an application in progress finish) and stops reconnecting.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "tunnel client task panicked");
        }
    }
}

fn endpoint(config: &HubClientConfig) -> Result<Endpoint, ClientConfigError> {
    let bad = |reason: &str| ClientConfigError::Url {
        url: config.url.clone(),
        reason: reason.to_owned(),
    };
    let uri: Uri = config.url.parse().map_err(
        |error: tokio_tungstenite::tungstenite::http::uri::InvalidUri| bad(&error.to_string()),
    )?;
    let tls = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(bad("the scheme must be wss:// (or ws:// with --insecure)")),
    };
    if !tls && !config.insecure {
        return Err(ClientConfigError::InsecureNotAllowed {
            url: config.url.clone(),
        });
    }
    if tls && config.tls.is_none() {
        return Err(ClientConfigError::MissingTls {
            url: config.url.clone(),
        });
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    let prefix = uri.path().trim_end_matches('/');
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let scheme = if tls { "wss" } else { "ws" };
    let url = format!(
        "{scheme}://{authority}{prefix}{TUNNEL_PATH}{node}",
        node = config.node
    );
    Ok(Endpoint {
        url,
        host,
        port,
        tls,
    })
}

async fn reconnect_loop(
    config: HubClientConfig,
    endpoint: Endpoint,
    parts: LinkParts,
    state: watch::Sender<ClientState>,
) {
    let mut backoff = Backoff::new(config.backoff);
    let mut rng = StdRng::from_os_rng();
    loop {
        state.send_replace(ClientState::Connecting {
            attempt: backoff.attempts() + 1,
        });
        let attempt = tokio::select! {
            () = parts.stop.cancelled() => break,
            attempt = tokio::time::timeout(config.connect_timeout, connect(&config, &endpoint)) => attempt,
        };
        let last_error = match attempt {
            Ok(Ok(socket)) => {
                let end = connection::run(socket, &parts, || {
                    backoff.reset();
                    state.send_replace(ClientState::Connected);
                    tracing::info!(node = %config.node, url = %endpoint.url, "tunnel connected");
                })
                .await;
                if end == LinkEnd::Stopped {
                    break;
                }
                tracing::warn!(node = %config.node, %end, "tunnel link ended");
                end.to_string()
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => ConnectError::Timeout(config.connect_timeout).to_string(),
        };
        let delay = backoff.next_delay(&mut rng);
        tracing::warn!(
            node = %config.node,
            url = %endpoint.url,
            error = %last_error,
            attempts = backoff.attempts(),
            ?delay,
            "tunnel not connected; retrying"
        );
        state.send_replace(ClientState::Waiting { delay, last_error });
        tokio::select! {
            () = parts.stop.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    state.send_replace(ClientState::Stopped);
}

/// One attempt: TCP, TLS (checked against the configured CA only), WebSocket upgrade.
async fn connect(config: &HubClientConfig, endpoint: &Endpoint) -> Result<Socket, ConnectError> {
    // A (host, port) pair also resolves bare IPv6 addresses, which "host:port" would not.
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| ConnectError::Tcp {
            addr: format!("{}:{}", endpoint.host, endpoint.port),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match (&config.tls, endpoint.tls) {
        (Some(tls), true) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(
                |error| ConnectError::Tls {
                    host: endpoint.host.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
                },
            )?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
            let stream =
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ConnectError::Tls {
                        host: endpoint.host.clone(),
                        source,
                    })?;
            Box::new(stream)
        }
        _ => Box::new(tcp),
    };
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|error| ConnectError::Upgrade(error.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Some(token) = &config.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ConnectError::Upgrade("the token is not a valid header value".into()))?;
        headers.insert(header::AUTHORIZATION, value);
    }
    let upgraded = tokio_tungstenite::client_async_with_config(
        request,
        io,
        Some(ws_config(config.max_message_bytes)),
    )
    .await;
    match upgraded {
        Ok((socket, _response)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            Err(ConnectError::Refused {
                status: response.status().as_u16(),
                body,
            })
        }
        Err(error) => Err(ConnectError::Upgrade(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> HubClientConfig {
        HubClientConfig::new(url, NodeName::new("edge-1").expect("node"), None, None)
    }

    #[test]
    fn plain_ws_needs_the_insecure_flag() {
        let error = endpoint(&config("ws://cloud:80")).expect_err("refused");
        assert!(
            matches!(error, ClientConfigError::InsecureNotAllowed { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("--insecure"), "{error}");
        let insecure = HubClientConfig {
            insecure: true,
            ..config("ws://cloud:8080/base/")
        };
        let endpoint = endpoint(&insecure).expect("allowed");
        assert_eq!(endpoint.url, "ws://cloud:8080/base/tunnel/v1/nodes/edge-1");
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("cloud", 8080));
    }

    #[tokio::test]
    async fn ipv6_hosts_are_reached_without_brackets() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("skipping: no IPv6 loopback here");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        let config = HubClientConfig {
            insecure: true,
            ..config(&format!("ws://[::1]:{port}"))
        };
        let endpoint = endpoint(&config).expect("endpoint");
        assert_eq!(endpoint.host, "::1");
        assert_eq!(
            endpoint.url,
            format!("ws://[::1]:{port}/tunnel/v1/nodes/edge-1")
        );
        // The upgrade fails (nobody answers it), but the TCP connection is made.
        let attempt = tokio::spawn(async move { connect(&config, &endpoint).await });
        let (socket, _) = listener.accept().await.expect("a TCP connection arrives");
        drop(socket);
        let error = attempt
            .await
            .expect("join")
            .err()
            .expect("no WebSocket here");
        assert!(matches!(error, ConnectError::Upgrade(_)), "{error}");
    }

    #[test]
    fn wss_needs_a_ca_and_urls_are_checked() {
        let error = endpoint(&config("wss://cloud")).expect_err("no CA");
        assert!(
            matches!(error, ClientConfigError::MissingTls { .. }),
            "{error}"
        );
        for url in ["http://cloud", "cloud:443", "wss://cloud/?x=1"] {
            let error = endpoint(&HubClientConfig {
                insecure: true,
                ..config(url)
            })
            .expect_err(url);
            assert!(error.to_string().contains(url), "{error}");
        }
    }
}
