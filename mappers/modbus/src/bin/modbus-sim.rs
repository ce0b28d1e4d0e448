//! `modbus-sim`: a Modbus TCP or RTU server with configurable registers, for examples, tests
//! and benchmarks.
//!
//! ```sh
//! modbus-sim --tcp 127.0.0.1:5020 --registers registers.yaml
//! modbus-sim --rtu /dev/ttyV0 --baud 19200 --unit 1 --unit 2 --size 1000
//! ```
//!
//! When it listens it prints one line, `READY tcp 127.0.0.1:PORT` (the real port when
//! `:0` was asked for) or `READY rtu PATH`. It then reads control commands on stdin, one per
//! line, and answers each with one line of JSON on stdout: `stats`, `reset`, `mute UNIT`,
//! `unmute UNIT`, `get UNIT TABLE ADDRESS COUNT`, `set UNIT TABLE ADDRESS VALUE…`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use edgetwin_mapper_modbus::bus::open_serial;
use edgetwin_mapper_modbus::config::{Parity, SerialSettings};
use edgetwin_mapper_modbus::sim::{SimConfig, Simulator, serve_rtu, serve_tcp};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A Modbus TCP/RTU simulator.
#[derive(Debug, Parser)]
#[command(name = "modbus-sim", version, about)]
struct Args {
    /// Serve Modbus TCP on this address (port 0: any free port).
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "rtu",
        required_unless_present = "rtu"
    )]
    tcp: Option<SocketAddr>,
    /// Serve Modbus RTU on this serial device.
    #[arg(long, value_name = "PATH")]
    rtu: Option<PathBuf>,
    /// RTU: bits per second.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// RTU: parity (none, even, odd).
    #[arg(long, default_value = "none")]
    parity: Parity,
    /// Units and registers from a YAML or JSON file (see `edgetwin_mapper_modbus::sim`).
    #[arg(long, value_name = "FILE")]
    registers: Option<PathBuf>,
    /// Also answer for this unit, with every table of `--size` zeroed addresses (repeatable;
    /// unit 1 when neither this nor `--registers` is given).
    #[arg(long = "unit", value_name = "ID")]
    units: Vec<u8>,
    /// Addresses per table of the `--unit` units.
    #[arg(long, default_value_t = 10_000)]
    size: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let sim = Simulator::new(&sim_config(&args)?).context("invalid registers")?;
    tokio::spawn(control(sim.clone()));
    let serve = async {
        match (&args.tcp, &args.rtu) {
            (Some(addr), _) => tcp(*addr, sim).await,
            (None, Some(path)) => rtu(path, &args, sim).await,
            (None, None) => bail!("give --tcp ADDR or --rtu PATH"),
        }
    };
    tokio::select! {
        result = serve => result,
        () = shutdown_signal() => Ok(()),
    }
}

fn sim_config(args: &Args) -> Result<SimConfig> {
    let mut config = match &args.registers {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SimConfig::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => SimConfig::default(),
    };
    let mut units = args.units.clone();
    if units.is_empty() && config.units.is_empty() {
        units.push(1);
    }
    config
        .units
        .extend(SimConfig::uniform(units, args.size).units);
    Ok(config)
}

async fn tcp(addr: SocketAddr, sim: Simulator) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("READY tcp {}", listener.local_addr()?);
    serve_tcp(listener, sim).await.context("serving Modbus TCP")
}

async fn rtu(path: &std::path::Path, args: &Args, sim: Simulator) -> Result<()> {
    let settings = SerialSettings {
        path: path.to_string_lossy().into_owned(),
        baud_rate: args.baud,
        data_bits: 8,
        parity: args.parity,
        stop_bits: 1,
    };
    let mut ready = false;
    loop {
        let serial = open_serial(&settings)?;
        if !ready {
            println!("READY rtu {}", settings.path);
            ready = true;
        }
        // A garbled frame ends the server loop: reopen and go on serving.
        if let Err(err) = serve_rtu(serial, sim.clone()).await {
            tracing::warn!(error = %err, "RTU line error; reopening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Answers control commands from stdin until it closes.
async fn control(sim: Simulator) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.trim().is_empty() {
            println!("{}", sim.control(&line));
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
