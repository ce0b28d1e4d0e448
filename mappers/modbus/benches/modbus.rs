//! Modbus benchmarks against our simulator (`modbus-sim`, a separate process), printed as
//! Markdown for BENCHMARKS.md:
//!
//! 1. **Coalescing**: 100 adjacent holding-register properties on one device over TCP: requests
//!    per cycle (counted by the simulator) and properties read per second, coalesced reads
//!    against a naive one-request-per-property loop, in the same run.
//! 2. **Dead slave on an RTU line**: 10 devices on one line (a socat pty pair), each read every
//!    100 ms, with every unit answering and then with one unit dead: the healthy devices'
//!    cycle times. Device tasks follow the runtime's policy (the SDK's circuit breaker: 3
//!    failed cycles open it, reconnect probes back off from 0.5 s to 30 s).
//!
//! Run: `cargo bench -p edgetwin-mapper-modbus` (needs socat for part 2).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_mapper_modbus::config::{ProtocolConfig, VisitorConfig};
use edgetwin_sdk::breaker::{Backoff, CircuitBreaker};
use edgetwin_sdk::{DeviceConfig, Driver, Point, Session};
use serde_json::json;
use support::{Peer, PtyPair, adjacent_registers, device, have_socat};
use tokio::time::Instant;

/// How long each measured phase runs.
const PHASE: Duration = Duration::from_secs(5);
/// The RTU phases run longer, so that the breaker's backoff shows.
const RTU_PHASE: Duration = Duration::from_secs(20);
/// Collect cycle of the RTU devices.
const RTU_CYCLE: Duration = Duration::from_millis(100);
/// Per-request timeout of the RTU devices (the default), and a shorter one.
const RTU_TIMEOUTS_MS: [u64; 2] = [1000, 250];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("## Modbus (`cargo bench -p edgetwin-mapper-modbus`)\n");
    coalescing().await;
    if have_socat() {
        dead_slave().await;
    }
}

type Config = DeviceConfig<ProtocolConfig, VisitorConfig>;

fn hundred_registers(port: u16) -> Config {
    device(
        "hundred",
        json!({"ip": "127.0.0.1", "port": port}),
        &adjacent_registers(100),
    )
}

struct Phase {
    cycles: u64,
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn coalescing() {
    let mut sim = Peer::sim(&["--tcp", "127.0.0.1:0", "--size", "1000"]).await;
    let config = hundred_registers(sim.addr().port());
    let driver = ModbusDriver::new();
    let mut session = driver.connect(&config).await.expect("simulator answers");
    let points: Vec<&Point<VisitorConfig>> = config.points.iter().collect();

    sim.command("reset").await;
    let coalesced = measure(&mut sim, async || {
        let values = session.read(&points).await;
        assert!(values.iter().all(Result::is_ok));
    })
    .await;
    let naive = measure(&mut sim, async || {
        for point in &points {
            let value = session.read(std::slice::from_ref(point)).await;
            assert!(value[0].is_ok());
        }
    })
    .await;

    println!("### 100 adjacent holding registers, one device, Modbus TCP (loopback)\n");
    println!(
        "| read loop | requests per cycle | properties read per second | cycle p50 | cycle p99 |"
    );
    println!("|---|---|---|---|---|");
    for (name, phase) in [
        ("coalesced (edgetwin)", &coalesced),
        ("naive, one request per property", &naive),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} | {:.2?} | {:.2?} |",
            phase.requests as f64 / phase.cycles as f64,
            100.0 * phase.cycles as f64 / phase.elapsed.as_secs_f64(),
            percentile(&phase.latencies, 50.0),
            percentile(&phase.latencies, 99.0),
        );
    }
    println!(
        "\nCoalesced reads deliver {:.1}x the properties per second of the naive loop.\n",
        (coalesced.cycles as f64 / coalesced.elapsed.as_secs_f64())
            / (naive.cycles as f64 / naive.elapsed.as_secs_f64())
    );
    sim.kill().await;
}

/// Runs `cycle` back to back for [`PHASE`]; the simulator counts the requests.
async fn measure(sim: &mut Peer, mut cycle: impl AsyncFnMut()) -> Phase {
    sim.command("reset").await;
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < PHASE {
        let one = Instant::now();
        cycle().await;
        latencies.push(one.elapsed());
    }
    let elapsed = started.elapsed();
    Phase {
        cycles: latencies.len() as u64,
        requests: sim.requests().await,
        elapsed,
        latencies,
    }
}

/// One RTU device's collect loop under the runtime's breaker policy; returns the durations of
/// its successful cycles.
async fn collect_loop(driver: Arc<ModbusDriver>, config: Config, until: Instant) -> Vec<Duration> {
    let points: Vec<&Point<VisitorConfig>> = config.points.iter().collect();
    let mut breaker = CircuitBreaker::new(
        3,
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
    );
    let mut session = None;
    let mut cycles = Vec::new();
    let mut next = Instant::now();
    while Instant::now() < until {
        tokio::time::sleep_until(next).await;
        next += RTU_CYCLE;
        let now = Instant::now();
        if session.is_none() {
            if !breaker.allows(now) {
                continue;
            }
            match driver.connect(&config).await {
                Ok(opened) => {
                    breaker.record_success();
                    session = Some(opened);
                }
                Err(_) => {
                    breaker.trip(Instant::now());
                    continue;
                }
            }
        }
        let Some(open) = session.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let values = open.read(&points).await;
        if values.iter().any(Result::is_ok) {
            breaker.record_success();
            cycles.push(started.elapsed());
        } else if breaker.record_failure(Instant::now()) {
            session = None;
        }
        if next < Instant::now() {
            next = Instant::now();
        }
    }
    cycles
}

struct LineRun {
    healthy: Vec<Duration>,
    dead_requests: u64,
}

async fn line_run(sim: &mut Peer, pty: &PtyPair, devices: u8, timeout_ms: u64) -> LineRun {
    sim.command("reset").await;
    let driver = Arc::new(ModbusDriver::new());
    let until = Instant::now() + RTU_PHASE;
    let mut tasks = Vec::new();
    for unit in 1..=devices {
        let config = device(
            &format!("meter-{unit}"),
            json!({"serialPort": pty.b, "baudRate": 115_200, "slaveID": unit,
                   "timeout": timeout_ms}),
            &adjacent_registers(10),
        );
        let driver = Arc::clone(&driver);
        tasks.push((unit, tokio::spawn(collect_loop(driver, config, until))));
    }
    let mut healthy = Vec::new();
    for (unit, task) in tasks {
        let cycles = task.await.expect("device task");
        if unit <= 9 {
            healthy.extend(cycles);
        }
    }
    let stats = sim.command("stats").await;
    LineRun {
        healthy,
        dead_requests: stats["by_unit"]["10"].as_u64().unwrap_or(0),
    }
}

async fn dead_slave() {
    let pty = PtyPair::start().await;
    let units: Vec<String> = (1..=10).map(|u| u.to_string()).collect();
    let mut args = vec![
        "--rtu",
        pty.a.to_str().unwrap_or_default(),
        "--baud",
        "115200",
        "--size",
        "100",
    ];
    for unit in &units {
        args.extend(["--unit", unit.as_str()]);
    }
    let mut sim = Peer::sim(&args).await;
    let default_timeout = RTU_TIMEOUTS_MS[0];
    let mut runs = vec![(
        "all 10 answer",
        default_timeout,
        line_run(&mut sim, &pty, 10, default_timeout).await,
    )];
    sim.command("mute 10").await;
    for timeout in RTU_TIMEOUTS_MS {
        runs.push((
            "unit 10 dead",
            timeout,
            line_run(&mut sim, &pty, 10, timeout).await,
        ));
    }
    sim.kill().await;

    // A cycle at the start and one every period after it.
    let scheduled = 9 * (RTU_PHASE.as_millis() / RTU_CYCLE.as_millis() + 1);
    println!(
        "### 10 devices on one RTU line (socat pty pair, 115200 baud), collect cycle \
         {RTU_CYCLE:?}, {RTU_PHASE:?} per run\n"
    );
    println!(
        "| run | timeout | healthy cycles (of {scheduled} due) | healthy cycle p50 | p90 | p99 | \
         max | requests to the dead unit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, timeout, run) in &runs {
        println!(
            "| {name} | {timeout} ms | {} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {} |",
            run.healthy.len(),
            percentile(&run.healthy, 50.0),
            percentile(&run.healthy, 90.0),
            percentile(&run.healthy, 99.0),
            run.healthy.iter().max().copied().unwrap_or_default(),
            run.dead_requests,
        );
    }
    println!();
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
