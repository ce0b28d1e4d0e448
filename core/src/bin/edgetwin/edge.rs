//! `edgetwin edge`: runs the edge agent until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use edgetwin_core::edge::agent;
use edgetwin_core::edge::config::EdgeConfig;

/// Arguments of `edgetwin edge`.
#[derive(Debug, clap::Args)]
pub struct EdgeArgs {
    /// The agent configuration (YAML). Without it the defaults apply (see --print-default-config).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Device and DeviceModel YAML to serve without a cloud: the node's complete device list (a
    /// file, or a directory whose .yaml files are read).
    #[arg(long, value_name = "FILE|DIR")]
    devices: Option<PathBuf>,
    /// Print the default configuration (commented YAML) and exit.
    #[arg(long)]
    print_default_config: bool,
    /// The cloud's tunnel URL (overrides `cloud.url`), e.g. `wss://cloud.example:10000`.
    #[arg(long, value_name = "URL")]
    cloud_url: Option<String>,
    /// The CA the cloud's certificate must chain to (overrides `cloud.caFile`).
    #[arg(long, value_name = "FILE")]
    cloud_ca: Option<PathBuf>,
    /// A file holding the node's token (overrides `cloud.tokenFile`).
    #[arg(long, value_name = "FILE")]
    cloud_token_file: Option<PathBuf>,
    /// Allow a plain `ws://` cloud URL (the token travels in clear): tests and demos only.
    #[arg(long)]
    insecure: bool,
}

/// Runs the agent.
pub fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    if args.print_default_config {
        print!("{}", EdgeConfig::default_yaml());
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = match &args.config {
        Some(path) => EdgeConfig::load(path)?,
        None => EdgeConfig::default(),
    };
    if let Some(url) = args.cloud_url {
        config.cloud.url = Some(url);
    }
    if let Some(ca) = args.cloud_ca {
        config.cloud.ca_file = Some(ca);
    }
    if let Some(file) = args.cloud_token_file {
        config.cloud.token = None;
        config.cloud.token_file = Some(file);
    }
    config.cloud.insecure |= args.insecure;
    config.validate("configuration")?;
    crate::logging::init();
    // One thread: the agent's work is one service task and one bus event loop, and each worker
    // thread would cost its own stack and malloc arena (see docs/architecture.md, "Memory").
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let agent = agent::start(config, args.devices.as_deref()).await?;
        if let Some(outcome) = agent.devices_outcome() {
            for (device, reason) in &outcome.skipped {
                tracing::warn!(%device, %reason, "device in the devices file not served");
            }
        }
        shutdown_signal().await?;
        tracing::info!("shutting down");
        agent.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
