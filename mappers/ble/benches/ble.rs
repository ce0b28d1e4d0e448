//! The BLE mapper benchmark, through the whole stack with BlueZ's D-Bus API mocked
//! (python-dbusmock on a private dbus-daemon, as in the tests): notification → D-Bus signal →
//! mapper process (bluer, the SDK runtime) → MQTT → the testkit's edge.
//!
//! 1. Latency: the peer notifies device 0's temperature, one value at a time, `BENCH_SAMPLES`
//!    times (default 200); latency is from the peer's emit (its clock) to the `twin/update`
//!    arriving at the edge (p50/p99/max). Device 0 reports every 1 ms, so the report cycle adds
//!    at most 1 ms.
//! 2. Steady state: `BENCH_DEVICES` devices (default 20), each notifying once a second and
//!    polled once a second, for `BENCH_SECONDS` (default 20): RSS (VmRSS, VmHWM) and CPU of the
//!    mapper process.
//!
//! The baseline, measured in the same run against the same peer, broker and edge: this bench
//! binary again in raw mode, one current-thread tokio runtime with bluer and rumqttc and nothing
//! else: it connects the same devices, subscribes to the same characteristic and publishes each
//! notified value as a `twin/update` at once (no SDK, no polling, no pipeline, no device state).
//!
//! ```sh
//! cargo bench -p edgetwin-mapper-ble      # BENCH_DEVICES=20 BENCH_SAMPLES=200 BENCH_SECONDS=20
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use support::{BluezPeer, PrivateBus};

const NODE: &str = "bench";
const SERVICE: &str = "0000181a-0000-1000-8000-00805f9b34fb";
const TEMPERATURE: &str = "00002a6e-0000-1000-8000-00805f9b34fb";
const LEVEL: &str = "f000aa66-0451-4000-b000-000000000000";
/// Set (to the broker address) in the raw baseline process.
const RAW_ENV: &str = "EDGETWIN_BENCH_RAW_BROKER";
const RAW_DEVICES_ENV: &str = "EDGETWIN_BENCH_RAW_DEVICES";
const WAIT: Duration = Duration::from_secs(30);

fn env_number(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn address(index: usize) -> String {
    format!("AA:BB:CC:00:00:{index:02X}")
}

fn id(index: usize) -> String {
    format!("default/thermo-{index:03}")
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match std::env::var(RAW_ENV) {
        Ok(broker) => runtime.block_on(raw::main(broker, env_number(RAW_DEVICES_ENV, 1))),
        Err(_) => runtime.block_on(bench()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The Device YAML of device `index`: device 0 reports every 1 ms, the others every second.
fn device_yaml(index: usize) -> String {
    let report = if index == 0 { 1 } else { 1000 };
    format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: thermo-{index:03}, namespace: default}}\nspec:\n  deviceModelRef: {{name: thermo-model}}\n  nodeName: {NODE}\n  protocol:\n    protocolName: bluetooth\n    configData: {{macAddress: \"{}\"}}\n  properties:\n    - name: temperature\n      collectCycle: 60000\n      reportCycle: {report}\n      visitors: {{protocolName: bluetooth, configData: {{characteristicUUID: 2a6e, dataType: int16}}}}\n    - name: level\n      collectCycle: 1000\n      reportCycle: 1000\n      visitors: {{protocolName: bluetooth, configData: {{characteristicUUID: {LEVEL}, dataType: uint16}}}}\n",
        address(index)
    )
}

const MODEL: &str = "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {name: thermo-model, namespace: default}\nspec:\n  protocol: bluetooth\n  properties:\n    - {name: temperature, type: INT, accessMode: ReadOnly}\n    - {name: level, type: INT, accessMode: ReadWrite}\n";

/// What one subject (the mapper, or the raw baseline) measured.
struct Figures {
    latencies_ms: Vec<f64>,
    rss_kib: u64,
    hwm_kib: u64,
    /// RssAnon: heap and stacks.
    anon_kib: u64,
    /// RssFile: the binary's and the libraries' resident pages.
    file_kib: u64,
    cpu_percent: f64,
}

async fn bench() -> Result<(), String> {
    if !support::peers_installed() {
        return Err("the peers are missing (cargo xtask provision)".into());
    }
    let devices = env_number("BENCH_DEVICES", 20).max(1);
    let samples = env_number("BENCH_SAMPLES", 200).max(1);
    let seconds = env_number("BENCH_SECONDS", 20).max(1);
    let bus = PrivateBus::start();
    let mut peer = BluezPeer::start_on(Some(&bus.address)).await;
    for index in 0..devices {
        peer.device(
            "hci0",
            &address(index),
            &format!("Thermo-{index}"),
            SERVICE,
            &[
                (TEMPERATURE, &["read", "notify"], &[0, 0]),
                (LEVEL, &["read", "write"], &[1, 0]),
            ],
        )
        .await;
    }
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .map_err(|e| e.to_string())?;
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("model.yaml"), MODEL).map_err(|e| e.to_string())?;
    for index in 0..devices {
        std::fs::write(
            dir.path().join(format!("device-{index:03}.yaml")),
            device_yaml(index),
        )
        .map_err(|e| e.to_string())?;
    }

    let mapper = Command::new(env!("CARGO_BIN_EXE_edgetwin-mapper-ble"))
        .args(["--node", NODE, "--broker", &broker.addr().to_string()])
        .args(["--max-connections", &devices.to_string(), "--devices"])
        .arg(dir.path())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("the mapper does not start: {e}"))?;
    let mapper_figures = measure(
        "mapper", mapper, &mut peer, &edge, devices, samples, seconds, 0,
    )
    .await?;

    let raw = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(RAW_ENV, broker.addr().to_string())
        .env(RAW_DEVICES_ENV, devices.to_string())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("the raw baseline does not start: {e}"))?;
    let raw_figures = measure("raw", raw, &mut peer, &edge, devices, samples, seconds, 1).await?;

    let (m, r) = (&mapper_figures, &raw_figures);
    println!(
        "\nBLE mapper benchmark: {devices} devices, {samples} latency samples, {seconds} s steady state"
    );
    println!("| | mapper | raw bluer + rumqttc (baseline) | ratio |");
    println!("|---|---|---|---|");
    for (name, pick) in [("p50", 0.50), ("p99", 0.99), ("max", 1.0)] {
        let (a, b) = (
            percentile(&m.latencies_ms, pick),
            percentile(&r.latencies_ms, pick),
        );
        println!(
            "| notification → reported {name} | {a:.2} ms | {b:.2} ms | {:.2} |",
            a / b
        );
    }
    println!(
        "| RSS (VmRSS) | {:.2} MiB | {:.2} MiB | {:.2} |",
        mib(m.rss_kib),
        mib(r.rss_kib),
        m.rss_kib as f64 / r.rss_kib as f64
    );
    println!(
        "| peak RSS (VmHWM) | {:.2} MiB | {:.2} MiB | {:.2} |",
        mib(m.hwm_kib),
        mib(r.hwm_kib),
        m.hwm_kib as f64 / r.hwm_kib as f64
    );
    for (name, a, b) in [
        ("of which heap and stacks (RssAnon)", m.anon_kib, r.anon_kib),
        (
            "of which binary and libraries (RssFile)",
            m.file_kib,
            r.file_kib,
        ),
    ] {
        println!(
            "| {name} | {:.2} MiB | {:.2} MiB | {:.2} |",
            mib(a),
            mib(b),
            a as f64 / b as f64
        );
    }
    println!(
        "| CPU (one core) | {:.2} % | {:.2} % | {:.2} |",
        m.cpu_percent,
        r.cpu_percent,
        m.cpu_percent / r.cpu_percent.max(0.001)
    );
    peer.kill().await;
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the latency and steady-state phases against `child`, then stops it with SIGTERM.
#[allow(clippy::too_many_arguments)]
async fn measure(
    name: &str,
    mut child: Child,
    peer: &mut BluezPeer,
    edge: &TestEdge,
    devices: usize,
    samples: usize,
    seconds: usize,
    round: i16,
) -> Result<Figures, String> {
    let pid = child.id();
    let result = async {
        // Connected and subscribed: every device's notification reaches the edge.
        let ready = Instant::now();
        for index in 0..devices {
            let value = 30_000 + round * 100 + index as i16;
            loop {
                peer.notify(&address(index), TEMPERATURE, &value.to_le_bytes())
                    .await;
                let done = edge
                    .wait_reported(
                        &id(index),
                        "temperature",
                        &value.to_string(),
                        Duration::from_millis(1500),
                    )
                    .await;
                if done.is_ok() {
                    break;
                }
                if ready.elapsed() > WAIT {
                    return Err(format!(
                        "{name}: {} never reported a notification",
                        id(index)
                    ));
                }
            }
        }
        eprintln!(
            "{name}: {devices} devices subscribed after {:?}",
            ready.elapsed()
        );
        let mut latencies_ms = Vec::with_capacity(samples);
        for k in 0..samples {
            let value = (k as i16 + 1) * if round == 0 { 1 } else { -1 };
            let (emitted, _) = peer
                .notify(&address(0), TEMPERATURE, &value.to_le_bytes())
                .await;
            let device = edge
                .wait_reported(
                    &id(0),
                    "temperature",
                    &value.to_string(),
                    Duration::from_secs(5),
                )
                .await?;
            let arrived = device
                .reports
                .iter()
                .rev()
                .find(|r| r.values.get("temperature") == Some(&value.to_string()))
                .map(|r| unix_seconds(r.at))
                .ok_or("the report is missing")?;
            latencies_ms.push((arrived - emitted) * 1000.0);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ticks = clock_ticks();
        let cpu_start = cpu_seconds(pid, ticks)?;
        let started = Instant::now();
        for second in 0..seconds {
            let tick = started + Duration::from_secs(second as u64);
            tokio::time::sleep_until(tick.into()).await;
            for index in 0..devices {
                let value = (second as i16) * 10 + index as i16;
                peer.notify(&address(index), TEMPERATURE, &value.to_le_bytes())
                    .await;
            }
        }
        tokio::time::sleep_until((started + Duration::from_secs(seconds as u64)).into()).await;
        let cpu = cpu_seconds(pid, ticks)? - cpu_start;
        let [rss_kib, hwm_kib, anon_kib, file_kib] = memory_kib(pid)?;
        Ok(Figures {
            latencies_ms,
            rss_kib,
            hwm_kib,
            anon_kib,
            file_kib,
            cpu_percent: 100.0 * cpu / started.elapsed().as_secs_f64(),
        })
    }
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.wait();
    result
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn percentile(values: &[f64], pick: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * pick).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

/// VmRSS, VmHWM, RssAnon and RssFile of a process, in KiB.
fn memory_kib(pid: u32) -> Result<[u64; 4], String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok([
        field("VmRSS:")?,
        field("VmHWM:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
    ])
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // After the state letter: utime and stime are the 11th and 12th numbers.
    match (fields.get(10), fields.get(11)) {
        (Some(user), Some(system)) => Ok((user + system) / ticks_per_second),
        _ => Err("bad stat".into()),
    }
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

/// The baseline: bluer and rumqttc only.
mod raw {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use bluer::{Address, Session, Uuid};
    use futures::StreamExt;
    use rumqttc::{AsyncClient, MqttOptions, QoS};

    use super::{TEMPERATURE, address, id};

    pub async fn main(broker: String, devices: usize) -> Result<(), String> {
        let (host, port) = broker.rsplit_once(':').ok_or("broker is host:port")?;
        let port: u16 = port.parse().map_err(|_| "bad port")?;
        let options = MqttOptions::new(format!("raw-ble-{}", std::process::id()), host, port);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let session = Session::new().await.map_err(|e| e.to_string())?;
        let adapter = session.default_adapter().await.map_err(|e| e.to_string())?;
        let wanted: Uuid = TEMPERATURE.parse().map_err(|_| "uuid")?;
        for index in 0..devices {
            let address: Address = address(index).parse().map_err(|_| "address")?;
            let device = adapter.device(address).map_err(|e| e.to_string())?;
            device.connect().await.map_err(|e| e.to_string())?;
            let mut found = None;
            for service in device.services().await.map_err(|e| e.to_string())? {
                for characteristic in service.characteristics().await.map_err(|e| e.to_string())? {
                    if characteristic.uuid().await.map_err(|e| e.to_string())? == wanted {
                        found = Some(characteristic);
                    }
                }
            }
            let characteristic = found.ok_or("no temperature characteristic")?;
            let values = characteristic.notify().await.map_err(|e| e.to_string())?;
            let topic = format!("$hw/events/device/{}/twin/update", id(index));
            let client = client.clone();
            tokio::spawn(async move {
                let mut values = std::pin::pin!(values);
                while let Some(value) = values.next().await {
                    let Some(bytes) = value.get(..2) else {
                        continue;
                    };
                    let number = i16::from_le_bytes([bytes[0], bytes[1]]);
                    let stamp = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let update = serde_json::json!({"event_id": "", "timestamp": stamp, "twin": {
                        "temperature": {"actual": {"value": number.to_string(),
                                                   "metadata": {"timestamp": stamp}},
                                        "metadata": {"type": "int"}}}});
                    let _ = client.try_publish(&topic, QoS::AtMostOnce, false, update.to_string());
                }
            });
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        term.recv().await;
        let _ = client.disconnect().await;
        Ok(())
    }
}
