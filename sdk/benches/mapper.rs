//! The mapper benchmark: one mapper **process** with the simulated driver serving 100 devices ×
//! 10 properties collected and reported at 10 Hz (every value changes on every read), against
//! the in-process broker and the in-test edge of this process. Measured on the mapper process:
//! RSS (VmRSS, VmHWM), CPU % of one core, reported messages and values per second, and the
//! latency from a desired value sent by the edge to the simulated device's write (p50/p99/max)
//! and to the reported value arriving back at the edge.
//!
//! The baseline, measured in the same run against the same broker and edge: a bare MQTT client
//! process (this bench binary again, in raw mode: one current-thread tokio runtime and rumqttc,
//! no SDK) that publishes the same traffic — one `twin/update` with the 10 values per device
//! every 100 ms — and notes when each delta arrives. Its RSS, CPU and delta-arrival latency are
//! the floor that MQTT itself costs; the bench prints the mapper's figures as ratios of it.
//!
//! ```sh
//! cargo build --release -p edgetwin-mapper-sim
//! cargo bench -p edgetwin-sdk --bench mapper            # BENCH_DEVICES=100 BENCH_SECONDS=30
//! ```
//!
//! The mapper is `edgetwin-mapper-sim` (mappers/sim), a mapper binary like any other (the SDK's
//! command line and runtime) over the simulated driver, built without the SDK's dev-dependencies;
//! on SIGTERM it writes the driver's write log (wall-clock stamps) to a file, which gives the
//! delta → write latencies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    ChildGuard, Memory, MemoryField, clock_ticks, cpu_seconds, env_number, memory_kib, terminate,
};
use edgetwin_sdk::testkit::{BrokerKind, EdgeDevice, TestBroker, TestEdge};

mod common;

const NODE: &str = "bench";
const PROPERTIES: usize = 10;
const CYCLE_MS: u64 = 100;
/// Desired values sent per second during the measurement.
const DESIRED_PER_SECOND: u64 = 20;

/// Set (to the broker address) in the raw baseline process.
const RAW_ENV: &str = "EDGETWIN_BENCH_RAW_BROKER";
/// Where the raw baseline process writes its delta arrival log at SIGTERM.
const RAW_LOG_ENV: &str = "EDGETWIN_BENCH_RAW_LOG";

fn main() -> ExitCode {
    if let Some(broker) = std::env::var_os(RAW_ENV) {
        return raw::main(&broker.to_string_lossy());
    }
    common::run(bench())
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

/// What one measured process did.
struct Measurement {
    memory: Memory,
    cpu_percent: f64,
    updates_per_second: f64,
    values_per_second: f64,
    /// Delta sent → written to the device (mapper) or received (raw client).
    to_write: Vec<Duration>,
    /// Delta sent → the value reported back at the edge.
    to_report: Vec<Duration>,
}

/// Runs `command` (a process publishing for `ids`), waits until every device is online, sends
/// desired values for `seconds`, then stops it with SIGTERM and reads its write log `log`.
async fn measure(
    edge: &TestEdge,
    ids: &[String],
    mut command: Command,
    log: &Path,
    seconds: u64,
) -> Result<Measurement, String> {
    let child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));
    for id in ids {
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
        // Distinct from every earlier run's values, so each is a change.
        let value = (u64::from(pid) * 1_000_000 + n).to_string();
        let at = edge.set_desired(id, "p0", &value);
        sent.push((id.clone(), value, at));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid, ticks)? - cpu_before;
    let memory = memory_kib(pid)?;
    let mut reports = 0;
    let mut values = 0;
    for (id, before) in ids.iter().zip(&reports_before) {
        let device = edge.device(id);
        let window = device.reports.get(*before..).unwrap_or_default();
        reports += window.len();
        values += window.iter().map(|r| r.values.len()).sum::<usize>();
    }

    // Let the last desired values land, then stop the process for its write log.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut child = guard.0.take().ok_or("no child")?;
    terminate(&mut child)?;
    let writes = read_writes(log)?;
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
    Ok(Measurement {
        memory,
        cpu_percent: 100.0 * cpu / elapsed,
        updates_per_second: reports as f64 / elapsed,
        values_per_second: values as f64 / elapsed,
        to_write,
        to_report,
    })
}

fn p99_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, 99.0).as_secs_f64() * 1e3
}

async fn bench() -> Result<(), String> {
    let devices = env_number("BENCH_DEVICES", 100) as usize;
    let seconds = env_number("BENCH_SECONDS", 30);
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .map_err(|e| e.to_string())?;
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let ids: Vec<String> = (0..devices)
        .map(|i| format!("default/dev-{i:03}"))
        .collect();
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;

    let raw_log = scratch.path().join("raw.tsv");
    let mut raw = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    raw.env(RAW_ENV, broker.addr().to_string())
        .env(RAW_LOG_ENV, &raw_log)
        .env("BENCH_DEVICES", devices.to_string());
    let baseline = measure(&edge, &ids, raw, &raw_log, seconds).await?;

    for index in 0..devices {
        edge.publish_devices(&device_yaml(index))?;
    }
    let writes_file: PathBuf = scratch.path().join("writes.tsv");
    let mut mapper = Command::new(common::mapper_binary(
        "cargo build --release -p edgetwin-mapper-sim",
    )?);
    mapper
        .args(["--node", NODE, "--broker", &broker.addr().to_string()])
        .env("EDGETWIN_SIM_WRITE_LOG", &writes_file)
        .env("RUST_LOG", "warn");
    let measured = measure(&edge, &ids, mapper, &writes_file, seconds).await?;

    println!(
        "\nmapper benchmark: {devices} devices × {PROPERTIES} properties, collect and report every {CYCLE_MS} ms, \
         {DESIRED_PER_SECOND} desired values/s, {seconds} s measured per process\n"
    );
    println!(
        "| metric | mapper (sim driver) | raw MQTT client | mapper / raw |\n|---|---|---|---|"
    );
    let row = |name: &str, mapper: f64, raw: f64, unit: &str, digits: usize| {
        println!(
            "| {name} | {mapper:.digits$} {unit} | {raw:.digits$} {unit} | {:.2} |",
            if raw > 0.0 { mapper / raw } else { f64::NAN }
        );
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let memory_rows: [(&str, MemoryField); 4] = [
        ("RSS at end (VmRSS)", |m| m.rss),
        ("peak RSS (VmHWM)", |m| m.hwm),
        ("of which heap and stacks (RssAnon)", |m| m.anon),
        ("of which binary and libraries (RssFile)", |m| m.file),
    ];
    for (name, field) in memory_rows {
        row(
            name,
            mib(field(&measured.memory)),
            mib(field(&baseline.memory)),
            "MiB",
            2,
        );
    }
    row(
        "CPU (one core = 100 %)",
        measured.cpu_percent,
        baseline.cpu_percent,
        "%",
        1,
    );
    row(
        "twin/update messages/s",
        measured.updates_per_second,
        baseline.updates_per_second,
        "",
        0,
    );
    row(
        "reported values/s",
        measured.values_per_second,
        baseline.values_per_second,
        "",
        0,
    );
    row(
        "delta sent → write (raw: received) p99",
        p99_ms(&measured.to_write),
        p99_ms(&baseline.to_write),
        "ms",
        2,
    );
    row(
        "delta sent → value reported at the edge p99",
        p99_ms(&measured.to_report),
        p99_ms(&baseline.to_report),
        "ms",
        2,
    );
    println!("\n| mapper latency | samples | p50 | p99 | max |\n|---|---|---|---|---|");
    println!(
        "{}",
        summary("delta sent → device write", measured.to_write)
    );
    println!(
        "{}",
        summary(
            "delta sent → reported value at the edge",
            measured.to_report
        )
    );
    println!(
        "{}",
        summary("raw client: delta sent → received", baseline.to_write)
    );
    Ok(())
}

/// The baseline: a bare MQTT client doing the mapper's MQTT work for `BENCH_DEVICES` devices.
mod raw {
    use std::collections::HashMap;
    use std::fmt::Write as _;
    use std::process::ExitCode;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use edgetwin_model::wire::topic::DeviceEvent;
    use edgetwin_model::wire::{DeviceId, Topic};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use serde_json::json;

    use super::{CYCLE_MS, PROPERTIES, RAW_LOG_ENV, env_number};

    pub fn main(broker: &str) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("raw client: cannot start tokio: {err}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(run(broker)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("raw client failed: {err}");
                ExitCode::FAILURE
            }
        }
    }

    fn topic(id: &str, event: DeviceEvent) -> Result<String, String> {
        let id = DeviceId::parse(id).map_err(|e| e.to_string())?;
        Ok(Topic::Device { id, event }.to_string())
    }

    fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    async fn run(broker: &str) -> Result<(), String> {
        let (host, port) = broker.rsplit_once(':').ok_or("broker is not host:port")?;
        let port: u16 = port.parse().map_err(|_| "bad broker port")?;
        let devices = env_number("BENCH_DEVICES", 100) as usize;
        let log_path = std::env::var_os(RAW_LOG_ENV).ok_or("no log path")?;
        let mut options = MqttOptions::new("bench-raw", host, port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        // The event loop in its own task (as the SDK runs it), handing deltas to the main loop.
        let (deltas_tx, mut deltas_rx) = tokio::sync::mpsc::channel(1024);
        let connection = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if deltas_tx.send(publish).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    // After the disconnect at the end, the closed connection is the end.
                    Err(_) if deltas_tx.is_closed() => return Ok(()),
                    Err(err) => return Err(format!("connection lost: {err}")),
                }
            }
        });
        let ids: Vec<String> = (0..devices)
            .map(|i| format!("default/dev-{i:03}"))
            .collect();
        let mut updates = Vec::new();
        // Delta topic → index of the device.
        let mut deltas = HashMap::new();
        for (index, id) in ids.iter().enumerate() {
            updates.push(topic(id, DeviceEvent::TwinUpdate)?);
            deltas.insert(topic(id, DeviceEvent::TwinUpdateDelta)?, index);
            client
                .subscribe(topic(id, DeviceEvent::TwinUpdateDelta)?, QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
            let state = json!({"event_id": "", "timestamp": now_ms(), "state": "online"});
            client
                .publish(
                    topic(id, DeviceEvent::StateUpdate)?,
                    QoS::AtLeastOnce,
                    false,
                    state.to_string(),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut p0 = vec![String::from("0"); devices];
        let mut log = String::new();
        let mut tick = tokio::time::interval(Duration::from_millis(CYCLE_MS));
        let mut counter: u64 = 0;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tick.tick() => {
                    counter += 1;
                    let stamp = now_ms();
                    for (index, topic) in updates.iter().enumerate() {
                        let mut twin = serde_json::Map::new();
                        for p in 0..PROPERTIES {
                            let value = if p == 0 { p0[index].clone() } else { counter.to_string() };
                            twin.insert(format!("p{p}"), json!({
                                "actual": {"value": value, "metadata": {"timestamp": stamp}},
                                "metadata": {"type": "int"},
                            }));
                        }
                        let update = json!({"event_id": "", "timestamp": stamp, "twin": twin});
                        // Like the mapper: dropped (not awaited) when the client buffer is full.
                        let _ = client.try_publish(topic, QoS::AtMostOnce, false, update.to_string());
                    }
                }
                publish = deltas_rx.recv() => {
                    let Some(publish) = publish else {
                        return Err("the connection task ended".into());
                    };
                    let Some(&index) = deltas.get(publish.topic.as_str()) else { continue };
                    let delta: serde_json::Value = serde_json::from_slice(&publish.payload)
                        .map_err(|e| e.to_string())?;
                    if let Some(value) = delta.pointer("/delta/p0").and_then(|v| v.as_str()) {
                        let nanos = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos());
                        let _ = writeln!(log, "{}\tp0\t{value}\t{nanos}", ids[index]);
                        p0[index] = value.to_owned();
                    }
                }
            }
        }
        std::fs::write(&log_path, log).map_err(|e| e.to_string())?;
        // Like the mapper's shutdown: every device offline, delivered before exiting.
        let mut states = Vec::new();
        for id in &ids {
            states.push(topic(id, DeviceEvent::StateUpdate)?);
        }
        for state_topic in states {
            let state = json!({"event_id": "", "timestamp": now_ms(), "state": "offline"});
            client
                .publish(state_topic, QoS::AtLeastOnce, false, state.to_string())
                .await
                .map_err(|e| e.to_string())?;
        }
        // The disconnect goes out after the queued states; the connection task then ends.
        drop(deltas_rx);
        client.disconnect().await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), connection).await {
            Ok(Ok(Ok(()))) | Ok(Ok(Err(_))) => {}
            Ok(Err(join)) => return Err(join.to_string()),
            Err(_) => return Err("the connection did not close within 5 s".into()),
        }
        Ok(())
    }
}
