//! The tunnel end to end in one process: a real [`Hub`] and real [`HubClient`]s over loopback
//! TCP, TLS with generated certificates, sqlite outboxes, and a proxy that cuts the link.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::auth::TokenStore;
use super::backoff::BackoffConfig;
use super::client::{ClientConfigError, ClientState, HubClient, HubClientConfig, HubClientHandle};
use super::hub_outbox::{HubOutbox, HubOutboxOptions};
use super::inbox::{ApplyError, Delivery, Inbox};
use super::isolation::tests::Table;
use super::node::NodeName;
use super::outbox::{MemoryOutbox, Outbox};
use super::server::{Hub, HubConfig, HubError, HubParts, SendError};
use super::session::{ResumePoint, SessionConfig};
use super::tls::{self, ClientTlsFiles, ServerTlsFiles};
use edgetwin_model::wire::Envelope;
use edgetwin_testkit::pki::TestCa;
use edgetwin_testkit::proxy::TcpProxy;

const WAIT: Duration = Duration::from_secs(30);

fn node(name: &str) -> NodeName {
    NodeName::new(name).expect("node name")
}

/// A message about `device` of namespace `default`, with a fresh id and `n` as content.
fn report(device: &str, n: usize) -> Envelope {
    let mut envelope = Envelope::default();
    envelope.header.msg_id = uuid::Uuid::new_v4().to_string();
    envelope.route.operation = Some("update".into());
    envelope.route.resource = Some(format!("device/default/{device}/twin/edge_updated"));
    envelope.content = serde_json::json!({ "n": n });
    envelope
}

fn desired(node_name: &str, device: &str, n: usize) -> Envelope {
    let mut envelope = report(device, n);
    envelope.route.resource = Some(format!(
        "node/{node_name}/device/default/{device}/twin/cloud_updated"
    ));
    envelope
}

/// Polls `condition` until it holds; fails the test after [`WAIT`].
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An application that records what it applied, with the resume point in the same critical
/// section (so application and resume point are atomic, like one sqlite transaction).
#[derive(Default)]
struct Recorder {
    state: Mutex<Recorded>,
    /// Message ids whose first application fails.
    fail_once: Mutex<HashSet<String>>,
    /// When set, each application waits for a permit.
    gate: Option<Arc<Semaphore>>,
}

#[derive(Default)]
struct Recorded {
    applied: Vec<(NodeName, Envelope)>,
    resume: HashMap<NodeName, ResumePoint>,
}

impl Recorder {
    fn gated(gate: Arc<Semaphore>) -> Self {
        Recorder {
            gate: Some(gate),
            ..Recorder::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().expect("recorder lock")
    }

    fn count(&self) -> usize {
        self.lock().applied.len()
    }

    /// Applied message contents (`n`) in application order.
    fn numbers(&self) -> Vec<u64> {
        self.lock()
            .applied
            .iter()
            .map(|(_, m)| m.content["n"].as_u64().expect("n"))
            .collect()
    }

    fn applications_per_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (_, message) in &self.lock().applied {
            *counts.entry(message.header.msg_id.clone()).or_default() += 1;
        }
        counts
    }
}

impl Inbox for Recorder {
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        let point = self.lock().resume.get(node).copied();
        Box::pin(async move { Ok(point) })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate").forget();
            }
            let id = delivery.message.header.msg_id.clone();
            if self.fail_once.lock().expect("lock").remove(&id) {
                return Err(ApplyError(format!("simulated failure applying {id}")));
            }
            let mut state = self.lock();
            state
                .resume
                .insert(delivery.node.clone(), delivery.resume_point());
            state.applied.push((delivery.node, delivery.message));
            Ok(())
        })
    }

    fn record_skipped<'a>(
        &'a self,
        node: &'a NodeName,
        point: ResumePoint,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.lock().resume.insert(node.clone(), point);
        Box::pin(async { Ok(()) })
    }
}

fn fast_session() -> SessionConfig {
    SessionConfig {
        window: 16,
        ack_every: 4,
        ack_delay: Duration::from_millis(5),
        retransmit_initial: Duration::from_millis(300),
        retransmit_max: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(300),
        heartbeat_timeout: Duration::from_secs(2),
    }
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    }
}

/// A hub with its files, certificates and membership.
struct Cloud {
    dir: tempfile::TempDir,
    ca: TestCa,
    hub: Hub,
    store: HubOutbox,
    tokens: Arc<TokenStore>,
    inbox: Arc<Recorder>,
}

struct CloudOptions {
    tls: bool,
    client_ca: bool,
    session: SessionConfig,
    inbox: Arc<Recorder>,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            tls: true,
            client_ca: false,
            session: fast_session(),
            inbox: Arc::new(Recorder::default()),
        }
    }
}

fn membership() -> Table {
    Table::new(&[
        ("edge-1", "default", "lamp"),
        ("edge-1", "default", "fan"),
        ("edge-2", "default", "pump"),
    ])
}

impl Cloud {
    async fn start(options: CloudOptions) -> Cloud {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new(dir.path(), "cloud").expect("ca");
        let db = dir.path().join("cloud.db");
        let store = HubOutbox::open(&db, HubOutboxOptions::default()).expect("store");
        let tokens = Arc::new(TokenStore::open(&db).expect("tokens"));
        let tls = options.tls.then(|| {
            let server = ca.issue(&["localhost", "127.0.0.1"]).expect("server cert");
            tls::server_config(&ServerTlsFiles {
                cert_chain: server.cert,
                key: server.key,
                client_ca: options.client_ca.then(|| ca.ca_file().to_owned()),
            })
            .expect("server tls")
        });
        let mut config = HubConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tls);
        config.insecure = !options.tls;
        config.session = options.session;
        let parts = HubParts {
            tokens: Arc::clone(&tokens),
            store: store.clone(),
            inbox: options.inbox.clone(),
            membership: Arc::new(membership()),
        };
        let hub = Hub::start(config, parts).await.expect("hub");
        Cloud {
            dir,
            ca,
            hub,
            store,
            tokens,
            inbox: options.inbox,
        }
    }

    fn url(&self, addr: SocketAddr) -> String {
        format!("wss://localhost:{}", addr.port())
    }

    fn client_tls(&self, client_cert: Option<&str>) -> Arc<rustls::ClientConfig> {
        let client_cert = client_cert.map(|name| {
            let files = self.ca.issue(&[name]).expect("client cert");
            (files.cert, files.key)
        });
        tls::client_config(&ClientTlsFiles {
            ca: self.ca.ca_file().to_owned(),
            client_cert,
        })
        .expect("client tls")
    }

    /// Queues `desired(node, device, n)` for each `n`.
    async fn send_desired(&self, node_name: &str, device: &str, numbers: std::ops::Range<usize>) {
        for n in numbers {
            self.hub
                .send(&node(node_name), desired(node_name, device, n))
                .await
                .expect("send");
        }
    }

    /// A proxy in front of the hub and an `edge-1` client connected through it.
    async fn edge_through_proxy(&self) -> (TcpProxy, Edge) {
        let proxy = TcpProxy::start(self.hub.local_addr()).await.expect("proxy");
        let edge = Edge::start(self.client_config("edge-1", proxy.addr()));
        edge.connected().await;
        (proxy, edge)
    }

    /// A client config for `name` with a fresh token, connecting to `addr` (the hub or a proxy).
    fn client_config(&self, name: &str, addr: SocketAddr) -> HubClientConfig {
        let token = self.tokens.create(&node(name)).expect("token");
        let mut config = HubClientConfig::new(
            self.url(addr),
            node(name),
            Some(token.expose().to_owned()),
            Some(self.client_tls(None)),
        );
        config.session = fast_session();
        config.backoff = fast_backoff();
        config
    }
}

/// An edge node: a client with an in-memory outbox and a recording inbox.
struct Edge {
    client: HubClientHandle,
    outbox: Arc<MemoryOutbox>,
    inbox: Arc<Recorder>,
}

impl Edge {
    fn start(config: HubClientConfig) -> Edge {
        Edge::start_with(config, Arc::new(Recorder::default()))
    }

    fn start_with(config: HubClientConfig, inbox: Arc<Recorder>) -> Edge {
        let outbox = Arc::new(MemoryOutbox::new(100_000));
        let client =
            HubClient::start(config, outbox.clone(), inbox.clone()).expect("client config");
        Edge {
            client,
            outbox,
            inbox,
        }
    }

    async fn send(&self, message: Envelope) {
        self.outbox.append(message).await.expect("append");
        self.client.outbox_changed();
    }

    async fn connected(&self) {
        let mut state = self.client.watch_state();
        tokio::time::timeout(WAIT, state.wait_for(|s| *s == ClientState::Connected))
            .await
            .unwrap_or_else(|_| panic!("not connected: {:?}", self.client.state()))
            .expect("state channel");
    }

    /// Waits until the client reports a failed attempt and returns its error text.
    async fn failure(&self) -> String {
        let mut state = self.client.watch_state();
        let state = tokio::time::timeout(
            WAIT,
            state.wait_for(|s| matches!(s, ClientState::Waiting { .. })),
        )
        .await
        .expect("a failed attempt")
        .expect("state channel")
        .clone();
        match state {
            ClientState::Waiting { last_error, .. } => last_error,
            other => panic!("unexpected state {other:?}"),
        }
    }
}

#[tokio::test]
async fn tls_is_checked_against_the_configured_ca_only() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let good = Edge::start(cloud.client_config("edge-1", cloud.hub.local_addr()));
    good.connected().await;
    good.client.shutdown().await;

    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = TestCa::new(other_dir.path(), "other").expect("ca");
    let mut config = cloud.client_config("edge-1", cloud.hub.local_addr());
    config.tls = Some(
        tls::client_config(&ClientTlsFiles {
            ca: other_ca.ca_file().to_owned(),
            client_cert: None,
        })
        .expect("tls"),
    );
    let wrong = Edge::start(config);
    let error = wrong.failure().await;
    assert!(
        error.contains("TLS handshake with localhost failed"),
        "{error}"
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_eq!(
        cloud.hub.stats().links_established,
        1,
        "no session for the wrong CA"
    );
    wrong.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn a_bad_or_missing_token_gets_401_and_no_session() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let mut config = cloud.client_config("edge-1", cloud.hub.local_addr());
    config.token = Some("et1_not-the-token".into());
    let edge = Edge::start(config.clone());
    let error = edge.failure().await;
    assert!(error.contains("HTTP 401"), "{error}");
    edge.client.shutdown().await;

    config.token = None;
    let edge = Edge::start(config);
    let error = edge.failure().await;
    assert!(
        error.contains("HTTP 401") && error.contains("missing credentials"),
        "{error}"
    );
    edge.client.shutdown().await;

    let stats = cloud.hub.stats();
    assert!(stats.auth_failures >= 2, "{stats:?}");
    assert_eq!(stats.links_established, 0);
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn client_certificates_authenticate_the_node_they_name() {
    let cloud = Cloud::start(CloudOptions {
        client_ca: true,
        ..CloudOptions::default()
    })
    .await;
    let url = cloud.url(cloud.hub.local_addr());
    let with_cert = |node_name: &str, cert_for: &str| {
        let mut config = HubClientConfig::new(
            url.clone(),
            node(node_name),
            None,
            Some(cloud.client_tls(Some(cert_for))),
        );
        config.backoff = fast_backoff();
        config
    };
    let edge = Edge::start(with_cert("edge-1", "edge-1"));
    edge.connected().await;
    edge.send(report("lamp", 1)).await;
    wait_for("the report", || cloud.inbox.count() == 1).await;
    edge.client.shutdown().await;

    let impostor = Edge::start(with_cert("edge-1", "edge-2"));
    let error = impostor.failure().await;
    assert!(error.contains("HTTP 403"), "{error}");
    assert!(error.contains("does not name this node"), "{error}");
    impostor.client.shutdown().await;
    assert_eq!(cloud.hub.stats().links_established, 1);
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn plain_ws_needs_insecure_on_both_sides() {
    let hub = Hub::start(
        HubConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), None),
        HubParts {
            tokens: Arc::new(
                TokenStore::open(&tempfile::tempdir().expect("dir").path().join("t.db"))
                    .expect("tokens"),
            ),
            store: HubOutbox::open(
                &tempfile::tempdir().expect("dir").path().join("s.db"),
                HubOutboxOptions::default(),
            )
            .expect("store"),
            inbox: Arc::new(Recorder::default()),
            membership: Arc::new(membership()),
        },
    )
    .await;
    assert!(matches!(hub, Err(HubError::InsecureNotAllowed)));

    let config = HubClientConfig::new("ws://127.0.0.1:1", node("edge-1"), None, None);
    let error = HubClient::start(
        config.clone(),
        Arc::new(MemoryOutbox::new(1)),
        Arc::new(Recorder::default()),
    )
    .err()
    .expect("refused");
    assert!(
        matches!(error, ClientConfigError::InsecureNotAllowed { .. }),
        "{error}"
    );

    // With the flag on both sides, plain ws works.
    let cloud = Cloud::start(CloudOptions {
        tls: false,
        ..CloudOptions::default()
    })
    .await;
    let mut config = cloud.client_config("edge-1", cloud.hub.local_addr());
    config.url = format!("ws://127.0.0.1:{}", cloud.hub.local_addr().port());
    config.tls = None;
    config.insecure = true;
    let edge = Edge::start(config);
    edge.connected().await;
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn messages_are_delivered_in_order_both_ways() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let edge = Edge::start(cloud.client_config("edge-1", cloud.hub.local_addr()));
    const N: usize = 300;
    for n in 0..N {
        edge.send(report("lamp", n)).await;
        cloud
            .hub
            .send(&node("edge-1"), desired("edge-1", "lamp", n))
            .await
            .expect("send");
    }
    wait_for("both directions", || {
        cloud.inbox.count() == N && edge.inbox.count() == N
    })
    .await;
    let expected: Vec<u64> = (0..N as u64).collect();
    assert_eq!(cloud.inbox.numbers(), expected);
    assert_eq!(edge.inbox.numbers(), expected);
    assert!(
        cloud
            .inbox
            .lock()
            .applied
            .iter()
            .all(|(n, _)| n.as_str() == "edge-1")
    );
    wait_for("acks drain both outboxes", || edge.outbox.is_empty()).await;
    let store = cloud.store.clone();
    let mut depth = usize::MAX;
    for _ in 0..100 {
        depth = store.depth(&node("edge-1")).await.expect("depth");
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(depth, 0, "the hub's outbox drains on acks");
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn cutting_the_connection_mid_stream_loses_and_duplicates_nothing() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let (proxy, edge) = cloud.edge_through_proxy().await;
    const N: usize = 400;
    for n in 0..N {
        edge.send(report("lamp", n)).await;
        cloud
            .hub
            .send(&node("edge-1"), desired("edge-1", "fan", n))
            .await
            .expect("send");
        if n % 80 == 40 {
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(30)).await;
            proxy.heal();
        }
        if n % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    wait_for("everything after the cuts", || {
        cloud.inbox.count() >= N && edge.inbox.count() >= N
    })
    .await;
    // Let any duplicate that would arrive arrive.
    wait_for("the edge outbox to drain", || edge.outbox.is_empty()).await;
    for (side, inbox) in [("cloud", &cloud.inbox), ("edge", &edge.inbox)] {
        let expected: Vec<u64> = (0..N as u64).collect();
        assert_eq!(
            inbox.numbers(),
            expected,
            "{side}: in order, no loss, no duplicate"
        );
        assert!(
            inbox.applications_per_id().values().all(|c| *c == 1),
            "{side}"
        );
    }
    let stats = edge.client.stats();
    assert!(
        stats.links_established >= 2,
        "the cuts forced reconnects: {stats:?}"
    );
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn a_failed_application_is_resent_and_applied_once() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let edge = Edge::start(cloud.client_config("edge-1", cloud.hub.local_addr()));
    edge.connected().await;
    let messages: Vec<Envelope> = (0..20).map(|n| report("lamp", n)).collect();
    // The hub applies #5 only on the second try: #5..#19 are dropped once and resent after the
    // edge's retransmission timeout, as after a lost ack.
    cloud
        .inbox
        .fail_once
        .lock()
        .expect("lock")
        .insert(messages[5].header.msg_id.clone());
    for message in messages {
        edge.send(message).await;
    }
    wait_for("all 20", || cloud.inbox.count() == 20).await;
    assert_eq!(cloud.inbox.numbers(), (0..20).collect::<Vec<u64>>());
    assert!(cloud.inbox.applications_per_id().values().all(|c| *c == 1));
    let (hub, client) = (cloud.hub.stats(), edge.client.stats());
    assert_eq!(hub.apply_failures, 1, "{hub:?}");
    assert!(client.retransmissions >= 1, "{client:?}");
    assert_eq!(client.links_established, 1, "repaired without reconnecting");
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn heartbeats_detect_a_silent_network_and_the_client_reconnects() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let (proxy, edge) = cloud.edge_through_proxy().await;
    // An idle link stays up across several heartbeat timeouts.
    tokio::time::sleep(fast_session().heartbeat_timeout * 3).await;
    assert_eq!(edge.client.stats().heartbeat_timeouts, 0);
    assert_eq!(edge.client.state(), ClientState::Connected);

    proxy.blackhole();
    let error = edge.failure().await;
    assert!(error.contains("heartbeat"), "{error}");
    wait_for("the hub to notice too", || {
        cloud.hub.stats().heartbeat_timeouts >= 1
    })
    .await;

    proxy.heal();
    edge.connected().await;
    edge.send(report("lamp", 7)).await;
    wait_for("a report after healing", || cloud.inbox.count() == 1).await;
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn a_blocked_handler_holds_the_sender_to_its_window() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let gate = Arc::new(Semaphore::new(0));
    let edge = Edge::start_with(
        cloud.client_config("edge-1", cloud.hub.local_addr()),
        Arc::new(Recorder::gated(Arc::clone(&gate))),
    );
    edge.connected().await;
    const N: usize = 500;
    cloud.send_desired("edge-1", "lamp", 0..N).await;
    let window = fast_session().window as u64;
    wait_for("the window to fill", || {
        cloud.hub.stats().messages_sent == window
    })
    .await;
    // Heartbeats keep flowing while the handler is stuck; the hub reads nothing more.
    tokio::time::sleep(fast_session().heartbeat_timeout * 2).await;
    let stats = cloud.hub.stats();
    assert_eq!(
        stats.messages_sent, window,
        "never more than the window in flight"
    );
    assert_eq!(
        stats.heartbeat_timeouts, 0,
        "a slow handler is not a dead link"
    );
    assert_eq!(edge.client.state(), ClientState::Connected);
    let waiting = cloud.store.depth(&node("edge-1")).await.expect("depth");
    assert_eq!(waiting, N, "the rest waits in sqlite, not in memory");

    gate.add_permits(N);
    wait_for("everything after release", || edge.inbox.count() == N).await;
    assert_eq!(edge.inbox.numbers(), (0..N as u64).collect::<Vec<u64>>());
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn nodes_only_see_and_report_their_own_devices() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let edge1 = Edge::start(cloud.client_config("edge-1", cloud.hub.local_addr()));
    let edge2 = Edge::start(cloud.client_config("edge-2", cloud.hub.local_addr()));
    edge1.connected().await;
    edge2.connected().await;

    // Outbound: the hub refuses to queue another node's device or node resource.
    for message in [desired("edge-1", "pump", 0), desired("edge-2", "pump", 0)] {
        let error = cloud
            .hub
            .send(&node("edge-1"), message)
            .await
            .expect_err("isolated");
        assert!(matches!(error, SendError::Isolation { .. }), "{error}");
    }
    cloud
        .hub
        .send(&node("edge-2"), desired("edge-2", "pump", 1))
        .await
        .expect("own device");
    wait_for("edge-2's desired", || edge2.inbox.count() == 1).await;
    assert_eq!(
        edge1.inbox.count(),
        0,
        "edge-1 received nothing of edge-2's"
    );

    // Inbound: edge-1 reporting for edge-2's pump is rejected, logged, counted, answered.
    let forged = report("pump", 99);
    let forged_id = forged.header.msg_id.clone();
    edge1.send(forged).await;
    edge1.send(report("lamp", 100)).await;
    wait_for("edge-1's own report", || cloud.inbox.count() == 1).await;
    let (applied_node, applied) = cloud.inbox.lock().applied[0].clone();
    assert_eq!(applied_node.as_str(), "edge-1");
    assert_eq!(
        applied.content["n"], 100,
        "the forged report never reached the application"
    );
    assert_eq!(cloud.hub.stats().isolation_rejections, 1);

    wait_for("the error reply", || edge1.inbox.count() == 1).await;
    let (_, reply) = edge1.inbox.lock().applied[0].clone();
    assert_eq!(
        reply.header.parent_msg_id.as_deref(),
        Some(forged_id.as_str())
    );
    assert_eq!(reply.route.operation.as_deref(), Some("error"));
    assert_eq!(reply.content["code"], 403);
    let reason = reply.content["reason"].as_str().expect("reason");
    assert!(reason.contains("not assigned to node edge-1"), "{reason}");

    for edge in [edge1, edge2] {
        edge.client.shutdown().await;
    }
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn messages_too_large_for_the_tunnel_are_refused_or_dropped_never_stuck() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let edge = Edge::start(cloud.client_config("edge-1", cloud.hub.local_addr()));
    edge.connected().await;
    let mut huge = desired("edge-1", "lamp", 0);
    huge.content = serde_json::json!({ "n": 0, "blob": "x".repeat(2 << 20) });
    let error = cloud
        .hub
        .send(&node("edge-1"), huge.clone())
        .await
        .expect_err("too large");
    assert!(matches!(error, SendError::TooLarge { .. }), "{error}");

    // An edge outbox that holds one anyway (another writer) drops it with an error and goes on.
    edge.send(report("lamp", 1)).await;
    huge.route.resource = Some("device/default/lamp/twin/edge_updated".into());
    edge.send(huge).await;
    edge.send(report("lamp", 2)).await;
    wait_for("the two others", || cloud.inbox.count() == 2).await;
    assert_eq!(cloud.inbox.numbers(), [1, 2]);
    assert_eq!(edge.client.stats().oversize_dropped, 1);
    wait_for("the outbox to drain past it", || edge.outbox.is_empty()).await;
    edge.client.shutdown().await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn a_new_connection_of_a_node_replaces_the_old_one() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let config = cloud.client_config("edge-1", cloud.hub.local_addr());
    let first = Edge::start(config.clone());
    first.connected().await;
    // Same node again (say, after a reboot the old TCP connection still lingers). The two
    // clients replace each other until the first one stops.
    let second = Edge::start(config);
    wait_for("the replacement", || cloud.hub.stats().links_replaced >= 1).await;
    first.client.shutdown().await;
    cloud.send_desired("edge-1", "lamp", 0..50).await;
    wait_for("delivery to the second client", || {
        second.inbox.count() == 50
    })
    .await;
    assert_eq!(second.inbox.numbers(), (0..50).collect::<Vec<u64>>());
    assert_eq!(first.inbox.count(), 0);
    assert!(cloud.hub.is_connected(&node("edge-1")));
    second.client.shutdown().await;
    wait_for("the hub to see the node leave", || {
        !cloud.hub.is_connected(&node("edge-1"))
    })
    .await;
    cloud.hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_resumes_from_its_sqlite_outbox() {
    let cloud = Cloud::start(CloudOptions::default()).await;
    let addr = cloud.hub.local_addr();
    let edge = Edge::start(cloud.client_config("edge-1", addr));
    edge.connected().await;
    cloud.send_desired("edge-1", "lamp", 0..10).await;
    wait_for("first batch", || edge.inbox.count() == 10).await;
    let Cloud {
        dir,
        ca,
        hub,
        store,
        tokens,
        inbox,
    } = cloud;
    hub.shutdown().await;
    // Queued while the hub is down: only in sqlite.
    for n in 10..20 {
        store
            .append(&node("edge-1"), &desired("edge-1", "lamp", n))
            .await
            .expect("append");
    }
    drop(store);
    let db = dir.path().join("cloud.db");
    let store = HubOutbox::open(&db, HubOutboxOptions::default()).expect("reopen");
    let server = ca.issue(&["localhost"]).expect("cert");
    let mut config = HubConfig::new(
        addr,
        Some(
            tls::server_config(&ServerTlsFiles {
                cert_chain: server.cert,
                key: server.key,
                client_ca: None,
            })
            .expect("tls"),
        ),
    );
    config.session = fast_session();
    let hub = Hub::start(
        config,
        HubParts {
            tokens,
            store,
            inbox,
            membership: Arc::new(membership()),
        },
    )
    .await
    .expect("restart on the same port");
    wait_for("the second batch", || edge.inbox.count() == 20).await;
    assert_eq!(edge.inbox.numbers(), (0..20).collect::<Vec<u64>>());
    edge.client.shutdown().await;
    hub.shutdown().await;
}
