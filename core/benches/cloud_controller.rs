//! The cloud through the real binary: `cargo xtask bench cloud-controller [--nodes N]
//! [--reports K]`.
//!
//! This process is the load generator. It creates N node tokens and N Devices (one per node) in a
//! temp data directory, starts `edgetwin cloud` (embedded registry, device controller, hub) as a
//! child process, and opens N real WebSocket edge connections (`HubClient`, in-memory outboxes).
//! It measures:
//! - RSS of the cloud process per connected node (VmRSS after connecting minus before, / N);
//! - desired fan-out latency: one desired change per device through the registry's HTTP API;
//!   per node, the time from its PATCH until its client applied the membership update carrying
//!   the new value (p50, p99, max);
//! - reported messages absorbed: every client queues K reported values at once; messages per
//!   second until the controller counted all of them (`/metrics`), and the status writes the
//!   coalescing turned them into.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgetwin_core::cloud::registry::Kind;
use edgetwin_core::cloud::registry::embedded::client::RegistryClient;
use edgetwin_core::cloud::registry::embedded::data_dir::DataDir;
use edgetwin_core::cloud::registry::embedded::{ApplyMode, EmbeddedRegistry};
use edgetwin_core::tunnel::auth::TokenStore;
use edgetwin_core::tunnel::backoff::BackoffConfig;
use edgetwin_core::tunnel::client::{ClientState, HubClient, HubClientConfig, HubClientHandle};
use edgetwin_core::tunnel::inbox::{ApplyError, Delivery, Inbox};
use edgetwin_core::tunnel::outbox::{MemoryOutbox, Outbox};
use edgetwin_core::tunnel::{NodeName, ResumePoint};
use edgetwin_model::devices::{Device, DeviceModel, Manifest};
use edgetwin_model::wire::cloud_edge::{self, DeviceRef, EDGE_SOURCE, TwinContent};
use edgetwin_model::wire::payload::{MsgTwin, TwinValue};
use futures::future::BoxFuture;

struct Args {
    nodes: usize,
    reports: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 1_000,
        reports: 10,
    };
    let mut iter = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(arg) = iter.next() {
        let value = iter
            .next()
            .ok_or_else(|| format!("{arg} needs a value"))?
            .parse::<usize>()
            .map_err(|e| format!("{arg}: {e}"))?;
        match arg.as_str() {
            "--nodes" => args.nodes = value.max(1),
            "--reports" => args.reports = value.max(1),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error}\nusage: cloud_controller [--nodes N] [--reports K]");
            std::process::exit(2);
        }
    };
    if let Err(error) = raise_fd_limit() {
        eprintln!("warning: {error}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

/// Each connection is a socket on both ends.
fn raise_fd_limit() -> Result<(), String> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let wanted = limit.maximum.unwrap_or(1 << 20);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(wanted),
            maximum: limit.maximum,
        },
    )
    .map_err(|e| format!("cannot raise the open-file limit: {e}"))
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

fn device_name(i: usize) -> String {
    format!("lamp-{i:05}")
}

/// Per node: when its desired change was sent and when its client applied it.
#[derive(Default)]
struct Clock {
    sent: HashMap<String, Instant>,
    received: HashMap<String, Instant>,
}

/// Records when a membership update carrying `power=on` reaches a node.
struct TimingInbox {
    clock: Arc<Mutex<Clock>>,
}

impl Inbox for TimingInbox {
    fn resume_point<'a>(
        &'a self,
        _node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        Box::pin(async { Ok(None) })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        let now = Instant::now();
        if let Ok(content) = cloud_edge::parse_membership(&delivery.message) {
            let on = content.devices.iter().any(|d| {
                d.property("power")
                    .and_then(|p| p.desired.as_ref())
                    .is_some_and(|v| v.value == "on")
            });
            if on {
                let mut clock = self.clock.lock().expect("clock");
                clock
                    .received
                    .entry(delivery.node.as_str().to_owned())
                    .or_insert(now);
            }
        }
        Box::pin(async { Ok(()) })
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One counter from the cloud's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn seed(dir: &Path, nodes: usize) -> Vec<String> {
    let data = DataDir::new(dir);
    data.create().expect("data dir");
    let registry = EmbeddedRegistry::open(&data.registry_db()).expect("registry");
    let model: DeviceModel = serde_json::from_value(serde_json::json!({
        "apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel",
        "metadata": {"name": "lamp", "namespace": "default"},
        "spec": {"properties": [{"name": "power", "type": "STRING", "accessMode": "ReadWrite"}]}
    }))
    .expect("model");
    registry
        .apply_manifest(Manifest::DeviceModel(model), ApplyMode::CreateOrReplace)
        .await
        .expect("model applied");
    for i in 0..nodes {
        let device: Device = serde_json::from_value(serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": device_name(i), "namespace": "default"},
            "spec": {"deviceModelRef": {"name": "lamp"}, "nodeName": node_name(i),
                     "properties": [{"name": "power", "desired": {"value": "off"}}]}
        }))
        .expect("device");
        registry
            .apply_manifest(Manifest::Device(device), ApplyMode::CreateOrReplace)
            .await
            .expect("device applied");
    }
    let tokens = TokenStore::open(&dir.join("cloud.db")).expect("token store");
    let names: Vec<NodeName> = (0..nodes)
        .map(|i| NodeName::new(&node_name(i)).expect("node name"))
        .collect();
    tokens
        .create_many(&names)
        .expect("tokens")
        .into_iter()
        .map(|t| t.expose().to_owned())
        .collect()
}

fn start_cloud(dir: &Path, tunnel: SocketAddr, metrics: SocketAddr) -> Child {
    let config = dir.join("cloud.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {tunnel}\ninsecure: true\ndataDir: {}\nregistry:\n  embedded:\n    apiListen: 127.0.0.1:0\nstatusIntervalMs: 1000\nmetricsListen: {metrics}\n",
            dir.display()
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(["cloud", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("edgetwin cloud starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(tunnel).is_err() || !dir.join("registry.url").exists() {
        assert!(Instant::now() < deadline, "edgetwin cloud did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

async fn run(args: Args) {
    let n = args.nodes;
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let tokens = seed(dir.path(), n).await;
    println!("seeded {n} devices and tokens in {:?}", started.elapsed());

    let tunnel = free_addr();
    let metrics_addr = free_addr();
    let mut cloud = start_cloud(dir.path(), tunnel, metrics_addr);
    let pid = cloud.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);

    let clock = Arc::new(Mutex::new(Clock::default()));
    let mut clients: Vec<(HubClientHandle, Arc<MemoryOutbox>)> = Vec::with_capacity(n);
    let connect_start = Instant::now();
    for (i, token) in tokens.iter().enumerate() {
        let node = NodeName::new(&node_name(i)).expect("node");
        let mut config =
            HubClientConfig::new(format!("ws://{tunnel}"), node, Some(token.clone()), None);
        config.insecure = true;
        config.backoff = BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        };
        let outbox = Arc::new(MemoryOutbox::new(args.reports * 2 + 16));
        let inbox = Arc::new(TimingInbox {
            clock: Arc::clone(&clock),
        });
        let handle = HubClient::start(config, outbox.clone(), inbox).expect("client");
        clients.push((handle, outbox));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let up = clients
            .iter()
            .filter(|(c, _)| c.state() == ClientState::Connected)
            .count();
        if up == n {
            break;
        }
        assert!(Instant::now() < deadline, "only {up}/{n} connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_time = connect_start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);
    println!(
        "connected {n} nodes in {connect_time:?}; cloud RSS {rss_before} KiB -> {rss_after} KiB = {:.1} KiB per node",
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64
    );

    // Desired fan-out: one change per device through the registry API, 32 requests in flight.
    let url = std::fs::read_to_string(dir.path().join("registry.url")).expect("url");
    let token = std::fs::read_to_string(dir.path().join("registry.token")).expect("token");
    let client = Arc::new(RegistryClient::new(url.trim(), token.trim()).expect("registry client"));
    let fanout_start = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(32));
    let mut patches = Vec::with_capacity(n);
    for i in 0..n {
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .expect("permit");
        let client = Arc::clone(&client);
        let clock = Arc::clone(&clock);
        patches.push(tokio::spawn(async move {
            let patch = serde_json::json!({"spec": {"properties": [
                {"name": "power", "desired": {"value": "on"}}
            ]}});
            clock
                .lock()
                .expect("clock")
                .sent
                .insert(node_name(i), Instant::now());
            let written: Result<
                edgetwin_core::cloud::registry::embedded::client::Written<Device>,
                _,
            > = client
                .merge_patch(Kind::Device, "default", &device_name(i), &patch)
                .await;
            if let Err(error) = written {
                eprintln!("patch {i} failed: {error}");
            }
            drop(permit);
        }));
    }
    for patch in patches {
        let _ = patch.await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while clock.lock().expect("clock").received.len() < n {
        assert!(Instant::now() < deadline, "fan-out incomplete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fanout_total = fanout_start.elapsed();
    let mut latencies: Vec<Duration> = {
        let clock = clock.lock().expect("clock");
        clock
            .received
            .iter()
            .filter_map(|(node, at)| Some(at.saturating_duration_since(*clock.sent.get(node)?)))
            .collect()
    };
    latencies.sort();
    println!(
        "desired fan-out to {n} nodes: all applied {fanout_total:?} after the first PATCH; per node PATCH->applied p50 {:?} p99 {:?} max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );

    // Reported values: K per node, queued at once.
    let writes_before = metric(metrics_addr, "edgetwin_cloud_status_writes_total");
    let received_before = metric(metrics_addr, "edgetwin_cloud_twin_received_total");
    let report_start = Instant::now();
    for (i, (handle, outbox)) in clients.iter().enumerate() {
        let device = DeviceRef {
            namespace: "default".into(),
            name: device_name(i),
        };
        for k in 0..args.reports {
            let content = TwinContent {
                property: "power".into(),
                twin: Some(MsgTwin {
                    actual: Some(TwinValue::at(format!("r{k}"), 0)),
                    ..MsgTwin::default()
                }),
            };
            let message = cloud_edge::envelope(
                format!("{i}-{k}"),
                0,
                EDGE_SOURCE,
                cloud_edge::twin_resource(&node_name(i), &device),
                serde_json::to_value(content).expect("json"),
            );
            outbox.append(message).await.expect("append");
        }
        handle.outbox_changed();
    }
    let expected = received_before + (n * args.reports) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while metric(metrics_addr, "edgetwin_cloud_twin_received_total") < expected {
        assert!(Instant::now() < deadline, "reports not absorbed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let absorbed = report_start.elapsed();
    // Let the last flush happen, then count the writes the coalescing left.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let writes = metric(metrics_addr, "edgetwin_cloud_status_writes_total") - writes_before;
    println!(
        "reported: {} messages absorbed in {absorbed:?} = {:.0} msg/s; {writes} status writes for them (coalesced, 1 s interval)",
        n * args.reports,
        (n * args.reports) as f64 / absorbed.as_secs_f64()
    );

    for (handle, _) in clients {
        handle.shutdown().await;
    }
    let _ = cloud.kill();
    let _ = cloud.wait();
}
