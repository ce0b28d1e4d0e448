//! `edgetwin install` and `edgetwin uninstall`: the node's binaries, configuration and systemd
//! units (see `edgetwin_core::install`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use edgetwin_core::install::{self, InstallOptions, MapperKind};

/// Arguments of `edgetwin install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The edge node's name (the Devices' `spec.nodeName`, the name its token was created for).
    #[arg(long)]
    node: String,
    /// A mapper to install and run: gpio, modbus or sim (repeat for several).
    #[arg(long = "mapper", value_name = "NAME")]
    mappers: Vec<String>,
    /// The cloud's tunnel URL, e.g. `wss://cloud.example.net:10000`.
    #[arg(long, value_name = "URL")]
    cloud_url: Option<String>,
    /// The node's token (`edgetwin cloud token create NODE` on the cloud), installed 0600.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The CA the cloud's certificate chains to (PEM).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Allow a plain `ws://` cloud URL (the token travels in clear): tests and demos only.
    #[arg(long)]
    insecure: bool,
    /// Device and DeviceModel YAML (a file, or a directory of .yaml files) for a node that runs
    /// without a cloud.
    #[arg(long, value_name = "FILE|DIR")]
    devices: Option<PathBuf>,
    /// The embedded broker's address, which the mappers connect to.
    #[arg(long, default_value = install::DEFAULT_BROKER)]
    broker: String,
    /// Where the binaries go (PREFIX/bin).
    #[arg(long, default_value = install::DEFAULT_PREFIX)]
    prefix: PathBuf,
    /// Where the binaries to install are (default: next to this `edgetwin`).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Install under this directory instead of `/` (nothing is started then).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Replace an existing /etc/edgetwin/edge.yaml.
    #[arg(long)]
    force: bool,
    /// Write the files but do not enable or start the units.
    #[arg(long)]
    no_start: bool,
}

/// Arguments of `edgetwin uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Also remove /etc/edgetwin (configuration, token) and the agent's store.
    #[arg(long)]
    purge: bool,
    /// Uninstall from under this directory instead of `/`.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

/// Runs `edgetwin install`.
pub fn run_install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let from = match args.from {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("finding this binary")?
            .parent()
            .context("this binary has no directory")?
            .to_owned(),
    };
    let mappers = args
        .mappers
        .iter()
        .map(|name| MapperKind::parse(name))
        .collect::<Result<Vec<_>, _>>()?;
    let options = InstallOptions {
        root: args.root,
        prefix: args.prefix,
        from,
        node: args.node,
        mappers,
        broker: args.broker,
        cloud_url: args.cloud_url,
        token_file: args.token_file,
        ca_file: args.ca_file,
        insecure: args.insecure,
        devices: args.devices,
        force: args.force,
        start: !args.no_start,
    };
    install::install(&options, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `edgetwin uninstall`.
pub fn run_uninstall(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    install::uninstall(&args.root, args.purge, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
