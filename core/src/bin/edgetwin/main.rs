//! The `edgetwin` command line: one binary for the cloud, the edge agent, the ctl client and the
//! all-in-one demo. Each subcommand is a thin layer over a library module of `edgetwin-core`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgetwin_core::scaffold;

mod cloud;
#[cfg(feature = "cloud")]
mod cloud_token;
mod convert;
#[cfg(feature = "kube")]
mod crd;
mod ctl;
#[cfg(feature = "edge")]
mod edge;
#[cfg(feature = "edge")]
mod install;
mod logging;
mod pipeline_cmd;
#[cfg(feature = "cloud")]
mod up;

/// edgetwin: KubeEdge-compatible device twins for the edge.
#[derive(Debug, Parser)]
#[command(name = "edgetwin", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cloud side: device controller, registry and the tunnel the edge nodes connect to.
    Cloud {
        #[command(subcommand)]
        command: Option<CloudCommand>,
        #[command(flatten)]
        args: cloud::CloudArgs,
    },
    /// Run the edge agent: MQTT event bus, twin engine and persistent store.
    #[cfg(feature = "edge")]
    Edge(edge::EdgeArgs),
    /// Install this node's binaries, agent configuration and hardened systemd units (the agent
    /// and each mapper), then enable and start them.
    #[cfg(feature = "edge")]
    Install(install::InstallArgs),
    /// Stop, disable and remove what `edgetwin install` put on this node (configuration and
    /// store are kept unless --purge).
    #[cfg(feature = "edge")]
    Uninstall(install::UninstallArgs),
    /// Talk to the embedded registry with kubectl-like verbs (apply, get, set, patch, ...).
    Ctl(ctl::CtlArgs),
    /// Print the generated CustomResourceDefinitions.
    Crd {
        #[command(subcommand)]
        command: CrdCommand,
    },
    /// Convert KubeEdge v1alpha2 Device / DeviceModel YAML to v1beta1 (printed on stdout).
    Convert {
        /// The v1alpha2 YAML file to convert (`-` reads stdin).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Work with a property's data pipeline (scale, clamp, deadband, window, rate limit, map).
    Pipeline {
        #[command(subcommand)]
        command: pipeline_cmd::PipelineCommand,
    },
    /// Run the whole traffic-light demo on one machine: embedded broker, registry, cloud, edge and
    /// the GPIO mapper on a simulated chip.
    #[cfg(feature = "cloud")]
    Up(up::UpArgs),
    /// Run the whole traffic-light demo on one machine (needs the `cloud` feature).
    #[cfg(not(feature = "cloud"))]
    Up,
    /// Create something new from a template.
    New {
        #[command(subcommand)]
        command: NewCommand,
    },
}

#[derive(Debug, Subcommand)]
enum NewCommand {
    /// Write a new mapper crate NAME-mapper: a driver skeleton, a binary, an example Device and
    /// DeviceModel, and a test running the conformance suite. It builds and passes as generated.
    Mapper {
        /// The protocol name, e.g. `acme-plc` (lower-case letters, digits and dashes).
        name: String,
        /// The directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The edgetwin-sdk crate the new mapper depends on (default: the SDK of the checkout
        /// this binary was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CloudCommand {
    /// Manage the tokens edge nodes authenticate with.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for each NODE (replacing any previous one) and print it once on stdout:
    /// the token alone for one node, `NODE TOKEN` lines for several.
    Create {
        /// The edge nodes' names (Kubernetes node names).
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        db: TokenDb,
    },
    /// Revoke NODE's token: its next connection attempt is refused.
    Revoke {
        /// The edge node's name.
        node: String,
        #[command(flatten)]
        db: TokenDb,
    },
}

/// Where the node tokens live: the `cloud.db` the cloud reads, found like the cloud finds it.
#[derive(Debug, clap::Args)]
struct TokenDb {
    /// The cloud's sqlite database itself (overrides --data-dir and --config).
    #[arg(long, env = "EDGETWIN_CLOUD_DB", value_name = "FILE")]
    db: Option<PathBuf>,
    /// The cloud's data directory (its `dataDir`): the tokens go to DIR/cloud.db.
    #[arg(long, env = "EDGETWIN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The cloud configuration (YAML) whose `dataDir` holds cloud.db; without any of these
    /// flags, the default configuration's (`edgetwin-cloud/cloud.db`).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CrdCommand {
    /// Print the Device and DeviceModel CRDs as YAML.
    Print,
    /// Write devices.yaml and devicemodels.yaml into a directory (what `cargo xtask gen-crds`
    /// commits under crds/).
    Write {
        /// The directory (created if missing).
        dir: PathBuf,
    },
}

/// Prints an error of a subcommand (with its causes) and exits with status 1.
fn run(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("error: {}", error_message(&error));
        ExitCode::FAILURE
    })
}

/// The error and its causes, `: `-separated; a cause the message already quotes (our errors
/// usually include their source) is not repeated.
fn error_message(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cloud {
            command: Some(CloudCommand::Token { command }),
            ..
        } => token(command),
        Command::Cloud { args, .. } if args.registry_only => cloud::run_registry(args),
        Command::Cloud { args, .. } => run(cloud::run_cloud(args)),
        #[cfg(feature = "edge")]
        Command::Edge(args) => run(edge::run(args)),
        #[cfg(feature = "edge")]
        Command::Install(args) => run(install::run_install(args)),
        #[cfg(feature = "edge")]
        Command::Uninstall(args) => run(install::run_uninstall(args)),
        Command::Ctl(args) => ctl::run(args),
        Command::Crd { command } => crd_command(command),
        Command::Convert { file } => convert::run(&file),
        #[cfg(feature = "cloud")]
        Command::Up(args) => up::run(args),
        #[cfg(not(feature = "cloud"))]
        Command::Up => {
            eprintln!("edgetwin up: this binary was built without the `cloud` feature");
            ExitCode::from(2)
        }
        Command::New {
            command:
                NewCommand::Mapper {
                    name,
                    dir,
                    sdk_path,
                },
        } => {
            let sdk = sdk_path.unwrap_or_else(|| PathBuf::from(scaffold::DEFAULT_SDK_PATH));
            match scaffold::new_mapper(&name, &dir, &sdk) {
                Ok(root) => {
                    println!(
                        "created {}
  cd {} && cargo test   # runs the conformance suite",
                        root.display(),
                        root.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Pipeline { command } => match pipeline_cmd::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(feature = "cloud")]
fn token(command: TokenCommand) -> ExitCode {
    let result = match command {
        TokenCommand::Create { nodes, db } => cloud_token::database(db.db, db.data_dir, db.config)
            .and_then(|db| cloud_token::create_tokens(&nodes, &db)),
        TokenCommand::Revoke { node, db } => cloud_token::database(db.db, db.data_dir, db.config)
            .and_then(|db| cloud_token::revoke_token(&node, &db)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "cloud"))]
fn token(_: TokenCommand) -> ExitCode {
    eprintln!("edgetwin cloud token: this binary was built without the `cloud` feature");
    ExitCode::from(2)
}
#[cfg(feature = "kube")]
fn crd_command(command: CrdCommand) -> ExitCode {
    match command {
        CrdCommand::Print => crd::print(),
        CrdCommand::Write { dir } => crd::write(&dir),
    }
}

#[cfg(not(feature = "kube"))]
fn crd_command(_: CrdCommand) -> ExitCode {
    eprintln!("edgetwin crd: this binary was built without the `kube` feature");
    ExitCode::from(2)
}

/// Writes to stdout; a closed pipe or a full disk is an error message, not a panic.
fn write_stdout(bytes: &[u8], what: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the file x.yaml: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_printed_once_whether_or_not_the_message_quotes_it() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoting = anyhow::Error::new(Quoting { source: io() });
        assert_eq!(
            error_message(&quoting),
            "cannot read the file x.yaml: no such file"
        );
        let wrapped = anyhow::Error::new(io()).context("cannot start");
        assert_eq!(error_message(&wrapped), "cannot start: no such file");
    }
}
