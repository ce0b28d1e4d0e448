//! Traffic light latency: desired set → simulated pin level → reported → registry
//! status, against a raw MQTT round trip through the same embedded broker, measured in the same
//! run. Run with `cargo xtask bench traffic-light` (or `cargo bench -p
//! edgetwin-example-traffic-light --bench flips -- [--flips N] [--samples N]`); results go into
//! BENCHMARKS.md by hand.
//!
//! What runs is what a user runs: the release `edgetwin up` (cloud, edge agent, loopback tunnel,
//! sqlite files in a temporary data directory, free ports) with the release GPIO mapper as its
//! child on the simulated chip. This process is the user:
//!
//! - each flip sets `red` through the registry's HTTP API the way `edgetwin ctl set` does (it is
//!   `Ctl::set`: one `PATCH` of the Device's `desired` subresource);
//! - the pin is observed on the mapper's transition stream (`GET /sim/gpiochip0/events`), which
//!   writes each transition the moment the line moves;
//! - the status on the registry's watch stream: the first Device event whose `red` twin reports
//!   the desired value with condition Verified for the current generation.
//!
//! Flips alternate red ON and OFF (yellow and green stay OFF: the interlock allows it). The
//! baseline is publish → receive of a QoS 1 message between two clients of the demo's embedded
//! broker.
//!
//! With `EDGETWIN_TRACE_HOPS=<file>` in the environment, the bench, `edgetwin up` and the mapper
//! write a timestamp for each hop of a flip to that file (see `edgetwin_hoptrace`), and the
//! bench prints a per-hop table after its summary.

#[path = "flips/hop_table.rs"]
mod hop_table;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use edgetwin_core::cloud::registry::Kind;
use edgetwin_core::cloud::registry::embedded::client::RegistryClient;
use edgetwin_core::ctl::Ctl;
use edgetwin_hoptrace as hoptrace;
use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The device, property and pin the flips move (BCM 17 in the example's device.yaml).
const DEVICE: &str = "traffic-light";
const PROPERTY: &str = "red";
const RED_LINE: u64 = 17;
/// Flips and broker round trips made before measuring (connections, caches, page faults).
const WARM_UP: usize = 50;
/// How long one step may take before the run is abandoned.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `edgetwin up` may take to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(120);

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> BenchResult<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let hop_trace = std::env::var_os(hoptrace::TRACE_HOPS_ENV).map(PathBuf::from);
    if let Some(path) = &hop_trace {
        // A fresh trace: the marks of this run only.
        std::fs::File::create(path)?;
    }
    let (edgetwin, mapper) = release_binaries()?;
    let data = tempfile::tempdir()?;
    let up = Up::start(&edgetwin, &mapper, data.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let load_before = load_average();
    let outcome = runtime.block_on(measure(&up, &args));
    let load_after = load_average();
    drop(up);
    let report = outcome?;
    report.print(&args, &load_before, &load_after);
    if let Some(path) = hop_trace {
        let trace = std::fs::read_to_string(&path)?;
        println!("\n{}", hop_table::HopTable::of(&trace).render());
    }
    Ok(())
}

/// Command-line options (after `cargo bench … --`).
struct Args {
    flips: usize,
    samples: usize,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> BenchResult<Args> {
        let mut parsed = Args {
            flips: 1000,
            samples: 1000,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> BenchResult<usize> {
                let value = args.next().ok_or(format!("{name} needs a number"))?;
                Ok(value
                    .parse()
                    .map_err(|_| format!("{name} {value:?}: not a number"))?)
            };
            match arg.as_str() {
                // What cargo passes to a harness-less bench.
                "--bench" => {}
                "--flips" => parsed.flips = number("--flips")?.max(1),
                "--samples" => parsed.samples = number("--samples")?.max(1),
                other => return Err(format!("unknown argument {other:?}").into()),
            }
        }
        Ok(parsed)
    }
}

/// Builds (when stale) and finds the release `edgetwin` and `edgetwin-mapper-gpio`.
fn release_binaries() -> BenchResult<(PathBuf, PathBuf)> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(edgetwin_example_traffic_light::BUILD_BINARIES)
        .arg("--release")
        .status()?;
    if !status.success() {
        return Err(format!("building the release binaries failed: {status}").into());
    }
    // target/release/deps/flips-HASH → target/release
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    Ok((dir.join("edgetwin"), dir.join("edgetwin-mapper-gpio")))
}

/// A running `edgetwin up`, stopped by pid when dropped (SIGTERM, so that it stops its mapper).
struct Up {
    child: Child,
    registry: String,
    token: String,
    sim: String,
    broker: String,
}

impl Up {
    fn start(edgetwin: &Path, mapper: &Path, data_dir: &Path) -> BenchResult<Up> {
        let mut child =
            edgetwin_example_traffic_light::up_command(edgetwin, mapper, data_dir).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (lines, banner) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    // Keep draining so that `up` never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut up = Up {
            child,
            registry: String::new(),
            token: String::new(),
            sim: String::new(),
            broker: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while up.registry.is_empty() || up.sim.is_empty() || up.broker.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = banner
                .recv_timeout(left)
                .map_err(|_| "no banner from edgetwin up")?;
            let line = line.trim();
            if let Some(url) = line.strip_prefix("dashboard") {
                let (url, token) = url
                    .trim()
                    .split_once("/#token=")
                    .ok_or("the dashboard line has no token")?;
                (up.registry, up.token) = (url.to_owned(), token.to_owned());
            } else if let Some(url) = line.strip_prefix("sim pins") {
                up.sim = url
                    .trim()
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            } else if let Some(url) = line.strip_prefix("broker") {
                up.broker = url.trim().trim_start_matches("mqtt://").to_owned();
            }
        }
        Ok(up)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        edgetwin_example_traffic_light::stop_up(&mut self.child);
    }
}

/// When something was seen, and what.
type Seen = (Instant, String);

async fn measure(up: &Up, args: &Args) -> BenchResult<Report> {
    let broker = broker_round_trips(&up.broker, args.samples).await?;

    let client = RegistryClient::new(&up.registry, &up.token)?;
    let ctl = Ctl::new(client.clone(), None);
    let mut pins = pin_stream(&up.sim).await?;
    let mut statuses = status_stream(&client).await?;

    let mut report = Report {
        broker,
        ..Report::default()
    };
    // Start from OFF; the watch's first event is the stored Device.
    let mut value = "OFF";
    set(&ctl, value).await?;
    wait_for(&mut statuses, value, "the initial status").await?;
    for flip in 0..WARM_UP + args.flips {
        value = if value == "OFF" { "ON" } else { "OFF" };
        let level = if value == "ON" { "high" } else { "low" };
        // Nothing seen so far can be about this flip (repeats of the previous value only).
        while pins.try_recv().is_ok() || statuses.try_recv().is_ok() {}
        if flip >= WARM_UP {
            hoptrace::mark(hop_table::FLIP_START);
        }
        let started = Instant::now();
        set(&ctl, value).await?;
        let set_returned = Instant::now();
        hoptrace::mark("bench.set.returned");
        let pin = wait_for(&mut pins, level, "the pin").await?;
        let status = wait_for(&mut statuses, value, "the registry status").await?;
        if flip >= WARM_UP {
            report.set_call.push(set_returned - started);
            report.to_pin.push(pin - started);
            report.to_status.push(status - started);
            report
                .pin_to_status
                .push(status.saturating_duration_since(pin));
        }
    }
    Ok(report)
}

async fn set(ctl: &Ctl, value: &str) -> BenchResult<()> {
    let mut sink = Vec::new();
    ctl.set(DEVICE, &[format!("{PROPERTY}={value}")], &mut sink)
        .await?;
    Ok(())
}

/// Waits for the next thing seen with `what`; earlier ones (a level seen twice, a status event
/// for another change) are skipped.
async fn wait_for(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    expected: &str,
    what: &str,
) -> BenchResult<Instant> {
    let waited = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some((at, value)) = seen.recv().await {
            if value == expected {
                return Some(at);
            }
        }
        None
    })
    .await;
    match waited {
        Ok(Some(at)) => Ok(at),
        Ok(None) => Err(format!("{what}: the stream ended").into()),
        Err(_) => Err(format!("{what} did not show {expected} within {STEP_TIMEOUT:?}").into()),
    }
}

/// The red line's levels (`high`/`low`) from the mapper's transition stream, stamped on arrival.
async fn pin_stream(sim: &str) -> BenchResult<mpsc::UnboundedReceiver<Seen>> {
    let mut stream = tokio::net::TcpStream::connect(sim).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(b"GET /sim/gpiochip0/events HTTP/1.1\r\nHost: sim\r\n\r\n")
        .await?;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    // The head is out once the stream is subscribed.
    let status = lines.next_line().await?.unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("the sim event stream answered {status:?}").into());
    }
    while !lines.next_line().await?.unwrap_or_default().is_empty() {}
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let at = Instant::now();
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["line"].as_u64() == Some(RED_LINE)
                && let Some(level) = event["level"].as_str()
            {
                hoptrace::mark("bench.pin.seen");
                if tx.send((at, level.to_owned())).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// The red property's verified values from the registry's watch stream, stamped on arrival:
/// a Device event where `red` reports the desired value with condition Verified for the
/// current generation.
async fn status_stream(client: &RegistryClient) -> BenchResult<mpsc::UnboundedReceiver<Seen>> {
    let mut events = client.watch(Kind::Device, Some("default"), None).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            let at = Instant::now();
            if event.object["metadata"]["name"] != DEVICE {
                continue;
            }
            if let Some(value) = verified_value(&event.object) {
                hoptrace::mark("bench.status.seen");
                if tx.send((at, value)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// The value of [`PROPERTY`] when the Device's status shows it reported equal to desired and
/// Verified for the current generation.
fn verified_value(device: &Value) -> Option<String> {
    let desired = device["spec"]["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == PROPERTY)?["desired"]["value"]
        .as_str()?;
    let twin = device["status"]["twins"]
        .as_array()?
        .iter()
        .find(|t| t["propertyName"] == PROPERTY)?;
    let condition = &twin["condition"];
    let verified = twin["reported"]["value"] == desired
        && condition["type"] == "Verified"
        && condition["observedGeneration"] == device["metadata"]["generation"];
    verified.then(|| desired.to_owned())
}

/// Publish → receive through the broker at `addr`, QoS 1, between two clients.
async fn broker_round_trips(addr: &str, samples: usize) -> BenchResult<Vec<Duration>> {
    const TOPIC: &str = "edgetwin-bench/round-trip";
    let (host, port) = addr.rsplit_once(':').ok_or("broker address without port")?;
    let port: u16 = port.parse()?;
    let connect = |id: &str| {
        let mut options = MqttOptions::new(id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        eventloop.network_options.set_tcp_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel::<(Instant, Packet)>();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send((Instant::now(), packet)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(_) => return,
                }
            }
        });
        (client, rx)
    };
    let (subscriber, mut received) = connect("bench-subscriber");
    subscriber.subscribe(TOPIC, QoS::AtLeastOnce).await?;
    next_packet(&mut received, |p| matches!(p, Packet::SubAck(_))).await?;
    let (publisher, mut acks) = connect("bench-publisher");
    next_packet(&mut acks, |p| matches!(p, Packet::ConnAck(_))).await?;
    let mut round_trips = Vec::with_capacity(samples);
    for n in 0..WARM_UP + samples {
        let sent = Instant::now();
        publisher
            .publish(TOPIC, QoS::AtLeastOnce, false, n.to_string())
            .await?;
        let at = next_packet(&mut received, |p| matches!(p, Packet::Publish(_))).await?;
        if n >= WARM_UP {
            round_trips.push(at - sent);
        }
    }
    subscriber.disconnect().await?;
    publisher.disconnect().await?;
    Ok(round_trips)
}

async fn next_packet(
    packets: &mut mpsc::UnboundedReceiver<(Instant, Packet)>,
    wanted: impl Fn(&Packet) -> bool,
) -> BenchResult<Instant> {
    let found = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some((at, packet)) = packets.recv().await {
            if wanted(&packet) {
                return Some(at);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(at)) => Ok(at),
        _ => Err("the broker did not answer".into()),
    }
}

/// Every sample of one run.
#[derive(Default)]
struct Report {
    broker: Vec<Duration>,
    set_call: Vec<Duration>,
    to_pin: Vec<Duration>,
    to_status: Vec<Duration>,
    pin_to_status: Vec<Duration>,
}

impl Report {
    fn print(&self, args: &Args, load_before: &str, load_after: &str) {
        println!(
            "## Traffic light: {} flips, {} broker round trips (load average before: {load_before}; after: {load_after})\n",
            args.flips, args.samples
        );
        println!("| measurement | p50 | p99 | max | p99 ÷ broker p99 |\n|---|---|---|---|---|");
        let broker_p99 = Stats::of(&self.broker).p99;
        for (name, samples) in [
            ("raw MQTT round trip, QoS 1 (baseline)", &self.broker),
            ("`ctl set` call", &self.set_call),
            ("set → pin level", &self.to_pin),
            ("pin level → registry status Verified", &self.pin_to_status),
            ("set → registry status Verified", &self.to_status),
        ] {
            let stats = Stats::of(samples);
            println!(
                "| {name} | {} | {} | {} | {:.1}× |",
                ms(stats.p50),
                ms(stats.p99),
                ms(stats.max),
                stats.p99.as_secs_f64() / broker_p99.as_secs_f64().max(1e-9)
            );
        }
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |p: f64| {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        Stats {
            p50: at(0.50),
            p99: at(0.99),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
