//! The command line every mapper binary shares, so that a mapper's `main` is one line:
//!
//! ```no_run
//! # use edgetwin_sdk::testkit::SimDriver;
//! fn main() -> std::process::ExitCode {
//!     edgetwin_sdk::cli::main(SimDriver::new())
//! }
//! ```
//!
//! A hand-written parser (no clap) keeps mapper binaries small. Run a mapper with `--help` for
//! the options.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use edgetwin_model::wire::spec_auth::BusCredentials;

use crate::driver::Driver;
use crate::runtime::{IdForm, Mapper, MapperBuilder, Selector};

/// The usage text; `{protocol}` is replaced by the driver's protocol.
const USAGE: &str = "\
edgetwin mapper for the {protocol} protocol

USAGE: {bin} [OPTIONS]

Devices come from the edgetwin edge agent (retained spec messages for --node) unless --devices
or --device-profile is given.

OPTIONS:
  --node NAME              edge node this mapper serves [env EDGETWIN_NODE]
  --broker ADDR            MQTT broker: host[:port], mqtt://host:port [env EDGETWIN_BROKER,
                           default 127.0.0.1:1883]
  --devices DIR            read Device/DeviceModel YAML from DIR instead of the edge agent
  --device-profile FILE    read KubeEdge's v1alpha2 deviceProfile.json instead
  --selector KEY=VALUE     serve only devices with this label (repeatable)
  --device NAME            serve only this device, NAME or NAMESPACE/NAME (repeatable)
  --id-form FORM           device id in KubeEdge topics: namespaced (default, KubeEdge >= 1.17)
                           or name (KubeEdge <= 1.16)
  --heartbeat SECONDS      re-report unchanged values this often (default: never)
  --metrics ADDR           serve Prometheus metrics on ADDR, e.g. 127.0.0.1:9100
  --client-id ID           MQTT client id
  --secrets-dir DIR        passwords and tokens of database sinks, one file per variable name
                           (e.g. DIR/EDGETWIN_REDIS_PASSWORD), before the environment
  --credentials FILE       the node's bus credentials (login and spec key) the edge agent wrote
                           for this mapper [env EDGETWIN_CREDENTIALS]; with them, only spec
                           messages sealed by the agent are applied
  -h, --help               print this help

Logging: RUST_LOG (default info), e.g. RUST_LOG=edgetwin_sdk=debug.
";

/// Parses the command line, runs the mapper on a current-thread runtime until SIGTERM/SIGINT,
/// and returns the exit status: 0 after a clean shutdown, 2 for bad arguments, 1 when the
/// mapper could not start.
pub fn main<D: Driver>(driver: D) -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().collect();
    let bin = args.first().map_or("mapper", String::as_str).to_owned();
    let builder = match parse(from_env(Mapper::builder().driver(driver)), &args[1..]) {
        Ok(Parsed::Run(builder)) => *builder,
        Ok(Parsed::Help) => {
            print!("{}", usage::<D>(&bin));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{bin}: {message}\n\n{}", usage::<D>(&bin));
            return ExitCode::from(2);
        }
    };
    let mapper = match builder.build() {
        Ok(mapper) => mapper,
        Err(err) => {
            eprintln!("{bin}: {err}");
            return ExitCode::from(2);
        }
    };
    run_with(mapper, &bin, async {})
}

/// Runs a built mapper on a current-thread runtime until SIGTERM/SIGINT (also when the process
/// named by [`PARENT_PID_ENV`] dies), with `beside` spawned on the same runtime (a mapper's own
/// companion task, e.g. a diagnostics endpoint), and returns the exit status: 0 after a clean
/// shutdown, 1 when the mapper failed.
pub fn run_with<D: Driver>(
    mapper: Mapper<D>,
    bin: &str,
    beside: impl Future<Output = ()> + Send + 'static,
) -> ExitCode {
    if let Err(message) = end_with_parent() {
        eprintln!("{bin}: {message}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{bin}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let beside = tokio::spawn(beside);
        let outcome = mapper.run().await;
        beside.abort();
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "mapper failed");
            eprintln!("{bin}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The help text of the common options, for `bin`.
pub fn usage<D: Driver>(bin: &str) -> String {
    USAGE
        .replace("{protocol}", D::PROTOCOL)
        .replace("{bin}", bin)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): `level` and `target=level`
/// directives, e.g. `warn,edgetwin_sdk=debug`. Colours only when stderr is a terminal, so that
/// log files and journals get plain text. (`tracing_subscriber`'s `Targets` rather than
/// `EnvFilter`, whose regex engine would make every mapper binary larger, and binary size is most
/// of a mapper's resident memory.)
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let default = || Targets::new().with_default(LevelFilter::INFO);
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => directives.parse::<Targets>().unwrap_or_else(|error| {
            eprintln!("RUST_LOG={directives:?} not understood ({error}): logging at info");
            default()
        }),
        Err(_) => default(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed<D: Driver> {
    /// Run with this configuration.
    Run(Box<MapperBuilder<D>>),
    /// Print the help.
    Help,
}

/// Applies `EDGETWIN_NODE` and `EDGETWIN_BROKER` from the environment.
pub fn from_env<D: Driver>(mut builder: MapperBuilder<D>) -> MapperBuilder<D> {
    if let Ok(node) = std::env::var("EDGETWIN_NODE") {
        builder = builder.node(node);
    }
    if let Ok(broker) = std::env::var("EDGETWIN_BROKER") {
        builder = builder.broker(broker);
    }
    builder
}

/// The environment variable that names the process this mapper must not outlive (its parent,
/// e.g. `edgetwin up`): the mapper gets SIGTERM when that process dies, even by SIGKILL.
pub const PARENT_PID_ENV: &str = "EDGETWIN_PARENT_PID";

/// With [`PARENT_PID_ENV`] set, asks the kernel for SIGTERM when the parent dies (Linux's
/// parent-death signal), and fails when the parent is not that process any more (it died before
/// the request, and the mapper was re-parented).
fn end_with_parent() -> Result<(), String> {
    let Ok(text) = std::env::var(PARENT_PID_ENV) else {
        return Ok(());
    };
    let parent: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{PARENT_PID_ENV}={text:?} is not a process id"))?;
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Signal, getppid, set_parent_process_death_signal};
        set_parent_process_death_signal(Some(Signal::TERM))
            .map_err(|e| format!("cannot ask to end with the parent process: {e}"))?;
        if getppid().map(|pid| pid.as_raw_nonzero().get()) != Some(parent) {
            return Err(format!(
                "the parent process {parent} ({PARENT_PID_ENV}) is gone; not starting"
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!(parent, "{PARENT_PID_ENV} is only honoured on Linux");
    Ok(())
}

/// Reads a bus credentials file; the error names the file and what is wrong, never a secret.
pub fn read_credentials(path: &str) -> Result<BusCredentials, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--credentials {path:?}: cannot read: {e}"))?;
    BusCredentials::from_json(&text).map_err(|e| format!("--credentials {path:?}: {e}"))
}

/// Applies command-line arguments (without the program name) to a builder.
pub fn parse<D: Driver>(
    mut builder: MapperBuilder<D>,
    args: &[String],
) -> Result<Parsed<D>, String> {
    let mut selector = Selector::default();
    if let Ok(path) = std::env::var("EDGETWIN_CREDENTIALS") {
        let credentials = read_credentials(&path)?;
        builder = builder.options(|o| o.credentials = Some(credentials));
    }
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        builder = match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--node" => builder.node(value()?),
            "--broker" => builder.broker(value()?),
            "--devices" => builder.devices_dir(value()?),
            "--device-profile" => builder.device_profile(value()?),
            "--selector" => {
                selector.add_label(&value()?)?;
                builder
            }
            "--device" => {
                selector.devices.insert(value()?);
                builder
            }
            "--id-form" => {
                let form = match value()?.as_str() {
                    "namespaced" => IdForm::Namespaced,
                    "name" => IdForm::NameOnly,
                    other => return Err(format!("--id-form {other:?}: use namespaced or name")),
                };
                builder.options(|o| o.id_form = form)
            }
            "--heartbeat" => {
                let text = value()?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        format!("--heartbeat {text:?} is not a positive number of seconds")
                    })?;
                builder.heartbeat(Duration::from_secs_f64(seconds))
            }
            "--metrics" => {
                let text = value()?;
                let addr: SocketAddr = text.parse().map_err(|_| {
                    format!("--metrics {text:?} is not an address like 127.0.0.1:9100")
                })?;
                builder.metrics_addr(addr)
            }
            "--client-id" => {
                let id = value()?;
                builder.options(|o| o.client_id = Some(id))
            }
            "--secrets-dir" => {
                let dir = PathBuf::from(value()?);
                builder.options(|o| o.secrets_dir = Some(dir))
            }
            "--credentials" => {
                let credentials = read_credentials(&value()?)?;
                builder.options(|o| o.credentials = Some(credentials))
            }
            other => return Err(format!("unknown argument {other:?}")),
        };
    }
    Ok(Parsed::Run(Box::new(builder.selector(selector))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::DeviceSource;
    use crate::testkit::SimDriver;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn built(list: &[&str]) -> Result<crate::runtime::Options, String> {
        match parse(Mapper::builder().driver(SimDriver::new()), &args(list))? {
            Parsed::Run(builder) => builder
                .build()
                .map(|m| m.options().clone())
                .map_err(|e| e.to_string()),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn every_option_is_applied() {
        let options = built(&[
            "--node",
            "edge-1",
            "--broker=mqtt://10.0.0.1:1884",
            "--devices",
            "/etc/devices",
            "--selector",
            "line=north",
            "--device",
            "plant/pump",
            "--id-form",
            "name",
            "--heartbeat",
            "30",
            "--metrics",
            "127.0.0.1:9100",
            "--client-id",
            "m-1",
        ])
        .expect("valid");
        assert_eq!(options.node, "edge-1");
        assert_eq!(options.broker.to_string(), "10.0.0.1:1884");
        assert_eq!(
            options.source,
            DeviceSource::Directory("/etc/devices".into())
        );
        assert_eq!(
            options.selector.labels.get("line").map(String::as_str),
            Some("north")
        );
        assert!(options.selector.devices.contains("plant/pump"));
        assert_eq!(options.id_form, IdForm::NameOnly);
        assert_eq!(options.heartbeat, Some(Duration::from_secs(30)));
        assert_eq!(
            options.metrics_addr,
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
        assert_eq!(options.client_id.as_deref(), Some("m-1"));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(built(&["--node"]), Err("--node needs a value".into()));
        assert_eq!(
            built(&["--frobnicate"]),
            Err("unknown argument \"--frobnicate\"".into())
        );
        assert!(
            built(&["--node", "n", "--heartbeat", "-1"]).is_err_and(|e| e.contains("--heartbeat"))
        );
        assert!(
            built(&["--node", "n", "--metrics", "9100"]).is_err_and(|e| e.contains("--metrics"))
        );
        assert!(built(&["--node", "n", "--selector", "x"]).is_err_and(|e| e.contains("key=value")));
        assert_eq!(
            built(&["--broker", "h"]),
            Err("no node name: the spec topic source needs .node(…)".into())
        );
        assert!(matches!(
            parse(
                Mapper::builder().driver(SimDriver::new()),
                &args(&["--help"])
            ),
            Ok(Parsed::Help)
        ));
    }
}
