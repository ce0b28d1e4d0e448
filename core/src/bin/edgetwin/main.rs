//! The `edgetwin` command line: one binary for the cloud, the edge agent, the ctl client and the
//! all-in-one demo. Each subcommand is a thin layer over a library module of `edgetwin-core`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "edge")]
mod edge;
mod logging;
mod not_built;
mod pipeline_cmd;

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
    Cloud,
    /// Run the edge agent: MQTT event bus, twin engine and persistent store.
    #[cfg(feature = "edge")]
    Edge(edge::EdgeArgs),
    /// Talk to the embedded registry with kubectl-like verbs (apply, get, set, patch, ...).
    Ctl,
    /// Print the generated CustomResourceDefinitions.
    Crd {
        #[command(subcommand)]
        command: CrdCommand,
    },
    /// Convert KubeEdge v1alpha2 Device / DeviceModel YAML to v1beta1.
    Convert {
        /// The v1alpha2 YAML file to convert.
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
    Up,
}

#[derive(Debug, Subcommand)]
enum CrdCommand {
    /// Print the Device and DeviceModel CRDs as YAML.
    Print,
}

/// Prints an error of a subcommand (with its causes) and exits with status 1.
fn run(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cloud => not_built::exit("edgetwin cloud", 5),
        #[cfg(feature = "edge")]
        Command::Edge(args) => run(edge::run(args)),
        Command::Ctl => not_built::exit("edgetwin ctl", 5),
        Command::Crd {
            command: CrdCommand::Print,
        } => not_built::exit("edgetwin crd print", 2),
        Command::Convert { .. } => not_built::exit("edgetwin convert", 2),
        Command::Up => not_built::exit("edgetwin up", 6),
        Command::Pipeline { command } => match pipeline_cmd::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}
