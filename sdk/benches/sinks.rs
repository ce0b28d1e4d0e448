//! The sinks benchmark: one mapper **process** (`edgetwin-mapper-sim` built with `sinks-all`)
//! serving 100 devices × 10 properties read at 10 Hz (every value changes on every read), each
//! property pushing every sample into one sink, in turn: none (the baseline, measured in the
//! same run with the same binary), MQTT, HTTP, OpenTelemetry, Redis, MySQL, InfluxDB v2 and
//! TDengine. Measured on the mapper process: CPU % of one core, RSS at the end and its peak, and
//! from its own metrics the samples delivered, dropped and refused per second.
//!
//! The servers are the tests' (`edgetwin_testkit::servers`): Debian's redis-server and MariaDB,
//! the Python OTLP receiver; the MQTT sink publishes to the in-process broker; HTTP, InfluxDB v2
//! and TDengine go to an in-process HTTP server that answers as each does on success (204, or
//! TDengine's `{"code":0,…}`), so those rows measure the mapper's side only.
//!
//! ```sh
//! cargo build --release -p edgetwin-mapper-sim --features sinks-all
//! cargo bench -p edgetwin-sdk --bench sinks          # BENCH_DEVICES=100 BENCH_SECONDS=15
//! ```

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ChildGuard, clock_ticks, cpu_seconds, env_number, memory_kib, terminate};
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use edgetwin_testkit::free_port;
use edgetwin_testkit::servers::{MariaDb, OtlpReceiver, RedisServer, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

const NODE: &str = "bench";
const PROPERTIES: usize = 10;
const CYCLE_MS: u64 = 100;

fn main() -> ExitCode {
    common::run(bench())
}

/// An HTTP server answering every request with `answer` (after reading it whole), on one
/// connection after another.
async fn answering(answer: &'static str) -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// The model and device `index`, every property pushing to `push` (YAML under `pushMethod:`,
/// indented by 8 spaces; empty for none).
fn device_yaml(index: usize, push: &str) -> String {
    let mut model_props = String::new();
    let mut device_props = String::new();
    for p in 0..PROPERTIES {
        model_props.push_str(&format!(
            "    - name: p{p}\n      type: INT\n      accessMode: ReadOnly\n"
        ));
        device_props.push_str(&format!(
            "    - name: p{p}\n      collectCycle: {CYCLE_MS}\n      reportCycle: {CYCLE_MS}\n      visitors:\n        protocolName: sim\n        configData:\n          register: p{p}\n          step: 1\n"
        ));
        if !push.is_empty() {
            device_props.push_str(&format!("      pushMethod:\n{push}"));
        }
    }
    format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata:\n  name: bench-model\nspec:\n  protocol: sim\n  properties:\n{model_props}---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata:\n  name: dev-{index:03}\nspec:\n  deviceModelRef:\n    name: bench-model\n  nodeName: {NODE}\n  protocol:\n    protocolName: sim\n  properties:\n{device_props}"
    )
}

/// The sum of a metric family's series in the mapper's Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn scrape(port: u16) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text)
}

/// One run's figures.
struct Run {
    cpu_percent: f64,
    rss_kib: u64,
    hwm_kib: u64,
    sent_per_second: f64,
    dropped_per_second: f64,
    rejected: f64,
}

async fn run(
    edge: &TestEdge,
    broker: &str,
    devices: usize,
    push: &str,
    secrets: &Path,
    seconds: u64,
) -> Result<Run, String> {
    for index in 0..devices {
        edge.publish_devices(&device_yaml(index, push))?;
    }
    let metrics_port = free_port().map_err(|e| e.to_string())?;
    let child = Command::new(common::mapper_binary(
        "cargo build --release -p edgetwin-mapper-sim --features sinks-all",
    )?)
    .args(["--node", NODE, "--broker", broker])
    .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
    .arg("--secrets-dir")
    .arg(secrets)
    .env("RUST_LOG", "error")
    .stdin(Stdio::null())
    .spawn()
    .map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));
    for index in 0..devices {
        edge.wait_state(
            &format!("default/dev-{index:03}"),
            "online",
            Duration::from_secs(60),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = clock_ticks();
    let before = scrape(metrics_port).await?;
    let cpu_before = cpu_seconds(pid, ticks)?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid, ticks)? - cpu_before;
    let after = scrape(metrics_port).await?;
    let memory = memory_kib(pid)?;
    let delta = |name: &str| metric_sum(&after, name) - metric_sum(&before, name);
    let mut child = guard.0.take().ok_or("no child")?;
    terminate(&mut child)?;
    Ok(Run {
        cpu_percent: 100.0 * cpu / elapsed,
        rss_kib: memory.rss,
        hwm_kib: memory.hwm,
        sent_per_second: delta("edgetwin_mapper_sink_sent_total") / elapsed,
        dropped_per_second: delta("edgetwin_mapper_sink_dropped_total") / elapsed,
        rejected: delta("edgetwin_mapper_sink_rejected_total"),
    })
}

async fn bench() -> Result<(), String> {
    let devices = env_number("BENCH_DEVICES", 100) as usize;
    let seconds = env_number("BENCH_SECONDS", 15);
    let broker = TestBroker::start(BrokerKind::Embedded).map_err(|e| e.to_string())?;
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let redis = RedisServer::start("sinks bench").ok_or("redis-server is missing")?;
    let mysql = MariaDb::start("sinks bench").ok_or("mariadbd is missing")?;
    let otlp = OtlpReceiver::start("sinks bench").ok_or("the OTLP receiver is missing")?;
    let otel_endpoint = otlp.endpoint();
    // Drain the receiver's output so that it never blocks on a full pipe; dropped (killed) at
    // the end.
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = otlp.next_point(Duration::from_millis(100));
            }
        })
    };
    let no_content: &'static str = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    let http_port = answering(no_content).await?;
    let influx_port = answering(no_content).await?;
    let td_body =
        "{\"code\":0,\"column_meta\":[[\"affected_rows\",\"INT\",4]],\"data\":[[1]],\"rows\":1}";
    let td_answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{td_body}",
            td_body.len()
        )
        .into_boxed_str(),
    );
    let td_port = answering(td_answer).await?;
    let secrets = TempDir::new("bench-secrets");
    for (name, value) in [
        ("EDGETWIN_REDIS_PASSWORD", RedisServer::PASSWORD),
        ("EDGETWIN_MYSQL_PASSWORD", MariaDb::PASSWORD),
        ("EDGETWIN_INFLUXDB2_TOKEN", "bench"),
        ("EDGETWIN_TDENGINE_USERNAME", "root"),
        ("EDGETWIN_TDENGINE_PASSWORD", "taosdata"),
    ] {
        std::fs::write(secrets.path().join(name), value).map_err(|e| e.to_string())?;
    }
    let sinks: Vec<(&str, String)> = vec![
        ("none (baseline)", String::new()),
        (
            "mqtt (own broker, qos 0)",
            "        mqtt: {topic: bench/samples}\n".into(),
        ),
        (
            "http",
            format!(
                "        http: {{hostName: http://127.0.0.1, port: {http_port}, requestPath: /ingest}}\n"
            ),
        ),
        (
            "otel",
            format!("        otel: {{endpointURL: \"{otel_endpoint}\"}}\n"),
        ),
        (
            "dbMethod.redis",
            format!(
                "        dbMethod:\n          redis:\n            redisClientConfig: {{addr: \"{}\"}}\n",
                redis.addr()
            ),
        ),
        (
            "dbMethod.mysql (MariaDB)",
            format!(
                "        dbMethod:\n          mysql:\n            mysqlClientConfig: {{addr: \"{}\", database: {}, userName: {}}}\n",
                mysql.addr(),
                MariaDb::DATABASE,
                MariaDb::USER
            ),
        ),
        (
            "dbMethod.influxdb2",
            format!(
                "        dbMethod:\n          influxdb2:\n            influxdb2ClientConfig: {{url: \"http://127.0.0.1:{influx_port}\", org: o, bucket: b}}\n"
            ),
        ),
        (
            "dbMethod.TDEngine",
            format!(
                "        dbMethod:\n          TDEngine:\n            TDEngineClientConfig: {{addr: \"127.0.0.1:{td_port}\", dbName: bench}}\n"
            ),
        ),
    ];
    let offered = (devices * PROPERTIES) as f64 * 1000.0 / CYCLE_MS as f64;
    println!(
        "\nsinks benchmark: {devices} devices × {PROPERTIES} properties read every {CYCLE_MS} ms \
         (≈ {offered:.0} samples/s into the sink), {seconds} s measured per run\n"
    );
    println!(
        "| sink | CPU (one core = 100 %) | × baseline | RSS at end | peak RSS | × baseline (RSS) | delivered/s | dropped/s | refused |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut baseline: Option<Run> = None;
    for (name, push) in &sinks {
        let measured = run(
            &edge,
            &broker.addr().to_string(),
            devices,
            push,
            secrets.path(),
            seconds,
        )
        .await?;
        let base = baseline.as_ref().unwrap_or(&measured);
        println!(
            "| {name} | {:.1} % | {:.2} | {:.2} MiB | {:.2} MiB | {:.2} | {:.0} | {:.0} | {:.0} |",
            measured.cpu_percent,
            measured.cpu_percent / base.cpu_percent,
            measured.rss_kib as f64 / 1024.0,
            measured.hwm_kib as f64 / 1024.0,
            measured.rss_kib as f64 / base.rss_kib as f64,
            measured.sent_per_second,
            measured.dropped_per_second,
            measured.rejected,
        );
        if baseline.is_none() {
            baseline = Some(measured);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
    Ok(())
}
