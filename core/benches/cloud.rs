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

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgetwin_core::testsupport::pki::TestCa;
use edgetwin_core::tunnel::auth::TokenStore;
use edgetwin_core::tunnel::backoff::BackoffConfig;
use edgetwin_core::tunnel::client::{ClientState, HubClient, HubClientConfig, HubClientHandle};
use edgetwin_core::tunnel::inbox::{ApplyError, Delivery, Inbox};
use edgetwin_core::tunnel::isolation::Membership;
use edgetwin_core::tunnel::outbox::{MemoryOutbox, Outbox};
use edgetwin_core::tunnel::server::{Hub, HubConfig, HubParts};
use edgetwin_core::tunnel::store::{HubStore, HubStoreOptions};
use edgetwin_core::tunnel::tls::{self, ClientTlsFiles, ServerTlsFiles};
use edgetwin_core::tunnel::{NodeName, ResumePoint};
use edgetwin_core::wire::Envelope;
use edgetwin_core::wire::topic::DeviceId;
use futures::future::BoxFuture;
use tokio::io::AsyncBufReadExt;

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
    let plain = runtime.block_on(scenario(&args, args.nodes, false));
    let tls = (args.tls_nodes > 0).then(|| runtime.block_on(scenario(&args, args.tls_nodes, true)));
    println!();
    println!(
        "| transport | nodes connected | hub RSS / connection | fan-out p50 | fan-out p99 | fan-out all | reports absorbed |"
    );
    println!("|---|---|---|---|---|---|---|");
    for result in std::iter::once(plain).chain(tls) {
        println!("{}", result.row());
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

/// CPU time (user + system, ms) of this process and of its `hub-store` thread.
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
                .is_ok_and(|comm| comm.trim() == "hub-store")
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

/// `hub DIR NODES tls|plain`: serves until stdin closes; answers one line per command.
fn hub_main(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let nodes: usize = args[1].parse().expect("node count");
    let use_tls = args[2] == "tls";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
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
                store: HubStore::open(&db, HubStoreOptions::default()).expect("store"),
                inbox: inbox.clone(),
                membership: Arc::new(Everyone),
            },
        )
        .await
        .expect("hub");
        let names: Vec<NodeName> = (0..nodes).map(node_name).collect();
        println!("READY {}", hub.local_addr().port());
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = match line.as_str() {
                "rss" => format!("{}", vm_rss_kib("self")),
                "links" => format!("{}", hub.stats().links_up),
                "applied" => format!("{}", inbox.applied.load(Ordering::Relaxed)),
                "fanout" => {
                    let start = now_nanos();
                    let sends = names.iter().map(|node| {
                        let mut message = Envelope::default();
                        message.header.msg_id = uuid::Uuid::new_v4().to_string();
                        message.route.resource =
                            Some(format!("node/{node}/device/default/d/twin/cloud_updated"));
                        message.content = serde_json::json!({ "sent_ns": start });
                        hub.send(node, message)
                    });
                    let results = futures::future::join_all(sends).await;
                    let failed = results.iter().filter(|r| r.is_err()).count();
                    format!("{} {failed}", (now_nanos() - start) / 1_000)
                }
                "stats" => format!("{:?}", hub.stats()),
                "cpu" => {
                    let (process, store) = cpu_ms();
                    format!("{process} {store}")
                }
                other => format!("unknown command {other}"),
            };
            println!("{reply}");
        }
        hub.shutdown().await;
    });
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
    fn spawn(dir: &Path, nodes: usize, tls: bool) -> HubProcess {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .arg("hub")
            .arg(dir)
            .arg(nodes.to_string())
            .arg(if tls { "tls" } else { "plain" })
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
        if let Some(sent) = delivery.message.content["sent_ns"].as_u64() {
            let latency = now_nanos().saturating_sub(sent);
            self.latencies.lock().expect("lock").push(latency);
        }
        *self.resume.lock().expect("lock") = Some(delivery.resume_point());
        Box::pin(async { Ok(()) })
    }
}

struct Edge {
    client: HubClientHandle,
    outbox: Arc<MemoryOutbox>,
}

struct ScenarioResult {
    tls: bool,
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
            if self.tls {
                "wss (TLS 1.3)"
            } else {
                "ws (--insecure)"
            },
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

async fn scenario(args: &Args, nodes: usize, use_tls: bool) -> ScenarioResult {
    let label = if use_tls { "wss" } else { "ws" };
    eprintln!("== {label}: {nodes} nodes (fd limit {})", fd_limit());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "bench").expect("ca");
    ca.issue(&["localhost"]).expect("server cert");
    let client_tls = use_tls.then(|| {
        tls::client_config(&ClientTlsFiles {
            ca: ca.ca_file().to_owned(),
            client_cert: None,
        })
        .expect("client tls")
    });
    let tokens = TokenStore::open(&dir.path().join("cloud.db"))
        .expect("tokens")
        .create_many(&(0..nodes).map(node_name).collect::<Vec<_>>())
        .expect("tokens");
    let process = HubProcess::spawn(dir.path(), nodes, use_tls);
    let port = process.port;
    let hub = HubHandle(Arc::new(Mutex::new(process)));
    let rss_before = hub.ask_number("rss").await;

    let latencies = Arc::new(Mutex::new(Vec::with_capacity(nodes)));
    let started = Instant::now();
    let mut edges = Vec::with_capacity(nodes);
    for (i, token) in tokens.iter().enumerate() {
        let scheme = if use_tls { "wss" } else { "ws" };
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
            latencies: Arc::clone(&latencies),
            resume: Mutex::new(None),
        });
        let client = HubClient::start(config, outbox.clone(), inbox).expect("client");
        edges.push(Edge { client, outbox });
        // Ramp up in steps so the listen backlog never overflows.
        if edges.len() % 500 == 0 {
            wait_connected(&edges[edges.len() - 500..]).await;
            eprintln!("   {} connected", edges.len());
        }
    }
    wait_connected(&edges).await;
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
            let mut message = Envelope::default();
            message.header.msg_id = uuid::Uuid::new_v4().to_string();
            message.route.resource = Some("device/default/d/twin/edge_updated".into());
            message.content = serde_json::json!({ "node": n, "k": k });
            edge.outbox.append(message).await.expect("append");
        }
        edge.client.outbox_changed();
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

    futures::future::join_all(edges.into_iter().map(|edge| edge.client.shutdown())).await;
    match Arc::try_unwrap(hub.0) {
        Ok(process) => process.into_inner().expect("lock").stop(),
        Err(_) => eprintln!("hub process still shared; left to exit with this process"),
    }
    ScenarioResult {
        tls: use_tls,
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

async fn wait_connected(edges: &[Edge]) {
    for edge in edges {
        let mut state = edge.client.watch_state();
        let connected = tokio::time::timeout(
            Duration::from_secs(120),
            state.wait_for(|s| *s == ClientState::Connected),
        )
        .await;
        assert!(
            matches!(connected, Ok(Ok(_))),
            "a client did not connect: {:?}",
            edge.client.state()
        );
    }
}
