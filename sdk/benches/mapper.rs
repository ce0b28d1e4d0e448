//! The mapper benchmark: one mapper **process** with the simulated driver serving 100 devices ×
//! 10 properties collected and reported at 10 Hz (every value changes on every read), against
//! the in-process broker and the in-test edge of this process. Measured on the mapper process:
//! RSS (VmRSS, VmHWM), CPU % of one core, reported messages and values per second, and the
//! latency from a desired value sent by the edge to the simulated device's write (p50/p99/max)
//! and to the reported value arriving back at the edge.
//!
//! ```sh
//! cargo build --release -p edgetwin-sdk --features sim --example sim_mapper
//! cargo bench -p edgetwin-sdk --bench mapper            # BENCH_DEVICES=100 BENCH_SECONDS=30
//! ```
//!
//! The mapper is the `sim_mapper` example, a mapper binary like any other (the SDK's command line
//! and runtime) over the simulated driver; on SIGTERM it writes the driver's write log
//! (wall-clock stamps) to a file, which gives the delta → write latencies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgetwin_core::wire;
use edgetwin_core::wire::payload::DeviceSpecMessage;
use edgetwin_sdk::testkit::{EdgeDevice, TestBroker, TestEdge};

const NODE: &str = "bench";
const PROPERTIES: usize = 10;
const CYCLE_MS: u64 = 100;
/// Desired values sent per second during the measurement.
const DESIRED_PER_SECOND: u64 = 20;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The mapper binary: `EDGETWIN_BENCH_MAPPER`, or the `sim_mapper` example next to this bench
/// (`target/release/examples/sim_mapper`).
fn mapper_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("EDGETWIN_BENCH_MAPPER") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the bench is not in target/release/deps")?;
    let example = release.join("examples").join("sim_mapper");
    if example.is_file() {
        Ok(example)
    } else {
        Err(format!(
            "{} not found: build it first with \
             `cargo build --release -p edgetwin-sdk --features sim --example sim_mapper`",
            example.display()
        ))
    }
}

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The YAML of the model and of device `index`.
fn device_yaml(index: usize) -> String {
    let mut model_props = String::new();
    let mut device_props = String::new();
    for p in 0..PROPERTIES {
        let (access, step) = if p == 0 {
            ("ReadWrite", "")
        } else {
            ("ReadOnly", "\n          step: 1")
        };
        model_props.push_str(&format!(
            "    - name: p{p}\n      type: INT\n      accessMode: {access}\n"
        ));
        device_props.push_str(&format!(
            "    - name: p{p}\n      collectCycle: {CYCLE_MS}\n      reportCycle: {CYCLE_MS}\n      visitors:\n        protocolName: sim\n        configData:\n          register: p{p}{step}\n"
        ));
    }
    format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata:\n  name: bench-model\nspec:\n  protocol: sim\n  properties:\n{model_props}---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata:\n  name: dev-{index:03}\nspec:\n  deviceModelRef:\n    name: bench-model\n  nodeName: {NODE}\n  protocol:\n    protocolName: sim\n  properties:\n{device_props}"
    )
}

fn spec_payload(yaml: &str) -> Result<Vec<u8>, String> {
    let docs = edgetwin_core::model::load::from_str(yaml, "<bench>").map_err(|e| e.to_string())?;
    let mut device = None;
    let mut model = None;
    for doc in docs {
        match doc.manifest {
            edgetwin_core::model::load::Manifest::Device(d) => device = Some(d),
            edgetwin_core::model::load::Manifest::DeviceModel(m) => model = Some(m),
        }
    }
    let device = device.ok_or("no device")?;
    wire::encode(&DeviceSpecMessage { device, model }).map_err(|e| e.to_string())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| "bad stat field".to_owned())
    };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 (after pid, comm, state).
    Ok((ticks(11)? + ticks(12)?) / ticks_per_second)
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64), String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        samples.len(),
        percentile(&samples, 50.0).as_secs_f64() * 1e3,
        percentile(&samples, 99.0).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    )
}

/// Kills the child by pid when the bench fails half-way.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn terminate(child: &mut Child) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("kill -TERM failed".into());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().map_err(|e| e.to_string())? {
            return if exit.success() {
                Ok(())
            } else {
                Err(format!("the mapper exited with {exit}"))
            };
        }
        if Instant::now() > deadline {
            return Err("the mapper did not exit within 15 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_writes(path: &Path) -> Result<HashMap<(String, String), SystemTime>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writes = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if let [device, "p0", value, nanos] = fields.as_slice() {
            let nanos: u64 = nanos.parse().map_err(|_| format!("bad line {line:?}"))?;
            writes
                .entry(((*device).to_owned(), (*value).to_owned()))
                .or_insert(UNIX_EPOCH + Duration::from_nanos(nanos));
        }
    }
    Ok(writes)
}

async fn bench() -> Result<(), String> {
    let devices = env_number("BENCH_DEVICES", 100) as usize;
    let seconds = env_number("BENCH_SECONDS", 30);
    let broker = TestBroker::start().await.map_err(|e| e.to_string())?;
    let edge = TestEdge::start(&broker.addr(), NODE).await;
    for index in 0..devices {
        let payload = spec_payload(&device_yaml(index))?;
        edge.publish_spec("default", &format!("dev-{index:03}"), payload);
    }
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let writes_file: PathBuf = scratch.path().join("writes.tsv");
    let child = Command::new(mapper_binary()?)
        .args(["--node", NODE, "--broker", &broker.addr().to_string()])
        .env("EDGETWIN_SIM_WRITE_LOG", &writes_file)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));

    let ids: Vec<String> = (0..devices)
        .map(|i| format!("default/dev-{i:03}"))
        .collect();
    for id in &ids {
        edge.wait_state(id, "online", Duration::from_secs(60))
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ticks = clock_ticks();
    let reports_before: Vec<usize> = ids.iter().map(|id| edge.device(id).reports.len()).collect();
    let cpu_before = cpu_seconds(pid, ticks)?;
    let started = Instant::now();
    let mut sent: Vec<(String, String, SystemTime)> = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(1000 / DESIRED_PER_SECOND));
    let mut n: u64 = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        interval.tick().await;
        n += 1;
        let id = &ids[n as usize % ids.len()];
        let value = (1000 + n).to_string();
        let at = edge.set_desired(id, "p0", &value);
        sent.push((id.clone(), value, at));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid, ticks)? - cpu_before;
    let (rss, hwm) = memory_kib(pid)?;
    let mut reports = 0;
    let mut values = 0;
    for (id, before) in ids.iter().zip(&reports_before) {
        let device = edge.device(id);
        let window = device.reports.get(*before..).unwrap_or_default();
        reports += window.len();
        values += window.iter().map(|r| r.values.len()).sum::<usize>();
    }

    // Let the last desired values land, then stop the mapper for its write log.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut child = guard.0.take().ok_or("no child")?;
    terminate(&mut child)?;
    let writes = read_writes(&writes_file)?;
    let finished: HashMap<&str, EdgeDevice> = ids
        .iter()
        .map(|id| (id.as_str(), edge.device(id)))
        .collect();
    let mut to_write = Vec::new();
    let mut to_report = Vec::new();
    for (id, value, at) in &sent {
        if let Some(written) = writes.get(&(id.clone(), value.clone())) {
            to_write.push(written.duration_since(*at).unwrap_or_default());
        }
        let reported = finished.get(id.as_str()).and_then(|device| {
            device
                .reports
                .iter()
                .find(|r| r.at >= *at && r.values.get("p0") == Some(value))
        });
        if let Some(report) = reported {
            to_report.push(report.at.duration_since(*at).unwrap_or_default());
        }
    }
    println!(
        "\nmapper benchmark: {devices} devices × {PROPERTIES} properties, collect and report every {CYCLE_MS} ms, {seconds} s measured\n"
    );
    println!("| metric | value |\n|---|---|");
    println!("| RSS at end (VmRSS) | {:.2} MiB |", rss as f64 / 1024.0);
    println!("| peak RSS (VmHWM) | {:.2} MiB |", hwm as f64 / 1024.0);
    println!(
        "| CPU (one core = 100 %) | {:.1} % |",
        100.0 * cpu / elapsed
    );
    println!(
        "| twin/update messages per second | {:.0} |",
        reports as f64 / elapsed
    );
    println!(
        "| reported values per second | {:.0} |",
        values as f64 / elapsed
    );
    println!(
        "| desired values sent | {} ({DESIRED_PER_SECOND}/s) |",
        sent.len()
    );
    println!("\n| latency | samples | p50 | p99 | max |\n|---|---|---|---|---|");
    println!("{}", summary("delta sent → device write", to_write));
    println!(
        "{}",
        summary("delta sent → reported value at the edge", to_report)
    );
    Ok(())
}
