//! OPC-UA benchmarks against our simulator (`opcua-sim`, async-opcua's server, a separate
//! process), printed as Markdown for BENCHMARKS.md:
//!
//! 1. **Batched reads**: 200 Int32 properties on one device; one Read service call per cycle
//!    (the driver) against one Read call per property (what a naive mapper does), in the same
//!    run: properties read per second and cycle times.
//! 2. **Subscription latency**: a server-side change to the value reported on MQTT (in-test
//!    edge), for a monitored property (publishing and sampling interval 100 ms, the simulator's
//!    fastest) and, as the baseline in the same run, a property polled every 100 ms.
//! 3. **Mapper RSS**: the `edgetwin-mapper-opcua` process serving that 200-property device
//!    (polled every second, 20 of them monitored), against the same binary serving no device.
//!
//! Run: `cargo bench -p edgetwin-mapper-opcua`. Part 3 measures the binary `cargo bench` built,
//! which has the test features (`yaml`, `sim`); `EDGETWIN_BENCH_MAPPER=PATH` measures another one,
//! e.g. a copy of what `cargo build --release -p edgetwin-mapper-opcua` builds (the shipped
//! feature set). The mapper gets its device from the retained spec topic, as next to the agent.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use edgetwin_mapper_opcua::OpcUaDriver;
use edgetwin_mapper_opcua::config::VisitorConfig;
use edgetwin_sdk::testkit::{TestBroker, TestEdge};
use edgetwin_sdk::{Driver, Mapper, Point, PropertyType, Session};
use serde_json::json;
use support::{Peer, device};
use tokio::time::Instant;

/// How long each measured read phase runs.
const PHASE: Duration = Duration::from_secs(5);
/// Properties on the device.
const PROPERTIES: usize = 200;
/// Server-side changes timed per property kind.
const CHANGES: usize = 40;
/// The mapper's node in part 2 and 3.
const NODE: &str = "bench-node";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("## OPC-UA mapper (`cargo bench -p edgetwin-mapper-opcua`)\n");
    let pki = tempfile::tempdir().expect("temp dir");
    let sim = Peer::sim(pki.path(), PROPERTIES).await;
    batched_reads(&sim).await;
    let sim = subscription_latency(sim).await;
    mapper_rss(&sim).await;
    sim.kill().await;
}

struct Phase {
    cycles: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn batched_reads(sim: &Peer) {
    let properties: Vec<(String, PropertyType, serde_json::Value)> = (0..PROPERTIES)
        .map(|i| {
            (
                format!("v{i}"),
                PropertyType::Int,
                json!({"nodeID": format!("ns={};s=v{i:04}", sim.ns)}),
            )
        })
        .collect();
    let config = device("bench", json!({"url": sim.url}), &properties);
    let data = tempfile::tempdir().expect("temp dir");
    let driver = OpcUaDriver::new(data.path());
    let mut session = driver.connect(&config).await.expect("simulator answers");
    let points: Vec<&Point<VisitorConfig>> = config.points.iter().collect();

    let batched = measure(async || {
        let values = session.read(&points).await;
        assert!(values.iter().all(Result::is_ok));
    })
    .await;
    let naive = measure(async || {
        for point in &points {
            let value = session.read(std::slice::from_ref(point)).await;
            assert!(value[0].is_ok());
        }
    })
    .await;
    session.disconnect().await;

    println!("### {PROPERTIES} Int32 properties, one device, SecurityPolicy None (loopback)\n");
    println!(
        "| read loop | Read calls per cycle | properties read per second | cycle p50 | cycle p99 |"
    );
    println!("|---|---|---|---|---|");
    for (name, calls, phase) in [
        ("batched (edgetwin)", 1, &batched),
        ("naive, one Read per property", PROPERTIES, &naive),
    ] {
        println!(
            "| {name} | {calls} | {:.0} | {:.2?} | {:.2?} |",
            PROPERTIES as f64 * phase.cycles as f64 / phase.elapsed.as_secs_f64(),
            percentile(&phase.latencies, 50.0),
            percentile(&phase.latencies, 99.0),
        );
    }
    println!(
        "\nBatched reads deliver {:.1}x the properties per second of the naive loop.\n",
        (batched.cycles as f64 / batched.elapsed.as_secs_f64())
            / (naive.cycles as f64 / naive.elapsed.as_secs_f64())
    );
}

/// Runs `cycle` back to back for [`PHASE`].
async fn measure(mut cycle: impl AsyncFnMut()) -> Phase {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < PHASE {
        let one = Instant::now();
        cycle().await;
        latencies.push(one.elapsed());
    }
    Phase {
        cycles: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn latency_yaml(url: &str, ns: u16) -> String {
    format!(
        r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {{name: latency-model, namespace: default}}
spec:
  protocol: opcua
  properties:
    - {{name: pushed, type: INT, accessMode: ReadOnly}}
    - {{name: polled, type: INT, accessMode: ReadOnly}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {{name: latency, namespace: default}}
spec:
  deviceModelRef: {{name: latency-model}}
  nodeName: {NODE}
  protocol:
    protocolName: opcua
    configData: {{url: "{url}"}}
  properties:
    - name: pushed
      collectCycle: 3600000
      reportCycle: 5
      visitors:
        protocolName: opcua
        configData:
          nodeID: "ns={ns};s=v0000"
          subscribe: {{samplingInterval: 100, publishingInterval: 100}}
    - name: polled
      collectCycle: 100
      reportCycle: 5
      visitors:
        protocolName: opcua
        configData: {{nodeID: "ns={ns};s=v0001"}}
"#
    )
}

async fn subscription_latency(mut sim: Peer) -> Peer {
    let broker = TestBroker::start().await.expect("broker");
    let edge = TestEdge::start(&broker.addr(), NODE).await;
    let data = tempfile::tempdir().expect("temp dir");
    let mapper = Mapper::builder()
        .driver(OpcUaDriver::new(data.path()))
        .node(NODE)
        .broker(broker.addr().to_string())
        .build()
        .expect("mapper")
        .spawn();
    edge.publish_devices(&latency_yaml(&sim.url, sim.ns))
        .expect("YAML");
    let id = "default/latency";
    edge.wait_state(id, "online", Duration::from_secs(30))
        .await
        .expect("online");
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for change in 0..CHANGES {
        let value = (1000 + change).to_string();
        for (kind, (property, variable)) in [("pushed", "v0000"), ("polled", "v0001")]
            .into_iter()
            .enumerate()
        {
            let before = edge.device(id).reports.len();
            let sent = SystemTime::now();
            sim.set(variable, &value).await;
            let seen = edge
                .wait_reported(id, property, &value, Duration::from_secs(10))
                .await
                .expect("reported");
            let at = seen.reports[before..]
                .iter()
                .find(|r| r.values.get(property) == Some(&value))
                .map(|r| r.at)
                .expect("the report");
            latencies[kind].push(at.duration_since(sent).unwrap_or_default());
            // Start each change at a random point of the intervals.
            tokio::time::sleep(Duration::from_millis(37 + (change as u64 * 13) % 61)).await;
        }
    }
    mapper.shutdown().await.expect("shutdown");
    println!("### Server-side change → value reported on MQTT ({CHANGES} changes each)\n");
    println!("| property | p50 | p90 | max |");
    println!("|---|---|---|---|");
    for (name, samples) in [
        (
            "monitored item, publishing/sampling interval 100 ms",
            &latencies[0],
        ),
        ("baseline: polled every 100 ms", &latencies[1]),
    ] {
        println!(
            "| {name} | {:.1?} | {:.1?} | {:.1?} |",
            percentile(samples, 50.0),
            percentile(samples, 90.0),
            percentile(samples, 100.0),
        );
    }
    println!();
    sim
}

fn rss_yaml(url: &str, ns: u16) -> String {
    let mut model = String::from(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {name: rss-model, namespace: default}\nspec:\n  protocol: opcua\n  properties:\n",
    );
    let mut device = format!(
        "---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: rss, namespace: default}}\nspec:\n  deviceModelRef: {{name: rss-model}}\n  nodeName: {NODE}\n  protocol:\n    protocolName: opcua\n    configData: {{url: \"{url}\"}}\n  properties:\n"
    );
    for i in 0..PROPERTIES {
        model.push_str(&format!(
            "    - {{name: v{i}, type: INT, accessMode: ReadWrite}}\n"
        ));
        let subscribe = if i < 20 {
            ", subscribe: {samplingInterval: 100, publishingInterval: 500}"
        } else {
            ""
        };
        device.push_str(&format!(
            "    - name: v{i}\n      collectCycle: 1000\n      reportCycle: 1000\n      visitors:\n        protocolName: opcua\n        configData: {{nodeID: \"ns={ns};s=v{i:04}\"{subscribe}}}\n"
        ));
    }
    model + &device
}

async fn mapper_rss(sim: &Peer) {
    let binary = std::env::var_os("EDGETWIN_BENCH_MAPPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_edgetwin-mapper-opcua")));
    let broker = TestBroker::start().await.expect("broker");
    let edge = TestEdge::start(&broker.addr(), NODE).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let idle = run_mapper(&binary, &broker.addr().to_string(), dir.path(), None).await;
    edge.publish_devices(&rss_yaml(&sim.url, sim.ns))
        .expect("YAML");
    let busy = run_mapper(&binary, &broker.addr().to_string(), dir.path(), Some(&edge)).await;
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    println!(
        "### Mapper resident memory (`{}`, {:.1} MB)\n",
        binary.display(),
        size as f64 / 1e6
    );
    println!(
        "| mapper serving | VmRSS | of it code and data files (RssFile) | heap and stacks (RssAnon) | VmHWM | CPU over 20 s |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, sample) in [
        ("no device (baseline)", &idle),
        (
            "1 device, 200 properties polled every 1 s, 20 of them monitored",
            &busy,
        ),
    ] {
        println!(
            "| {name} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.1} % |",
            sample.rss_kib as f64 / 1024.0,
            sample.file_kib as f64 / 1024.0,
            sample.anon_kib as f64 / 1024.0,
            sample.hwm_kib as f64 / 1024.0,
            sample.cpu_percent
        );
    }
    println!();
}

struct Sample {
    rss_kib: u64,
    file_kib: u64,
    anon_kib: u64,
    hwm_kib: u64,
    cpu_percent: f64,
}

/// Runs the mapper binary (devices from the edge's retained spec topic) for 10 s of warm-up
/// (after the device reported every property, when an edge is given) and 20 s of measurement.
async fn run_mapper(binary: &Path, broker: &str, data: &Path, edge: Option<&TestEdge>) -> Sample {
    let mut child = tokio::process::Command::new(binary)
        .args(["--node", NODE, "--broker", broker])
        .arg("--data-dir")
        .arg(data.join("mapper-data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("mapper starts");
    let pid = child.id().expect("pid");
    if let Some(edge) = edge {
        edge.wait_for(
            "default/rss",
            Duration::from_secs(60),
            "all 200 reported",
            |d| d.reported.len() == PROPERTIES,
        )
        .await
        .expect("the device reports every property");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu_before, at_before) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let ticks = cpu_ticks(pid) - cpu_before;
    let seconds = at_before.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a field of /proc/PID/status")
    };
    let sample = Sample {
        rss_kib: field("VmRSS:"),
        file_kib: field("RssFile:"),
        anon_kib: field("RssAnon:"),
        hwm_kib: field("VmHWM:"),
        cpu_percent: 100.0 * ticks as f64 / 100.0 / seconds,
    };
    let _ = child.kill().await;
    sample
}

/// utime + stime of a process, in clock ticks (100 per second here).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
