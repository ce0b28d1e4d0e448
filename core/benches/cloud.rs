//! Connection-scale benchmark of the tunnel hub: `cargo xtask bench cloud [--nodes N]
//! [--tls-nodes M] [--reports K] [--rounds R]`.
//!
//! This process is the load generator: it starts the hub as a child process (this binary, role
//! `hub`), then opens N real WebSocket edge connections with `HubClient` (each authenticated by
//! its own token) and measures, through a line protocol on the child's stdin/stdout:
//! - connected count and hub RSS per connection (VmRSS after connecting minus before, / N);
//! - fan-out latency: the hub queues one message for every node (sqlite outbox, one `Hub::send`
//!   per node); latency = time from the start of the fan-out until each client applied it;
//! - reports absorbed: every client queues K reports at once; messages per second until the hub
//!   applied all of them.
//!
//! Plain `ws://` (`--insecure`) for the big run, TLS for the smaller one. The hub drives its API
//! directly (no device controller yet); its application only counts, so the figures measure the
//! transport: TLS, WebSocket, auth, the sqlite outboxes, the reliability protocol.
//!
//! Baseline, measured in the same run at the same node counts: bare WebSocket connections
//! (tokio-tungstenite on plain TCP, no auth, no protocol, no persistence; the server counts text
//! frames and writes the fan-out frame straight to each socket). The tunnel rows are reported as
//! ratios against it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgetwin_core::tunnel::auth::TokenStore;
use edgetwin_core::tunnel::backoff::BackoffConfig;
use edgetwin_core::tunnel::client::{ClientState, HubClient, HubClientConfig, HubClientHandle};
use edgetwin_core::tunnel::hub_outbox::{HubOutbox, HubOutboxOptions};
use edgetwin_core::tunnel::inbox::{ApplyError, Delivery, Inbox};
use edgetwin_core::tunnel::isolation::Membership;
use edgetwin_core::tunnel::outbox::{MemoryOutbox, Outbox};
use edgetwin_core::tunnel::server::{Hub, HubConfig, HubParts};
use edgetwin_core::tunnel::tls::{self, ClientTlsFiles, ServerTlsFiles};
use edgetwin_core::tunnel::{NodeName, ResumePoint};
use edgetwin_model::wire::Envelope;
use edgetwin_model::wire::topic::DeviceId;
use edgetwin_testkit::pki::TestCa;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Clone)]
struct Args {
    nodes: usize,
    tls_nodes: usize,
    reports: usize,
    rounds: usize,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        nodes: 10_000,
        tls_nodes: 1_000,
        reports: 10,
        rounds: 3,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            iter.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--nodes" => parsed.nodes = value("--nodes")?,
            "--tls-nodes" => parsed.tls_nodes = value("--tls-nodes")?,
            "--reports" => parsed.reports = value("--reports")?,
            "--rounds" => parsed.rounds = value("--rounds")?,
            // Passed by `cargo bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

fn main() {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hub") {
        hub_main(&args[1..]);
        return;
    }
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(error) => {
            eprintln!(
                "{error}\nusage: cloud [--nodes N] [--tls-nodes M] [--reports K] [--rounds R]"
            );
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut pairs = Vec::new();
    for (nodes, transport) in [
        (args.nodes, Transport::Ws),
        (args.tls_nodes, Transport::Wss),
    ] {
        if nodes == 0 {
            continue;
        }
        let baseline = runtime.block_on(scenario(&args, nodes, Transport::Bare));
        let tunnel = runtime.block_on(scenario(&args, nodes, transport));
        pairs.push((baseline, tunnel));
    }
    println!();
    println!(
        "| transport | nodes connected | hub RSS / connection | fan-out p50 | fan-out p99 | fan-out all | reports absorbed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (baseline, tunnel) in &pairs {
        println!("{}", baseline.row());
        println!("{}", tunnel.row());
    }
    println!();
    println!("Tunnel ÷ bare WebSocket baseline at the same node count:");
    println!();
    println!(
        "| transport | nodes | RSS / connection | fan-out p50 | fan-out p99 | reports absorbed |"
    );
    println!("|---|---|---|---|---|---|");
    for (baseline, tunnel) in &pairs {
        println!("{}", tunnel.ratio_row(baseline));
    }
}

/// What the edges speak to the server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// The baseline: bare WebSocket frames, no auth, no protocol, no persistence.
    Bare,
    /// The tunnel over plain `ws://` (`--insecure`).
    Ws,
    /// The tunnel over TLS.
    Wss,
}

impl Transport {
    fn arg(self) -> &'static str {
        match self {
            Transport::Bare => "bare",
            Transport::Ws => "plain",
            Transport::Wss => "tls",
        }
    }

    fn from_arg(arg: &str) -> Option<Transport> {
        [Transport::Bare, Transport::Ws, Transport::Wss]
            .into_iter()
            .find(|t| t.arg() == arg)
    }

    fn label(self) -> &'static str {
        match self {
            Transport::Bare => "bare ws (baseline)",
            Transport::Ws => "tunnel ws (--insecure)",
            Transport::Wss => "tunnel wss (TLS 1.3)",
        }
    }
}

/// Raises the soft open-files limit to the hard one (one fd per connection).
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Err(error) = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    ) {
        eprintln!("cannot raise RLIMIT_NOFILE: {error}");
    }
}

fn fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn node_name(i: usize) -> NodeName {
    NodeName::new(&format!("node-{i:05}")).expect("node name")
}

// ---------------------------------------------------------------------------------------------
// The hub process.

/// Counts applications; keeps resume points in memory.
#[derive(Default)]
struct CountingInbox {
    applied: AtomicU64,
    resume: Mutex<HashMap<NodeName, ResumePoint>>,
}

impl Inbox for CountingInbox {
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        let point = self.resume.lock().expect("lock").get(node).copied();
        Box::pin(async move { Ok(point) })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        self.resume
            .lock()
            .expect("lock")
            .insert(delivery.node.clone(), delivery.resume_point());
        self.applied.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

struct Everyone;

impl Membership for Everyone {
    fn is_assigned(&self, _: &NodeName, _: &DeviceId) -> bool {
        true
    }
}

/// CPU time (user + system, ms) of this process and of its `hub-outbox` thread.
fn cpu_ms() -> (u64, u64) {
    fn ticks(stat: &str) -> u64 {
        // Fields after the command name (which may contain spaces): utime is the 12th, stime
        // the 13th.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        get(11) + get(12)
    }
    // Linux reports in clock ticks of 1/100 s.
    let process = ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()) * 10;
    let store = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "hub-outbox")
        })
        .map(|task| {
            ticks(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default()) * 10
        })
        .unwrap_or(0);
    (process, store)
}

fn vm_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `hub DIR NODES bare|plain|tls`: serves until stdin closes; answers one line per command.
fn hub_main(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let nodes: usize = args[1].parse().expect("node count");
    let transport = Transport::from_arg(&args[2]).expect("transport");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        if transport == Transport::Bare {
            let (server, port) = BareServer::start().await;
            serve_commands(&server, port).await;
        } else {
            let (server, port) = TunnelServer::start(&dir, nodes, transport).await;
            serve_commands(&server, port).await;
            server.hub.shutdown().await;
        }
    });
}

/// What the command loop asks of the server under test.
trait BenchServer: Sync {
    /// Connected edges.
    fn links(&self) -> u64;
    /// Messages from edges applied (tunnel) or counted (bare).
    fn applied(&self) -> u64;
    /// Sends `{"sent_ns": start}` to every node; returns how many sends failed.
    fn fan_out(&self, start: u64) -> BoxFuture<'_, usize>;
    /// Counters, for the log.
    fn stats(&self) -> String;
}

/// Prints `READY port`, then answers one line per command read from stdin until it closes.
async fn serve_commands(server: &dyn BenchServer, port: u16) {
    println!("READY {port}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match line.as_str() {
            "rss" => format!("{}", vm_rss_kib("self")),
            "links" => format!("{}", server.links()),
            "applied" => format!("{}", server.applied()),
            "fanout" => {
                let start = now_nanos();
                let failed = server.fan_out(start).await;
                format!("{} {failed}", (now_nanos() - start) / 1_000)
            }
            "stats" => server.stats(),
            "cpu" => {
                let (process, store) = cpu_ms();
                format!("{process} {store}")
            }
            other => format!("unknown command {other}"),
        };
        println!("{reply}");
    }
}

/// The tunnel hub with the real token store and sqlite outboxes; its application only counts.
struct TunnelServer {
    hub: Hub,
    inbox: Arc<CountingInbox>,
    names: Vec<NodeName>,
}

impl TunnelServer {
    async fn start(dir: &Path, nodes: usize, transport: Transport) -> (TunnelServer, u16) {
        let use_tls = transport == Transport::Wss;
        let db = dir.join("cloud.db");
        let tls = use_tls.then(|| {
            tls::server_config(&ServerTlsFiles {
                cert_chain: dir.join("localhost.pem"),
                key: dir.join("localhost-key.pem"),
                client_ca: None,
            })
            .expect("tls")
        });
        let mut config = HubConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), tls);
        config.insecure = !use_tls;
        config.handshake_timeout = Duration::from_secs(60);
        let inbox = Arc::new(CountingInbox::default());
        let hub = Hub::start(
            config,
            HubParts {
                tokens: Arc::new(TokenStore::open(&db).expect("tokens")),
                store: HubOutbox::open(&db, HubOutboxOptions::default()).expect("store"),
                inbox: inbox.clone(),
                membership: Arc::new(Everyone),
            },
        )
        .await
        .expect("hub");
        let port = hub.local_addr().port();
        let names = (0..nodes).map(node_name).collect();
        (TunnelServer { hub, inbox, names }, port)
    }
}

impl BenchServer for TunnelServer {
    fn links(&self) -> u64 {
        self.hub.stats().links_up
    }

    fn applied(&self) -> u64 {
        self.inbox.applied.load(Ordering::Relaxed)
    }

    fn fan_out(&self, start: u64) -> BoxFuture<'_, usize> {
        let sends = self.names.iter().map(move |node| {
            let mut message = Envelope::default();
            message.header.msg_id = uuid::Uuid::new_v4().to_string();
            message.route.resource =
                Some(format!("node/{node}/device/default/d/twin/cloud_updated"));
            message.content = serde_json::json!({ "sent_ns": start });
            self.hub.send(node, message)
        });
        Box::pin(async move {
            let results = futures::future::join_all(sends).await;
            results.iter().filter(|r| r.is_err()).count()
        })
    }

    fn stats(&self) -> String {
        format!("{:?}", self.hub.stats())
    }
}

/// The baseline: accepts bare WebSocket connections, counts the text frames they send and writes
/// the fan-out frame to each of them.
struct BareServer {
    links: Arc<Mutex<Vec<mpsc::Sender<Arc<str>>>>>,
    applied: Arc<AtomicU64>,
}

impl BareServer {
    async fn start() -> (BareServer, u16) {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = BareServer {
            links: Arc::default(),
            applied: Arc::default(),
        };
        let links = Arc::clone(&server.links);
        let applied = Arc::clone(&server.applied);
        tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(error) => {
                        eprintln!("bare accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let links = Arc::clone(&links);
                let applied = Arc::clone(&applied);
                tokio::spawn(async move {
                    let accepted =
                        tokio_tungstenite::accept_async_with_config(tcp, Some(bare_ws_config()));
                    let Ok(socket) = accepted.await else {
                        return;
                    };
                    let (frames, mut fan_out) = mpsc::channel::<Arc<str>>(4);
                    links.lock().expect("lock").push(frames);
                    let (mut sink, mut stream) = socket.split();
                    loop {
                        tokio::select! {
                            text = fan_out.recv() => match text {
                                Some(text) => {
                                    if sink.send(Message::text(&*text)).await.is_err() {
                                        break;
                                    }
                                }
                                None => break,
                            },
                            frame = stream.next() => match frame {
                                Some(Ok(Message::Text(_))) => {
                                    applied.fetch_add(1, Ordering::Relaxed);
                                }
                                Some(Ok(_)) => {}
                                Some(Err(_)) | None => break,
                            },
                        }
                    }
                });
            }
        });
        (server, port)
    }
}

/// The tunnel's WebSocket buffer sizes (`tunnel::connection::ws_config`), so that the baseline
/// differs from the tunnel only in what runs over the socket.
fn bare_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
}

impl BenchServer for BareServer {
    fn links(&self) -> u64 {
        self.links.lock().expect("lock").len() as u64
    }

    fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    fn fan_out(&self, start: u64) -> BoxFuture<'_, usize> {
        let links = self.links.lock().expect("lock").clone();
        let text: Arc<str> = serde_json::json!({ "sent_ns": start }).to_string().into();
        Box::pin(async move {
            let sends = links.iter().map(|link| link.send(Arc::clone(&text)));
            let results = futures::future::join_all(sends).await;
            results.iter().filter(|r| r.is_err()).count()
        })
    }

    fn stats(&self) -> String {
        format!(
            "bare WebSocket: {} links, {} frames counted",
            self.links(),
            self.applied()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator.

struct HubProcess {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    port: u16,
}

impl HubProcess {
    fn spawn(dir: &Path, nodes: usize, transport: Transport) -> HubProcess {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .arg("hub")
            .arg(dir)
            .arg(nodes.to_string())
            .arg(transport.arg())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn hub");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("hub output").expect("read");
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .expect("READY line");
        HubProcess {
            child,
            stdin,
            lines,
            port,
        }
    }

    fn ask_blocking(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write command");
        self.lines.next().expect("hub reply").expect("read reply")
    }

    fn stop(self) {
        drop(self.stdin);
        let mut child = self.child;
        let _ = child.wait();
    }
}

/// The hub process, asked from async code without blocking the load generator's workers.
#[derive(Clone)]
struct HubHandle(Arc<Mutex<HubProcess>>);

impl HubHandle {
    async fn ask(&self, command: &'static str) -> String {
        let hub = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || hub.lock().expect("lock").ask_blocking(command))
            .await
            .expect("ask")
    }

    async fn ask_number(&self, command: &'static str) -> u64 {
        self.ask(command).await.parse().expect("number")
    }
}

/// Records fan-out latencies at the edge.
struct EdgeInbox {
    latencies: Arc<Mutex<Vec<u64>>>,
    resume: Mutex<Option<ResumePoint>>,
}

impl Inbox for EdgeInbox {
    fn resume_point<'a>(
        &'a self,
        _: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        let point = *self.resume.lock().expect("lock");
        Box::pin(async move { Ok(point) })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        record_latency(&delivery.message.content, &self.latencies);
        *self.resume.lock().expect("lock") = Some(delivery.resume_point());
        Box::pin(async { Ok(()) })
    }
}

/// Records the time since a fan-out message's `sent_ns`.
fn record_latency(content: &serde_json::Value, latencies: &Mutex<Vec<u64>>) {
    if let Some(sent) = content["sent_ns"].as_u64() {
        let latency = now_nanos().saturating_sub(sent);
        latencies.lock().expect("lock").push(latency);
    }
}

/// One simulated edge node.
enum Edge {
    /// The edge's own `HubClient`.
    Tunnel {
        client: HubClientHandle,
        outbox: Arc<MemoryOutbox>,
    },
    /// A bare WebSocket connection (the baseline): reports go out as text frames.
    Bare {
        reports: mpsc::Sender<String>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Edge {
    /// Opens a bare WebSocket connection whose fan-out frames are recorded in `latencies`.
    async fn connect_bare(port: u16, reports: usize, latencies: Arc<Mutex<Vec<u64>>>) -> Edge {
        let url = format!("ws://127.0.0.1:{port}/");
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(bare_ws_config()), false)
                .await
                .expect("bare connect");
        let (outgoing, mut queued) = mpsc::channel::<String>(reports.max(1));
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            loop {
                tokio::select! {
                    report = queued.recv() => match report {
                        Some(text) => {
                            if sink.send(Message::text(text)).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = sink.close().await;
                            break;
                        }
                    },
                    frame = stream.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let content = serde_json::from_str(&text).unwrap_or_default();
                            record_latency(&content, &latencies);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
        });
        Edge::Bare {
            reports: outgoing,
            task,
        }
    }

    /// Queues one report with this content.
    async fn report(&self, content: serde_json::Value) {
        match self {
            Edge::Tunnel { outbox, .. } => {
                let mut message = Envelope::default();
                message.header.msg_id = uuid::Uuid::new_v4().to_string();
                message.route.resource = Some("device/default/d/twin/edge_updated".into());
                message.content = content;
                outbox.append(message).await.expect("append");
            }
            Edge::Bare { reports, .. } => {
                reports.send(content.to_string()).await.expect("report");
            }
        }
    }

    /// Tells the link that reports are queued.
    fn reports_queued(&self) {
        if let Edge::Tunnel { client, .. } = self {
            client.outbox_changed();
        }
    }

    async fn shutdown(self) {
        match self {
            Edge::Tunnel { client, .. } => client.shutdown().await,
            Edge::Bare { reports, task } => {
                drop(reports);
                let _ = task.await;
            }
        }
    }
}

struct ScenarioResult {
    transport: Transport,
    nodes: usize,
    connected: u64,
    connect_time: Duration,
    rss_per_connection_kib: f64,
    fanout_p50: Duration,
    fanout_p99: Duration,
    fanout_all: Duration,
    reports_per_sec: f64,
    reports: usize,
}

impl ScenarioResult {
    fn row(&self) -> String {
        format!(
            "| {} | {} of {} (in {:.1} s) | {:.1} KiB | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} msg/s ({} msgs) |",
            self.transport.label(),
            self.connected,
            self.nodes,
            self.connect_time.as_secs_f64(),
            self.rss_per_connection_kib,
            ms(self.fanout_p50),
            ms(self.fanout_p99),
            ms(self.fanout_all),
            self.reports_per_sec,
            self.reports,
        )
    }
}

impl ScenarioResult {
    /// This run's figures divided by the baseline's.
    fn ratio_row(&self, baseline: &ScenarioResult) -> String {
        let ratio = |ours: f64, theirs: f64| {
            if theirs > 0.0 {
                format!("{:.1}×", ours / theirs)
            } else {
                "n/a".to_string()
            }
        };
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.transport.label(),
            self.nodes,
            ratio(self.rss_per_connection_kib, baseline.rss_per_connection_kib),
            ratio(ms(self.fanout_p50), ms(baseline.fanout_p50)),
            ratio(ms(self.fanout_p99), ms(baseline.fanout_p99)),
            ratio(self.reports_per_sec, baseline.reports_per_sec),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_nanos(sorted[index])
}

async fn scenario(args: &Args, nodes: usize, transport: Transport) -> ScenarioResult {
    eprintln!(
        "== {}: {nodes} nodes (fd limit {})",
        transport.label(),
        fd_limit()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "bench").expect("ca");
    ca.issue(&["localhost"]).expect("server cert");
    let process = HubProcess::spawn(dir.path(), nodes, transport);
    let port = process.port;
    let hub = HubHandle(Arc::new(Mutex::new(process)));
    let rss_before = hub.ask_number("rss").await;

    let latencies = Arc::new(Mutex::new(Vec::with_capacity(nodes)));
    let started = Instant::now();
    let edges = match transport {
        Transport::Bare => {
            let mut edges = Vec::with_capacity(nodes);
            for _ in 0..nodes {
                edges.push(Edge::connect_bare(port, args.reports, Arc::clone(&latencies)).await);
            }
            edges
        }
        Transport::Ws | Transport::Wss => {
            connect_tunnel_edges(args, nodes, transport, dir.path(), &ca, port, &latencies).await
        }
    };
    // A client counts its link up when the hub's hello arrives; the hub when the client's does.
    let mut connected = 0;
    for _ in 0..600 {
        connected = hub.ask_number("links").await;
        if connected == nodes as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_time = started.elapsed();
    // Let allocations settle (acks, hellos) before reading RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = hub.ask_number("rss").await;
    let rss_per_connection_kib = (rss_after.saturating_sub(rss_before)) as f64 / nodes as f64;
    eprintln!(
        "   {connected} links up in {connect_time:.1?}; hub RSS {rss_before} -> {rss_after} KiB"
    );

    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        latencies.lock().expect("lock").clear();
        let cpu_before = hub.ask("cpu").await;
        let load_before = cpu_ms().0;
        let started = Instant::now();
        let reply = hub.ask("fanout").await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while latencies.lock().expect("lock").len() < nodes {
            assert!(
                Instant::now() < deadline,
                "fan-out {round} did not complete: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cpu_after = hub.ask("cpu").await;
        let load_cpu = cpu_ms().0 - load_before;
        eprintln!(
            "   CPU ms: hub (process, store thread) {cpu_before} -> {cpu_after}; load generator +{load_cpu}"
        );
        let mut sorted = latencies.lock().expect("lock").clone();
        sorted.sort_unstable();
        let p50 = percentile(&sorted, 0.50);
        let p99 = percentile(&sorted, 0.99);
        let all = percentile(&sorted, 1.0);
        eprintln!(
            "   fan-out {round}: queued in {} µs ({reply}); p50 {p50:.1?} p99 {p99:.1?} max {all:.1?} (round trip seen here {:.1?})",
            reply.split(' ').next().unwrap_or("?"),
            started.elapsed()
        );
        rounds.push((p50, p99, all));
    }
    // The median round.
    rounds.sort_by_key(|r| r.1);
    let (fanout_p50, fanout_p99, fanout_all) = rounds[rounds.len() / 2];

    let before = hub.ask_number("applied").await;
    let total = nodes * args.reports;
    let started = Instant::now();
    for (n, edge) in edges.iter().enumerate() {
        for k in 0..args.reports {
            edge.report(serde_json::json!({ "node": n, "k": k })).await;
        }
        edge.reports_queued();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while hub.ask_number("applied").await - before < total as u64 {
        assert!(Instant::now() < deadline, "reports did not all arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let reports_per_sec = total as f64 / elapsed.as_secs_f64();
    eprintln!("   {total} reports absorbed in {elapsed:.2?}");
    eprintln!("   hub {}", hub.ask("stats").await);

    futures::future::join_all(edges.into_iter().map(Edge::shutdown)).await;
    match Arc::try_unwrap(hub.0) {
        Ok(process) => process.into_inner().expect("lock").stop(),
        Err(_) => eprintln!("hub process still shared; left to exit with this process"),
    }
    ScenarioResult {
        transport,
        nodes,
        connected,
        connect_time,
        rss_per_connection_kib,
        fanout_p50,
        fanout_p99,
        fanout_all,
        reports_per_sec,
        reports: total,
    }
}

/// Starts one `HubClient` per node (each with its own token) and waits until all are connected.
async fn connect_tunnel_edges(
    args: &Args,
    nodes: usize,
    transport: Transport,
    dir: &Path,
    ca: &TestCa,
    port: u16,
    latencies: &Arc<Mutex<Vec<u64>>>,
) -> Vec<Edge> {
    let use_tls = transport == Transport::Wss;
    let client_tls = use_tls.then(|| {
        tls::client_config(&ClientTlsFiles {
            ca: ca.ca_file().to_owned(),
            client_cert: None,
        })
        .expect("client tls")
    });
    let tokens = TokenStore::open(&dir.join("cloud.db"))
        .expect("tokens")
        .create_many(&(0..nodes).map(node_name).collect::<Vec<_>>())
        .expect("tokens");
    let scheme = if use_tls { "wss" } else { "ws" };
    let mut edges = Vec::with_capacity(nodes);
    for (i, token) in tokens.iter().enumerate() {
        let mut config = HubClientConfig::new(
            format!("{scheme}://localhost:{port}"),
            node_name(i),
            Some(token.expose().to_owned()),
            client_tls.clone(),
        );
        config.insecure = !use_tls;
        config.connect_timeout = Duration::from_secs(60);
        config.backoff = BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        };
        let outbox = Arc::new(MemoryOutbox::new(args.reports.max(1)));
        let inbox = Arc::new(EdgeInbox {
            latencies: Arc::clone(latencies),
            resume: Mutex::new(None),
        });
        let client = HubClient::start(config, outbox.clone(), inbox).expect("client");
        edges.push(Edge::Tunnel { client, outbox });
        // Ramp up in steps so the listen backlog never overflows.
        if edges.len() % 500 == 0 {
            wait_connected(&edges[edges.len() - 500..]).await;
            eprintln!("   {} connected", edges.len());
        }
    }
    wait_connected(&edges).await;
    edges
}

async fn wait_connected(edges: &[Edge]) {
    for edge in edges {
        let Edge::Tunnel { client, .. } = edge else {
            continue;
        };
        let mut state = client.watch_state();
        let connected = tokio::time::timeout(
            Duration::from_secs(120),
            state.wait_for(|s| *s == ClientState::Connected),
        )
        .await;
        assert!(
            matches!(connected, Ok(Ok(_))),
            "a client did not connect: {:?}",
            client.state()
        );
    }
}
