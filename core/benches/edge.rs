//! Edge agent benchmarks, each against a baseline measured in the same run (this machine is
//! noisy: compare ratios). Run with `cargo bench -p edgetwin-core --bench edge`; results go to
//! BENCHMARKS.md.
//!
//! (a) reported updates absorbed per second, published → `update/result` received, against the
//!     raw broker pub→sub rate; per broker, with and without batching, synchronous NORMAL/FULL;
//! (b) p50/p99 latency `twin/update` → `update/result`, against a raw broker round trip through
//!     an echo client;
//! (c) RSS of the `edgetwin` process serving 100 devices × 10 properties;
//! (d) cold start to serving: process spawn → first `twin/get/result` from the store.
//!
//! Plus the store alone: commits per second at both `synchronous` levels with and without
//! batching, which is what the choice of `synchronous` rests on.
//!
//! `EDGETWIN_BENCH_STAGES` runs only some stages, e.g. `c` or `store,a` (default: all of
//! `store,a,b,c,d`); `EDGETWIN_BENCH_BROKER` only one broker (`embedded`, `mosquitto`);
//! `EDGETWIN_BENCH_VARIANTS` only some of stage (a)'s runs (`256-normal`, `1-normal`,
//! `256-full`, and `echo`: the agent's message pattern without an agent, the ceiling of (a)).
//!
//! `EDGETWIN_BENCH_AGENT` names the `edgetwin` binary to run (default: the one cargo built for
//! this bench). `cargo bench` builds it with the dev-dependencies' features (tokio `full`, i.e.
//! the multi-thread scheduler), so for (c) and (d) pass the binary a user deploys:
//! `cargo build --release -p edgetwin-core --no-default-features --features
//! cli,edge,embedded-broker --bin edgetwin` (BENCHMARKS.md, "Edge agent").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgetwin_core::edge::agent;
use edgetwin_core::edge::config::{EdgeConfig, EmbeddedBrokerConfig, ExternalBrokerConfig};
use edgetwin_core::edge::store::{
    DeviceKey, NewEntry, OutboxKind, Store, StoreOptions, Synchronous,
};
use edgetwin_testkit::{BrokerKind, TestBroker, free_port, sensor_fleet_yaml};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const NODE: &str = "bench-node";
const DEVICES: usize = 100;
const PROPERTIES: usize = 10;
/// Messages per throughput run; `EDGETWIN_BENCH_MESSAGES` overrides it (e.g. for a quick check).
fn throughput_messages() -> usize {
    std::env::var("EDGETWIN_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
const LATENCY_SAMPLES: usize = 2_000;
const STORE_COMMITS: usize = 2_000;
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    // The in-process agent's log, when asked for (e.g. RUST_LOG=edgetwin_core=debug).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let work = tempfile::tempdir().expect("temp dir");
    let devices = work.path().join("devices.yaml");
    std::fs::write(&devices, devices_yaml()).expect("devices file");

    if stage("store") {
        println!(
            "## store alone: commits per second ({STORE_COMMITS} twin writes + outbox entries)\n"
        );
        println!("| synchronous | batch of 1 | batch of 64 |\n|---|---|---|");
        for sync in [Synchronous::Normal, Synchronous::Full] {
            let one = store_rate(work.path(), sync, 1);
            let many = store_rate(work.path(), sync, 64);
            println!("| {sync:?} | {one:.0} writes/s | {many:.0} writes/s |");
        }
    }

    runtime.block_on(async {
        if stage("a") {
        println!(
            "\n## (a) reported updates absorbed, published → update/result ({} messages)\n",
            throughput_messages()
        );
        println!("| broker | raw pub→sub | agent, batchMax 256, NORMAL | agent, batchMax 1, NORMAL | agent, batchMax 256, FULL | echo: the agent's messages, no agent |");
        println!("|---|---|---|---|---|---|");
        for kind in brokers() {
            let raw_broker = broker_for(kind);
            let raw = raw_throughput(raw_broker.addr()).await;
            let mut cells = vec![format!("{raw:.0} msg/s")];
            let echo = if agent_variant_named("echo") {
                let echo_broker = broker_for(kind);
                let rate = echo_throughput(echo_broker.addr()).await;
                format!("{rate:.0} msg/s ({:.0} %)", 100.0 * rate / raw)
            } else {
                "–".to_owned()
            };
            for (batch, sync) in [(256, Synchronous::Normal), (1, Synchronous::Normal), (256, Synchronous::Full)] {
                if !agent_variant(batch, sync) {
                    cells.push("–".to_owned());
                    continue;
                }
                let (edge, _guard) = start_agent(kind, work.path(), &devices, batch, sync).await;
                let rate = agent_throughput(edge.addr).await;
                cells.push(format!("{rate:.0} msg/s ({:.0} %)", 100.0 * rate / raw));
                edge.agent.shutdown().await;
            }
            cells.push(echo);
            println!("| {kind} | {} |", cells.join(" | "));
        }
        }

        if stage("b") {
        println!("\n## (b) latency, {LATENCY_SAMPLES} sequential round trips\n");
        println!("| broker | raw round trip p50 / p99 | twin/update → update/result p50 / p99 |");
        println!("|---|---|---|");
        for kind in brokers() {
            let raw_broker = broker_for(kind);
            let raw = raw_latency(raw_broker.addr()).await;
            let (edge, _guard) = start_agent(kind, work.path(), &devices, 256, Synchronous::Normal).await;
            let agent = agent_latency(edge.addr).await;
            edge.agent.shutdown().await;
            println!(
                "| {kind} | {} / {} | {} / {} |",
                micros(raw.0),
                micros(raw.1),
                micros(agent.0),
                micros(agent.1)
            );
        }
        }

        if stage("c") {
        println!("\n## (c) RSS of `edgetwin edge`, {DEVICES} devices × {PROPERTIES} properties, each reported once\n");
        println!("| broker | VmRSS | VmHWM | RssAnon | RssFile | RssShmem | threads |");
        println!("|---|---|---|---|---|---|---|");
        for kind in brokers() {
            let memory = process_rss(kind, work.path(), &devices).await;
            println!(
                "| {kind} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2} MiB | {} |",
                mib(memory.rss),
                mib(memory.hwm),
                mib(memory.anon),
                mib(memory.file),
                mib(memory.shmem),
                memory.threads
            );
        }
        }

        if stage("d") {
        let kind = brokers()[0];
        println!("\n## (d) cold start: spawn → first twin/get/result served from the store ({DEVICES} devices, {kind})\n");
        let starts = cold_starts(kind, work.path(), &devices, 7).await;
        println!(
            "median {} (min {}, max {}) over {} starts",
            micros(starts[starts.len() / 2]),
            micros(starts[0]),
            micros(starts[starts.len() - 1]),
            starts.len()
        );
        }
    });
}

/// Whether `EDGETWIN_BENCH_STAGES` (comma-separated; unset: all) asks for `name`.
fn stage(name: &str) -> bool {
    std::env::var("EDGETWIN_BENCH_STAGES")
        .map_or(true, |stages| stages.split(',').any(|s| s.trim() == name))
}

/// Whether `EDGETWIN_BENCH_VARIANTS` (comma-separated `256-normal`, `1-normal`, `256-full`,
/// `echo`; unset: all) asks for the agent run of stage (a) with `batch` and `sync` (e.g. to profile one of them).
fn agent_variant(batch: usize, sync: Synchronous) -> bool {
    agent_variant_named(&format!("{batch}-{}", format!("{sync:?}").to_lowercase()))
}

/// Whether `EDGETWIN_BENCH_VARIANTS` (unset: all) names `name` (`echo`: the run without agent).
fn agent_variant_named(name: &str) -> bool {
    std::env::var("EDGETWIN_BENCH_VARIANTS").map_or(true, |variants| {
        variants.split(',').any(|v| v.trim() == name)
    })
}

/// The brokers to measure: both, or the one named by `EDGETWIN_BENCH_BROKER` (`embedded`,
/// `mosquitto`).
fn brokers() -> Vec<BrokerKind> {
    match std::env::var("EDGETWIN_BENCH_BROKER").as_deref() {
        Ok("embedded") => vec![BrokerKind::Embedded],
        Ok("mosquitto") => vec![BrokerKind::Mosquitto],
        _ => BrokerKind::ALL.to_vec(),
    }
}

fn devices_yaml() -> String {
    sensor_fleet_yaml(NODE, DEVICES, PROPERTIES)
}

/// A report that changes one property (unique value `n`).
fn report(n: usize) -> (String, Vec<u8>) {
    let device = n % DEVICES;
    let property = (n / DEVICES) % PROPERTIES;
    let topic = format!("$hw/events/device/default/dev-{device}/twin/update");
    let payload = format!(
        r#"{{"event_id":"{n}","twin":{{"p{property}":{{"actual":{{"value":"{}"}}}}}}}}"#,
        n + 1
    );
    (topic, payload.into_bytes())
}

fn store_rate(dir: &Path, synchronous: Synchronous, batch: usize) -> f64 {
    let path = dir.join(format!("store-{synchronous:?}-{batch}.db"));
    let _ = std::fs::remove_file(&path);
    let mut store = Store::open(
        &path,
        StoreOptions {
            synchronous,
            ..StoreOptions::default()
        },
    )
    .expect("store");
    let device = DeviceKey::new("default", "dev");
    store
        .write(|w| w.put_device(&device, &"device"))
        .expect("device");
    let started = Instant::now();
    for chunk in 0..STORE_COMMITS / batch {
        let mut writes = store.batch().expect("batch");
        for i in 0..batch {
            let n = chunk * batch + i;
            let property = format!("p{}", n % PROPERTIES);
            let value = format!("{{\"value\":\"{n}\"}}");
            let mut scope = writes.scope().expect("scope");
            scope.put_twin(&device, &property, &value).expect("twin");
            scope
                .queue(NewEntry {
                    kind: OutboxKind::Twin,
                    device: &device,
                    property: Some(&property),
                    payload: &value,
                    now_ms: 0,
                })
                .expect("outbox");
            scope.commit().expect("scope");
        }
        writes.commit().expect("commit");
    }
    STORE_COMMITS as f64 / started.elapsed().as_secs_f64()
}

fn broker_for(kind: BrokerKind) -> TestBroker {
    TestBroker::start(kind).expect("broker")
}

struct RunningAgent {
    agent: agent::AgentHandle,
    addr: SocketAddr,
}

/// An in-process agent with the bench devices on a fresh data dir.
async fn start_agent(
    kind: BrokerKind,
    work: &Path,
    devices: &Path,
    batch_max: usize,
    synchronous: Synchronous,
) -> (RunningAgent, Option<TestBroker>) {
    let data = tempfile::tempdir_in(work).expect("data dir").keep();
    let mut config = EdgeConfig {
        node_name: NODE.into(),
        data_dir: data,
        ..EdgeConfig::default()
    };
    config.http.listen = None;
    config.store.batch_max = batch_max;
    config.store.synchronous = synchronous;
    let mosquitto = match kind {
        BrokerKind::Embedded => {
            config.broker.embedded = Some(EmbeddedBrokerConfig {
                listen: "127.0.0.1:0".parse().expect("address"),
            });
            None
        }
        BrokerKind::Mosquitto => {
            let broker = broker_for(kind);
            config.broker.external = Some(ExternalBrokerConfig {
                url: format!("mqtt://{}", broker.addr()),
                username: None,
                password: None,
                tls: None,
            });
            Some(broker)
        }
    };
    let agent = agent::start(config, Some(devices)).await.expect("agent");
    agent.connected().await;
    let endpoint = agent.broker();
    let addr = format!("{}:{}", endpoint.host, endpoint.port)
        .parse()
        .expect("address");
    (RunningAgent { agent, addr }, mosquitto)
}

/// A connected client and a channel of the publishes it receives (with their arrival time).
async fn client(
    addr: SocketAddr,
    id: &str,
    filters: &[&str],
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<(Instant, rumqttc::Publish)>,
) {
    // Unique per run: a client id reused on the same broker would take the older session over.
    static CLIENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut options = MqttOptions::new(format!("{id}-{n}"), addr.ip().to_string(), addr.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    eventloop.network_options.set_tcp_nodelay(true);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, tx, ready_tx));
    for filter in filters {
        client
            .subscribe(*filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
    }
    // The CONNACK, then one SUBACK per filter.
    for _ in 0..=filters.len() {
        tokio::time::timeout(TIMEOUT, ready.recv())
            .await
            .expect("ready in time");
    }
    (client, rx)
}

/// Drives a bench client's event loop until the client or its receiver is dropped (so a client
/// of a finished stage never reconnects to a later stage's broker).
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<(Instant, rumqttc::Publish)>,
    ready: mpsc::UnboundedSender<()>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send((Instant::now(), p)).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_) | Packet::ConnAck(_))) => {
                let _ = ready.send(());
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => return,
            Err(error) => {
                if ready.is_closed() || tx.is_closed() {
                    return;
                }
                eprintln!("bench client: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Publishes `messages` and returns how many arrive at `rx` per second.
async fn rate(
    publisher: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<(Instant, rumqttc::Publish)>,
    messages: impl Iterator<Item = (String, Vec<u8>)>,
    count: usize,
) -> f64 {
    let started = Instant::now();
    let mut published = 0;
    let mut received = 0;
    let mut last = started;
    let mut messages = messages.peekable();
    while received < count {
        // Keep at most 200 unanswered messages outstanding, like a fleet of steady mappers.
        while published - received < 200 {
            let Some((topic, payload)) = messages.next() else {
                break;
            };
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
            published += 1;
        }
        let Ok(next) = tokio::time::timeout(TIMEOUT, rx.recv()).await else {
            panic!("stalled after {received} of {count} received ({published} published)");
        };
        let (at, _) = next.expect("the client runs");
        received += 1;
        last = at;
    }
    count as f64 / (last - started).as_secs_f64()
}

async fn raw_throughput(addr: SocketAddr) -> f64 {
    let (_sub, mut rx) = client(addr, "raw-sub", &["bench/raw"]).await;
    let (publisher, _) = client(addr, "raw-pub", &[]).await;
    let messages = (0..throughput_messages()).map(|n| {
        let (_, payload) = report(n);
        ("bench/raw".to_owned(), payload)
    });
    rate(&publisher, &mut rx, messages, throughput_messages()).await
}

async fn agent_throughput(addr: SocketAddr) -> f64 {
    let (_sub, mut rx) = client(
        addr,
        "results",
        &["$hw/events/device/+/+/twin/update/result"],
    )
    .await;
    let (publisher, _) = client(addr, "mapper", &[]).await;
    rate(
        &publisher,
        &mut rx,
        (0..throughput_messages()).map(report),
        throughput_messages(),
    )
    .await
}

/// Stage (a) with a client in the agent's place that stores nothing and answers every report
/// at once with the three messages the agent publishes for it (`update/result`,
/// `update/document`, the device's `update/delta`; JSON of the agent's sizes) over TCP: what the
/// broker and the bench clients cost for the agent's message pattern, i.e. the ceiling of (a) for
/// an agent that costs nothing (on the embedded broker the agent's own link is in-process, so
/// a little higher there).
async fn echo_throughput(addr: SocketAddr) -> f64 {
    let (responder, mut reports) =
        client(addr, "echo-agent", &["$hw/events/device/+/+/twin/update"]).await;
    let answers = echo_answers();
    tokio::spawn(async move {
        while let Some((_, report)) = reports.recv().await {
            for (suffix, payload) in &answers {
                let topic = format!("{}/{suffix}", report.topic);
                if responder
                    .publish(topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    agent_throughput(addr).await
}

/// The topic suffixes and payloads of the agent's answer to one report: the result of one
/// property, its document (before and after), the delta of all ten properties.
fn echo_answers() -> [(&'static str, Vec<u8>); 3] {
    const TS: i64 = 1_764_412_800_000;
    let snapshot = |reported: &str| {
        format!(
            r#"{{"expected":{{"value":"0","metadata":{{"timestamp":{TS}}}}},"actual":{{"value":"{reported}","metadata":{{"timestamp":{TS}}}}},"optional":false,"metadata":{{"type":"int"}}}}"#
        )
    };
    let result = format!(
        r#"{{"event_id":"12345","timestamp":{TS},"twin":{{"p3":{{"actual":{{"value":"12346","metadata":{{"timestamp":{TS}}}}},"optional":false,"metadata":{{"type":"int"}}}}}}}}"#
    );
    let document = format!(
        r#"{{"event_id":"12345","timestamp":{TS},"twin":{{"p3":{{"last":{},"current":{}}}}}}}"#,
        snapshot("2346"),
        snapshot("12346")
    );
    let twin: Vec<String> = (0..PROPERTIES)
        .map(|p| format!(r#""p{p}":{}"#, snapshot("12346")))
        .collect();
    let waiting: Vec<String> = (0..PROPERTIES).map(|p| format!(r#""p{p}":"0""#)).collect();
    let delta = format!(
        r#"{{"event_id":"6f1c2d9e-58a4-4c1e-9b7a-3d2e1f0a4b5c","timestamp":{TS},"twin":{{{}}},"delta":{{{}}}}}"#,
        twin.join(","),
        waiting.join(",")
    );
    [
        ("result", result.into_bytes()),
        ("document", document.into_bytes()),
        ("delta", delta.into_bytes()),
    ]
}

/// p50 and p99 of `samples` sequential round trips: publish on `topic`, wait for a message.
async fn round_trips(
    publisher: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<(Instant, rumqttc::Publish)>,
    mut message: impl FnMut(usize) -> (String, Vec<u8>),
) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES + 200 {
        let (topic, payload) = message(n);
        let sent = Instant::now();
        publisher
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
        let (at, _) = tokio::time::timeout(TIMEOUT, rx.recv())
            .await
            .expect("an answer")
            .expect("runs");
        if n >= 200 {
            samples.push(at - sent);
        }
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

async fn raw_latency(addr: SocketAddr) -> (Duration, Duration) {
    // An echo client answers every ping with a pong: two broker hops and a client hop, like the
    // agent's request → result.
    let (echo, mut pings) = client(addr, "echo", &["bench/ping"]).await;
    tokio::spawn(async move {
        while let Some((_, ping)) = pings.recv().await {
            if echo
                .publish("bench/pong", QoS::AtLeastOnce, false, ping.payload.to_vec())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let (publisher, mut pongs) = client(addr, "pinger", &["bench/pong"]).await;
    round_trips(&publisher, &mut pongs, |n| {
        ("bench/ping".to_owned(), report(n).1)
    })
    .await
}

async fn agent_latency(addr: SocketAddr) -> (Duration, Duration) {
    let (publisher, mut results) = client(
        addr,
        "mapper-latency",
        &["$hw/events/device/+/+/twin/update/result"],
    )
    .await;
    round_trips(&publisher, &mut results, |n| {
        report(n + throughput_messages())
    })
    .await
}

/// The `edgetwin edge` binary on `data`, with the bench devices when `devices` is given.
fn spawn(kind: BrokerKind, work: &Path, data: &Path, devices: Option<&Path>, port: u16) -> Child {
    let broker = match kind {
        BrokerKind::Embedded => format!("  embedded:\n    listen: 127.0.0.1:{port}\n"),
        BrokerKind::Mosquitto => format!("  external:\n    url: mqtt://127.0.0.1:{port}\n"),
    };
    let config = work.join(format!("edge-{port}.yaml"));
    std::fs::write(
        &config,
        format!(
            "nodeName: {NODE}\ndataDir: {}\nbroker:\n{broker}http:\n  listen: null\n",
            data.display()
        ),
    )
    .expect("config");
    let agent = std::env::var_os("EDGETWIN_BENCH_AGENT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_edgetwin")),
        PathBuf::from,
    );
    let mut command = Command::new(agent);
    command.arg("edge").arg("--config").arg(&config);
    if let Some(devices) = devices {
        command.arg("--devices").arg(devices);
    }
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("edgetwin starts")
}

/// Connects a client, retrying while the agent (and its embedded broker) starts.
async fn connect_when_up(
    addr: SocketAddr,
    id: &str,
    filters: &[&str],
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<(Instant, rumqttc::Publish)>,
) {
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    client(addr, id, filters).await
}

/// Waits until device `dev-{DEVICES - 1}` answers a twin/get.
async fn served(
    client: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<(Instant, rumqttc::Publish)>,
) -> Instant {
    let topic = format!("$hw/events/device/default/dev-{}/twin/get", DEVICES - 1);
    loop {
        client
            .publish(
                &topic,
                QoS::AtLeastOnce,
                false,
                b"{\"event_id\":\"cold\"}".to_vec(),
            )
            .await
            .expect("publish");
        if let Ok(Some((at, _))) = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await {
            return at;
        }
    }
}

/// Memory of a process, from `/proc/PID/status` (bytes).
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    threads: u64,
}

async fn process_rss(kind: BrokerKind, work: &Path, devices: &Path) -> Memory {
    let mosquitto = (kind == BrokerKind::Mosquitto).then(|| broker_for(kind));
    let port = mosquitto
        .as_ref()
        .map_or_else(|| free_port().expect("port"), TestBroker::port);
    let data = tempfile::tempdir_in(work).expect("data dir");
    let mut child = spawn(kind, work, data.path(), Some(devices), port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (publisher, mut rx) =
        connect_when_up(addr, "rss", &["$hw/events/device/+/+/twin/+/result"]).await;
    served(&publisher, &mut rx).await;
    // Every property of every device reported once.
    let count = DEVICES * PROPERTIES;
    rate(&publisher, &mut rx, (0..count).map(report), count).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("proc status");
    let number = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let kib = |name: &str| number(name) * 1024;
    let result = Memory {
        rss: kib("VmRSS:"),
        hwm: kib("VmHWM:"),
        anon: kib("RssAnon:"),
        file: kib("RssFile:"),
        shmem: kib("RssShmem:"),
        threads: number("Threads:"),
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    result
}

async fn cold_starts(kind: BrokerKind, work: &Path, devices: &Path, runs: usize) -> Vec<Duration> {
    // With mosquitto, one broker for all runs (the agent's start is measured, not the broker's).
    let mosquitto = (kind == BrokerKind::Mosquitto).then(|| broker_for(kind));
    let port_for_run = || {
        mosquitto
            .as_ref()
            .map_or_else(|| free_port().expect("port"), TestBroker::port)
    };
    // A data dir with the devices in its store.
    let data: PathBuf = tempfile::tempdir_in(work).expect("data dir").keep();
    let port = port_for_run();
    let mut child = spawn(kind, work, &data, Some(devices), port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    {
        let (client, mut rx) =
            connect_when_up(addr, "prepare", &["$hw/events/device/+/+/twin/get/result"]).await;
        served(&client, &mut rx).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let mut times = Vec::new();
    for run in 0..runs {
        let port = port_for_run();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let spawned = Instant::now();
        let mut child = spawn(kind, work, &data, None, port);
        let (client, mut rx) = connect_when_up(
            addr,
            &format!("cold-{run}"),
            &["$hw/events/device/+/+/twin/get/result"],
        )
        .await;
        let at = served(&client, &mut rx).await;
        times.push(at - spawned);
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    times.sort();
    times
}

fn micros(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{} µs", d.as_micros())
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
