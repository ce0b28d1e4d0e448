//! The cloud end of the tunnel: the [`Hub`].
//!
//! Edge nodes connect to `wss://HOST:PORT/tunnel/v1/nodes/{node}` (the edge opens the
//! connection, so nodes behind NAT and firewalls work). The hub terminates TLS, authenticates the
//! node during the WebSocket upgrade (client certificate naming the node, or
//! `Authorization: Bearer <token>`; anything else gets `401`/`403` and no session), and runs one
//! link per node: a newer connection of the same node replaces the older one, and the older one
//! has fully stopped (including an application in progress) before the newer one reads its
//! resume point. Every inbound message is tagged with the authenticated node and checked by
//! [`isolation`](super::isolation) before the application sees it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::SinkExt;
use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::auth::{TokenStore, bearer_token, certificate_names_node};
use super::connection::{self, Io, LinkEnd, LinkParts, Socket, ws_config};
use super::frame::{SUBPROTOCOL, TUNNEL_PATH};
use super::hub_outbox::HubOutbox;
use super::inbox::{ApplyError, Delivery, Inbox};
use super::isolation::{self, Membership, Rejection};
use super::node::NodeName;
use super::outbox::OutboxError;
use super::session::{ResumePoint, Seq, SessionConfig};
use super::stats::{Counter, StatsSnapshot, TunnelStats};
use edgetwin_model::wire::Envelope;
use edgetwin_model::wire::payload::{BaseMessage, ErrorResult};

/// How the hub listens.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// TLS; `None` serves plain `ws://`, which needs `insecure`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Allows plain `ws://` (the `--insecure` flag). Never in production: tokens travel in clear.
    pub insecure: bool,
    /// Reliability tunables of each link.
    pub session: SessionConfig,
    /// The largest WebSocket message accepted.
    pub max_message_bytes: usize,
    /// TLS handshake plus WebSocket upgrade must finish within this.
    pub handshake_timeout: Duration,
}

impl HubConfig {
    /// Defaults for `listen`, with the given TLS configuration.
    pub fn new(listen: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        HubConfig {
            listen,
            tls,
            insecure: false,
            session: SessionConfig::default(),
            max_message_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Room for the frame around a message (`{"msg":{"seq":…,"prev":…,"message":…}}`).
const FRAME_OVERHEAD: usize = 128;

/// Close code sent to a connection that lost the race against a newer one of the same node.
const CLOSE_REPLACED: u16 = 4000;

/// What the hub works with besides its configuration.
pub struct HubParts {
    /// Node tokens.
    pub tokens: Arc<TokenStore>,
    /// Per-node outboxes (the same file may hold the tokens).
    pub store: HubOutbox,
    /// The application receiving the nodes' messages (the device controller).
    pub inbox: Arc<dyn Inbox>,
    /// Which devices belong to which node.
    pub membership: Arc<dyn Membership>,
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Plain WebSocket without the explicit opt-in.
    #[error(
        "refusing to serve plain ws:// without TLS: configure a certificate or pass --insecure"
    )]
    InsecureNotAllowed,
    /// The session configuration is inconsistent.
    #[error(transparent)]
    Session(#[from] super::session::SessionConfigError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Why [`Hub::send`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message concerns another node or a device not assigned to this node.
    #[error("not sent to node {node}: {rejection}")]
    Isolation {
        /// The addressed node.
        node: NodeName,
        /// Why.
        rejection: Rejection,
    },
    /// The message is larger than a tunnel message may be.
    #[error(
        "not sent to node {node}: message of {bytes} bytes exceeds the tunnel limit of {limit}"
    )]
    TooLarge {
        /// The addressed node.
        node: NodeName,
        /// The encoded message size.
        bytes: usize,
        /// `HubConfig::max_message_bytes` less the frame overhead.
        limit: usize,
    },
    /// The node's outbox refused or failed.
    #[error("not queued for node {node}: {source}")]
    Outbox {
        /// The addressed node.
        node: NodeName,
        /// What failed.
        #[source]
        source: OutboxError,
    },
}

/// The running hub. Dropping it does not stop it; call [`Hub::shutdown`].
pub struct Hub {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    config: HubConfig,
    parts: HubParts,
    nodes: Mutex<HashMap<NodeName, Arc<NodeSlot>>>,
    stats: Arc<TunnelStats>,
    stop: CancellationToken,
    next_link: AtomicU64,
}

/// Per-node state that outlives connections.
struct NodeSlot {
    /// Wakes the node's link when its outbox grows.
    wake: Arc<Notify>,
    /// Held by the running link: a newer link waits for it.
    running: Arc<tokio::sync::Mutex<()>>,
    /// The newest link of this node.
    current: Mutex<Option<CurrentLink>>,
}

struct CurrentLink {
    id: u64,
    stop: CancellationToken,
    established: Arc<AtomicBool>,
}

impl Hub {
    /// Binds the listener and starts accepting nodes.
    pub async fn start(config: HubConfig, parts: HubParts) -> Result<Hub, HubError> {
        if config.tls.is_none() && !config.insecure {
            return Err(HubError::InsecureNotAllowed);
        }
        config.session.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| HubError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| HubError::Listen {
            addr: config.listen,
            source,
        })?;
        if config.tls.is_none() {
            tracing::warn!(%local_addr, "tunnel hub serves plain ws:// (--insecure): tokens travel unencrypted");
        }
        let shared = Arc::new(Shared {
            config,
            parts,
            nodes: Mutex::new(HashMap::new()),
            stats: Arc::new(TunnelStats::default()),
            stop: CancellationToken::new(),
            next_link: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        tracing::info!(%local_addr, tls = shared.config.tls.is_some(), "tunnel hub listening");
        Ok(Hub {
            shared,
            local_addr,
            accept,
        })
    }

    /// The address the hub listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Queues `message` for `node` and wakes its link. Returns the message's sequence number
    /// once it is durably queued; delivery follows whenever the node is connected.
    pub async fn send(&self, node: &NodeName, message: Envelope) -> Result<Seq, SendError> {
        isolation::check(node, &message, self.shared.parts.membership.as_ref()).map_err(
            |rejection| SendError::Isolation {
                node: node.clone(),
                rejection,
            },
        )?;
        self.shared.enqueue(node, &message).await
    }

    /// Whether `node` has an established link now.
    pub fn is_connected(&self, node: &NodeName) -> bool {
        let slot = self.shared.nodes().get(node).cloned();
        slot.is_some_and(|slot| {
            slot.current()
                .as_ref()
                .is_some_and(|link| link.established.load(Ordering::Relaxed))
        })
    }

    /// Every node's outbox length (messages not yet acknowledged), in node order.
    pub async fn outbox_depths(&self) -> Result<Vec<(String, usize)>, OutboxError> {
        self.shared.parts.store.depths().await
    }

    /// The hub's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Stops accepting, closes every link (letting applications in progress finish) and waits.
    pub async fn shutdown(self) {
        self.shared.stop.cancel();
        if let Err(error) = self.accept.await {
            tracing::error!(%error, "tunnel hub accept loop panicked");
        }
    }
}

impl Shared {
    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, Arc<NodeSlot>>> {
        // Critical sections only insert or clone: a poisoned map is still consistent.
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot(&self, node: &NodeName) -> Arc<NodeSlot> {
        Arc::clone(self.nodes().entry(node.clone()).or_insert_with(|| {
            Arc::new(NodeSlot {
                wake: Arc::new(Notify::new()),
                running: Arc::new(tokio::sync::Mutex::new(())),
                current: Mutex::new(None),
            })
        }))
    }

    /// Queues `message` for `node` (no isolation check) and wakes its link.
    async fn enqueue(&self, node: &NodeName, message: &Envelope) -> Result<Seq, SendError> {
        let outbox_error = |source| SendError::Outbox {
            node: node.clone(),
            source,
        };
        let json = serde_json::to_string(message).map_err(|error| {
            outbox_error(OutboxError::Storage(format!(
                "cannot encode message: {error}"
            )))
        })?;
        let limit = self.config.max_message_bytes.saturating_sub(FRAME_OVERHEAD);
        if json.len() > limit {
            return Err(SendError::TooLarge {
                node: node.clone(),
                bytes: json.len(),
                limit,
            });
        }
        let seq = self
            .parts
            .store
            .append_json(node, json, message)
            .await
            .map_err(outbox_error)?;
        self.slot(node).wake.notify_one();
        Ok(seq)
    }
}

impl NodeSlot {
    fn current(&self) -> std::sync::MutexGuard<'_, Option<CurrentLink>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            Some(_) = links.join_next(), if !links.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    links.spawn(serve_connection(Arc::clone(&shared), stream, peer));
                }
                Err(error) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "tunnel hub cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while links.join_next().await.is_some() {}
    tracing::info!("tunnel hub stopped");
}

/// The outcome of the WebSocket upgrade request check.
struct Admitted {
    node: NodeName,
    method: &'static str,
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let handshake = upgrade(&shared, stream, peer);
    let (socket, admitted) =
        match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
            Ok(Some(upgraded)) => upgraded,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(%peer, "tunnel handshake timed out");
                return;
            }
        };
    run_link(&shared, socket, admitted, peer).await;
}

/// TLS, then the WebSocket upgrade with authentication. `None` when refused (already logged).
// The refusal type is tungstenite's `ErrorResponse`, dictated by its handshake callback.
#[allow(clippy::result_large_err)]
async fn upgrade(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(Socket, Admitted)> {
    let (io, certificate): (Box<dyn Io>, _) = match &shared.config.tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
            match acceptor.accept(stream).await {
                Ok(tls) => {
                    let leaf = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|cert| cert.clone().into_owned());
                    (Box::new(tls), leaf)
                }
                Err(error) => {
                    tracing::info!(%peer, %error, "tunnel TLS handshake failed");
                    return None;
                }
            }
        }
        None => (Box::new(stream), None),
    };
    let mut admitted = None;
    let callback = |request: &Request, response: Response| {
        let result = admit(shared, request, certificate.as_ref(), peer);
        match result {
            Ok(who) => {
                admitted = Some(who);
                Ok(with_subprotocol(response))
            }
            Err(refusal) => Err(refusal),
        }
    };
    let config = ws_config(shared.config.max_message_bytes);
    let upgraded =
        tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config)).await;
    match upgraded {
        Ok(socket) => admitted.map(|who| (socket, who)),
        Err(error) => {
            tracing::debug!(%peer, %error, "tunnel WebSocket upgrade did not complete");
            None
        }
    }
}

fn with_subprotocol(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    response
}

fn refusal(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"edgetwin\""),
        );
    }
    response
}

/// Checks path, subprotocol and credentials of an upgrade request.
#[allow(clippy::result_large_err)]
fn admit(
    shared: &Shared,
    request: &Request,
    certificate: Option<&rustls::pki_types::CertificateDer<'static>>,
    peer: SocketAddr,
) -> Result<Admitted, ErrorResponse> {
    let Some(name) = request.uri().path().strip_prefix(TUNNEL_PATH) else {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            "unknown path; edge nodes connect to /tunnel/v1/nodes/{node}",
        ));
    };
    let node = NodeName::new(name)
        .map_err(|error| refusal(StatusCode::BAD_REQUEST, &error.to_string()))?;
    let offers_subprotocol = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == SUBPROTOCOL);
    if !offers_subprotocol {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "the client must ask for the edgetwin.tunnel.v1 WebSocket subprotocol",
        ));
    }
    let deny = |status, reason: &'static str| {
        shared.stats.bump(Counter::AuthFailures);
        tracing::warn!(%peer, %node, reason, "tunnel connection refused");
        refusal(status, reason)
    };
    if let Some(cert) = certificate {
        if certificate_names_node(cert, &node) {
            return Ok(Admitted {
                node,
                method: "client certificate",
            });
        }
        if bearer(request).is_none() {
            return Err(deny(
                StatusCode::FORBIDDEN,
                "the client certificate does not name this node",
            ));
        }
    }
    let Some(token) = bearer(request) else {
        return Err(deny(
            StatusCode::UNAUTHORIZED,
            "missing credentials: send Authorization: Bearer <token> or a client certificate",
        ));
    };
    // tungstenite's handshake callback is synchronous: the check is one primary-key lookup in
    // sqlite (microseconds), done inline.
    match shared.parts.tokens.verify(&node, token) {
        Ok(()) => Ok(Admitted {
            node,
            method: "token",
        }),
        Err(super::auth::AuthError::Unauthorized { reason, .. }) => {
            Err(deny(StatusCode::UNAUTHORIZED, reason))
        }
        Err(error) => {
            tracing::error!(%peer, %node, %error, "tunnel token check failed");
            Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check credentials now",
            ))
        }
    }
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
}

/// Runs an admitted connection as `node`'s link, replacing any older one.
async fn run_link(shared: &Arc<Shared>, socket: Socket, admitted: Admitted, peer: SocketAddr) {
    let Admitted { node, method } = admitted;
    let slot = shared.slot(&node);
    let id = shared.next_link.fetch_add(1, Ordering::Relaxed);
    let stop = shared.stop.child_token();
    let established = Arc::new(AtomicBool::new(false));
    let previous = slot.current().replace(CurrentLink {
        id,
        stop: stop.clone(),
        established: Arc::clone(&established),
    });
    if let Some(previous) = previous {
        tracing::info!(%node, %peer, "node connected again; closing its previous link");
        shared.stats.bump(Counter::LinksReplaced);
        previous.stop.cancel();
    }
    // Wait until the previous link (and its application in progress) has stopped.
    let running = Arc::clone(&slot.running).lock_owned().await;
    if stop.is_cancelled() {
        // An even newer connection arrived meanwhile.
        refuse(socket, CLOSE_REPLACED, "replaced by a newer connection").await;
        return;
    }
    let outbox = match shared.parts.store.outbox(&node).await {
        Ok(outbox) => outbox,
        Err(error) => {
            tracing::error!(%node, %error, "tunnel link cannot open the node's outbox");
            refuse(socket, 1011, "internal error").await;
            return;
        }
    };
    let parts = LinkParts {
        node: node.clone(),
        config: shared.config.session.clone(),
        outbox: Arc::new(outbox),
        wake: Arc::clone(&slot.wake),
        inbox: Arc::new(GuardedInbox {
            shared: Arc::clone(shared),
        }),
        stop: stop.clone(),
        stats: Arc::clone(&shared.stats),
        max_message_bytes: shared.config.max_message_bytes,
        side: "hub",
    };
    tracing::info!(%node, %peer, method, "tunnel node authenticated");
    let end = connection::run(socket, &parts, || {
        established.store(true, Ordering::Relaxed);
    })
    .await;
    drop(running);
    {
        let mut current = slot.current();
        if current.as_ref().is_some_and(|link| link.id == id) {
            *current = None;
        }
    }
    match &end {
        LinkEnd::Stopped => tracing::info!(%node, "tunnel link closed"),
        end => tracing::info!(%node, %end, "tunnel link ended"),
    }
}

/// Sends a close frame with `code` and `reason` on a socket that never became a link.
async fn refuse(mut socket: Socket, code: u16, reason: &str) {
    let close = Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), socket.send(close)).await;
}

/// The application's inbox behind the isolation check.
struct GuardedInbox {
    shared: Arc<Shared>,
}

impl GuardedInbox {
    async fn reject(&self, delivery: &Delivery, rejection: Rejection) -> Result<(), ApplyError> {
        let node = &delivery.node;
        let message = &delivery.message;
        self.shared.stats.bump(Counter::IsolationRejections);
        tracing::warn!(
            %node,
            msg_id = %message.header.msg_id,
            resource = message.route.resource.as_deref().unwrap_or(""),
            code = rejection.code,
            reason = %rejection.reason,
            "tunnel message rejected: outside the node's scope"
        );
        let reply = error_reply(message, &rejection);
        match self.shared.enqueue(node, &reply).await {
            Ok(_)
            | Err(SendError::Outbox {
                source: OutboxError::Full { .. },
                ..
            }) => {}
            Err(error) => return Err(ApplyError(error.to_string())),
        }
        self.shared
            .parts
            .inbox
            .record_skipped(node, delivery.resume_point())
            .await
    }
}

impl Inbox for GuardedInbox {
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        self.shared.parts.inbox.resume_point(node)
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        Box::pin(async move {
            let verdict = isolation::check(
                &delivery.node,
                &delivery.message,
                self.shared.parts.membership.as_ref(),
            );
            match verdict {
                Ok(()) => self.shared.parts.inbox.apply(delivery).await,
                Err(rejection) => self.reject(&delivery, rejection).await,
            }
        })
    }
}

/// The `error` reply to a rejected message: beehive shape, `parent_msg_id` = the rejected id,
/// content `{code, reason}`.
fn error_reply(rejected: &Envelope, rejection: &Rejection) -> Envelope {
    let now = jiff::Timestamp::now();
    let mut reply = Envelope::default();
    reply.header.msg_id = uuid::Uuid::new_v4().to_string();
    reply.header.parent_msg_id = Some(rejected.header.msg_id.clone());
    reply.header.timestamp = now.as_millisecond();
    reply.route.source = Some("edgetwin-hub".into());
    reply.route.group = rejected.route.group.clone();
    reply.route.operation = Some("error".into());
    reply.route.resource = rejected.route.resource.clone();
    let result = ErrorResult::new(
        BaseMessage::new(uuid::Uuid::new_v4().to_string(), now),
        rejection.code,
        rejection.reason.clone(),
    );
    reply.content = serde_json::to_value(result).unwrap_or_default();
    reply
}
