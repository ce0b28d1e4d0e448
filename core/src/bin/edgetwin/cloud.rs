//! `edgetwin cloud`: the whole cloud ([`edgetwin_core::cloud::server::Cloud`]) from a YAML
//! config, or with `--registry-only` just the embedded registry and its HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// `edgetwin cloud` flags.
#[derive(Debug, Args)]
#[cfg_attr(not(feature = "cloud"), allow(dead_code))]
pub struct CloudArgs {
    /// Run only the embedded registry and its HTTP API (what `edgetwin ctl` talks to), without
    /// the device controller and the tunnel.
    #[arg(long)]
    pub registry_only: bool,
    /// The cloud configuration (YAML). Without it the defaults apply (see
    /// --print-default-config).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the default configuration (commented YAML) and exit.
    #[arg(long)]
    pub print_default_config: bool,
    /// The data directory: registry database, API token, API URL.
    #[arg(long, env = "EDGETWIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the registry API listens. Keep it on loopback: the API is plain HTTP.
    #[arg(long, default_value = "127.0.0.1:7411")]
    registry_listen: SocketAddr,
}

/// Runs the embedded registry until SIGINT or SIGTERM.
#[cfg(feature = "cloud")]
pub fn run_registry(args: CloudArgs) -> ExitCode {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(serve(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edgetwin cloud: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "cloud")]
async fn serve(args: CloudArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use edgetwin_core::cloud::registry::embedded::EmbeddedRegistry;
    use edgetwin_core::cloud::registry::embedded::data_dir::DataDir;
    use edgetwin_core::cloud::registry::embedded::server::ApiServer;

    let dir = DataDir::new(args.data_dir.unwrap_or_else(DataDir::default_location));
    dir.create()?;
    let token = dir.load_or_create_token()?;
    let registry = EmbeddedRegistry::open(&dir.registry_db())?;
    let server = ApiServer::bind(args.registry_listen, registry, token)
        .await
        .with_context(|| format!("cannot listen on {}", args.registry_listen))?;
    let url = server.url()?;
    dir.write_url(&url)?;
    tracing::info!(
        %url,
        data_dir = %dir.root().display(),
        token_file = %dir.token_file().display(),
        "registry ready (edgetwin ctl finds it through the data directory)"
    );
    let result = server.run_until(shutdown_signal()).await;
    dir.remove_url();
    result.context("the registry API server failed")
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
#[cfg(feature = "cloud")]
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

/// Runs the cloud until SIGINT or SIGTERM.
#[cfg(feature = "cloud")]
pub fn run_cloud(args: CloudArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use edgetwin_core::cloud::config::CloudConfig;
    use edgetwin_core::cloud::server::Cloud;

    if args.print_default_config {
        print!("{}", CloudConfig::default_yaml());
        return Ok(ExitCode::SUCCESS);
    }
    let config = match &args.config {
        Some(path) => CloudConfig::load(path)?,
        None => CloudConfig::default(),
    };
    config.validate("configuration")?;
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let cloud = Cloud::start(config).await?;
        shutdown_signal().await;
        cloud.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Without the `cloud` feature the cloud is not built.
#[cfg(not(feature = "cloud"))]
pub fn run_cloud(_args: CloudArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this binary was built without the `cloud` feature")
}

/// Without the `cloud` feature the registry is not built.
#[cfg(not(feature = "cloud"))]
pub fn run_registry(_args: CloudArgs) -> ExitCode {
    eprintln!("edgetwin cloud: this binary was built without the `cloud` feature");
    ExitCode::from(2)
}
