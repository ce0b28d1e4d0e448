//! `opcua-sim`: our OPC UA server with a variable of every supported type and any number of
//! Int32 variables, for examples, tests and benchmarks (see `edgetwin_mapper_opcua::sim`).
//!
//! ```sh
//! opcua-sim --listen 127.0.0.1:4840 --variables 200 --pki-dir /tmp/opcua-sim-pki
//! ```
//!
//! When it listens it prints one line, `READY opc.tcp://HOST:PORT/ ns=N` (the real port when
//! `:0` was asked for). It then reads control commands on stdin, one per line, and answers each
//! with one line of JSON on stdout: `get NAME`, `set NAME VALUE`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use edgetwin_mapper_opcua::sim::{SimConfig, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// An OPC UA simulator.
#[derive(Debug, Parser)]
#[command(name = "opcua-sim", version, about)]
struct Args {
    /// Listen on this address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:4840")]
    listen: SocketAddr,
    /// How many Int32 variables `v0000…` under Objects/Bench.
    #[arg(long, default_value_t = 0)]
    variables: usize,
    /// The server's certificate store (created when missing).
    #[arg(long, value_name = "DIR")]
    pki_dir: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let sim = Simulator::start(SimConfig {
        listen: args.listen,
        variables: args.variables,
        pki_dir: args.pki_dir,
    })
    .await
    .map_err(anyhow::Error::msg)
    .context("cannot start the simulator")?;
    println!("READY {} ns={}", sim.url(), sim.namespace());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    // Until stdin closes; then serve until killed.
    while let Some(line) = lines.next_line().await? {
        let answer = sim.command(&line);
        stdout.write_all(format!("{answer}\n").as_bytes()).await?;
        stdout.flush().await?;
    }
    std::future::pending::<()>().await;
    Ok(())
}
