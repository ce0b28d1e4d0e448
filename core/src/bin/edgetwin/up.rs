//! `edgetwin up`: the traffic-light demo on one machine, on embedded defaults only.
//!
//! In this process: the cloud ([`Cloud::start`]: embedded registry with its HTTP API and the
//! dashboard, device controller, tunnel hub) and the edge agent (embedded MQTT broker, twin
//! store), joined over a real WebSocket tunnel on loopback, over TLS (a local CA and server
//! certificate made at the first start in `{data dir}/tls`, see
//! [`edgetwin_core::cloud::loopback_tls`]), with a node token created for the run. As a child process: the GPIO mapper on its simulated chip, found next to this
//! executable (or `--mapper`, `EDGETWIN_MAPPER_GPIO`), in its own process group and stopped by
//! pid. The example's model and device are loaded on the first start only, so a second start in
//! the same data directory resumes the stored state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use edgetwin_core::cloud::config::{CloudConfig, CloudTlsConfig, RegistryConfig};
use edgetwin_core::cloud::loopback_tls::LoopbackTls;
use edgetwin_core::cloud::registry::Kind;
use edgetwin_core::cloud::registry::embedded::client::RegistryClient;
use edgetwin_core::cloud::registry::embedded::data_dir::DataDir;
use edgetwin_core::cloud::server::{Cloud, CloudHandle};
use edgetwin_core::edge::access::secrets::default_credentials_file;
use edgetwin_core::edge::agent::{self, AgentHandle};
use edgetwin_core::edge::config::{BusClientConfig, EdgeConfig, EmbeddedBrokerConfig};
use edgetwin_core::tunnel::auth::TokenStore;
use edgetwin_core::tunnel::node::NodeName;
use edgetwin_model::devices::Manifest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The example, embedded so that `edgetwin up` needs no files: the same YAML the README applies.
const MODEL_YAML: &str = include_str!("../../../../examples/traffic-light/model.yaml");
const DEVICE_YAML: &str = include_str!("../../../../examples/traffic-light/device.yaml");

/// The demo's edge node (the example Device's `spec.nodeName`).
const NODE: &str = "edge-node1";
/// The mapper binary's file name.
const MAPPER_BIN: &str = "edgetwin-mapper-gpio";
/// Tells an SDK mapper to end when the process of this id dies (`edgetwin_sdk::cli`).
const PARENT_PID_ENV: &str = "EDGETWIN_PARENT_PID";
/// The GPIO mapper's name on the node's bus.
const MAPPER_CLIENT: &str = "gpio";
/// What the mapper prints once its simulated-pin view listens.
const SIM_HTTP_LINE: &str = "sim-http listening on ";
/// How long the mapper may take to start, and to stop after SIGTERM.
const MAPPER_START: Duration = Duration::from_secs(15);
const MAPPER_STOP: Duration = Duration::from_secs(5);

/// `edgetwin up` flags.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The data directory: registry, node token, edge store, loopback TLS files. `edgetwin ctl` looks in the same
    /// place, so it finds the running demo without flags. Default: `$XDG_DATA_HOME/edgetwin`,
    /// else `~/.local/share/edgetwin`.
    #[arg(long, env = "EDGETWIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the dashboard and the registry API listen (plain HTTP: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The GPIO mapper binary (default: `edgetwin-mapper-gpio` next to this executable).
    #[arg(long, env = "EDGETWIN_MAPPER_GPIO")]
    mapper: Option<PathBuf>,
    /// Where the mapper serves the simulated pins as JSON.
    #[arg(long, default_value = "127.0.0.1:0")]
    sim_http: SocketAddr,
    /// How often the cloud writes reported values into the registry (milliseconds); one
    /// device on one machine can afford a short interval.
    #[arg(long, default_value_t = 20)]
    status_interval_ms: u64,
}

/// Runs the demo until SIGINT or SIGTERM.
pub fn run(args: UpArgs) -> ExitCode {
    crate::logging::init();
    // One thread for every task of the cloud and the agent. The blocking work has threads of
    // its own (registry writes of one object excepted, a fraction of a millisecond), so the
    // tasks only pass messages to each other; on one thread a hand-off is a task switch, not a
    // wakeup of another thread (BENCHMARKS.md, "Traffic light › Design choices").
    // `edgetwin cloud`, which serves many nodes, keeps the multi-thread runtime.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(up(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edgetwin up: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mapper_bin = mapper_path(args.mapper.as_deref())?;
    let dir = DataDir::new(args.data_dir.unwrap_or_else(DataDir::default_location));
    dir.create()?;
    let node = NodeName::new(NODE).context("the demo's node name")?;

    let tls = LoopbackTls::load_or_create(&dir.root().join("tls"))?;
    // A fresh node token each start (it replaces the previous one): nothing secret to keep.
    let cloud_config = CloudConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: Some(CloudTlsConfig {
            cert_file: tls.cert.clone(),
            key_file: tls.key.clone(),
            client_ca_file: None,
        }),
        insecure: false,
        insecure_on_network: false,
        data_dir: dir.root().to_path_buf(),
        registry: RegistryConfig::Embedded {
            api_listen: args.listen,
        },
        status_interval_ms: args.status_interval_ms.max(1),
        metrics_listen: None,
    };
    let node_token = TokenStore::open(&cloud_config.cloud_db())
        .and_then(|tokens| tokens.create(&node))
        .context("cannot create the edge node's tunnel token")?;

    let cloud = Cloud::start(cloud_config)
        .await
        .with_context(|| format!("cannot start the cloud (is {} free?)", args.listen))?;
    let api_token = dir.load_or_create_token()?;
    // `up` always runs the embedded registry (configured above), which has an HTTP API.
    let Some(registry_url) = cloud.registry_url().map(str::to_owned) else {
        cloud.shutdown().await;
        anyhow::bail!("the embedded registry reported no API address");
    };
    let seeded = seed_example(&registry_url, &api_token).await;
    if let Err(err) = seeded {
        cloud.shutdown().await;
        return Err(err);
    }

    let mut edge_config = EdgeConfig {
        node_name: NODE.to_owned(),
        data_dir: dir.root().join("edge"),
        ..EdgeConfig::default()
    };
    edge_config.broker.embedded = Some(EmbeddedBrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    });
    edge_config.broker.external = None;
    // The certificate names 127.0.0.1, where the hub listens.
    edge_config.cloud.url = Some(format!("wss://{}", cloud.tunnel_addr()));
    edge_config.cloud.token = Some(node_token.expose().to_owned());
    edge_config.cloud.ca_file = Some(tls.ca.clone());
    edge_config.cloud.insecure = false;
    edge_config.http.listen = None;
    // The GPIO mapper logs in with its own credentials, which the agent writes.
    edge_config.bus.clients.push(BusClientConfig {
        name: MAPPER_CLIENT.to_owned(),
        protocols: vec!["gpio".to_owned()],
        ..BusClientConfig::default()
    });
    let credentials = default_credentials_file(&edge_config.data_dir, MAPPER_CLIENT);
    let agent = match agent::start(edge_config, None).await {
        Ok(agent) => agent,
        Err(err) => {
            cloud.shutdown().await;
            return Err(err).context("cannot start the edge agent");
        }
    };
    agent.connected().await;

    let broker = agent.broker();
    let broker = format!("{}:{}", broker.host, broker.port);
    let (mut mapper, sim_url) =
        match start_mapper(&mapper_bin, &broker, &credentials, args.sim_http).await {
            Ok(started) => started,
            Err(err) => {
                stop_all(None, agent, cloud).await;
                return Err(err);
            }
        };

    let me = this_command();
    println!(
        "edgetwin up: the traffic light is running (data in {})\n  \
         dashboard   {}/#token={api_token}\n  \
         sim pins    {sim_url}/sim/gpiochip0\n  \
         broker      mqtt://{broker}\n  \
         try         {me} ctl set traffic-light red=ON\n              \
         {me} ctl get device traffic-light -o yaml\n  \
         stop        Ctrl-C",
        dir.root().display(),
        registry_url,
    );
    if dir.root() != DataDir::default_location().as_path() {
        println!(
            "  (ctl needs --data-dir {} or EDGETWIN_DATA_DIR to find this demo)",
            dir.root().display()
        );
    }

    let outcome = tokio::select! {
        () = crate::cloud::shutdown_signal() => Ok(()),
        status = mapper.wait() => Err(anyhow::anyhow!(
            "the GPIO mapper exited ({}); stopping",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        )),
    };
    stop_all(Some(mapper), agent, cloud).await;
    outcome
}

/// How to run this executable from the current directory, as printed in the hints: `edgetwin`
/// when that name on the PATH is this file, else its path (relative to the current directory
/// when inside it, e.g. `target/release/edgetwin` after `cargo up`).
fn this_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "edgetwin".to_owned();
    };
    let cwd = std::env::current_dir().ok();
    let path = std::env::var_os("PATH");
    command_for(&exe, cwd.as_deref(), path.as_deref())
}

/// [`this_command`] with its inputs explicit (for tests).
fn command_for(exe: &Path, cwd: Option<&Path>, path: Option<&std::ffi::OsStr>) -> String {
    let same_file =
        |candidate: &Path| match (std::fs::canonicalize(candidate), std::fs::canonicalize(exe)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
    if let Some(name) = exe.file_name()
        && let Some(path) = path
        && let Some(found) = std::env::split_paths(path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
        && same_file(&found)
    {
        return name.to_string_lossy().into_owned();
    }
    match cwd.and_then(|cwd| exe.strip_prefix(cwd).ok()) {
        Some(relative) if relative.parent().is_some_and(|p| !p.as_os_str().is_empty()) => {
            relative.display().to_string()
        }
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    }
}

/// The mapper binary: the flag or environment, else next to this executable. A missing binary
/// is an error that says how to build it.
fn mapper_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find this executable's directory")?
            .with_file_name(MAPPER_BIN),
    };
    if !path.is_file() {
        bail!(
            "the GPIO mapper {} is missing: build it with \
             `cargo build --release -p edgetwin-core -p edgetwin-mapper-gpio` \
             (or run the demo with `cargo up`, which builds both), \
             or point --mapper / EDGETWIN_MAPPER_GPIO at it",
            path.display()
        );
    }
    Ok(path)
}

/// Loads the example's DeviceModel and Device unless they exist (a second start keeps what is
/// stored, desired values included).
async fn seed_example(url: &str, token: &str) -> anyhow::Result<()> {
    let client = RegistryClient::new(url, token).context("registry client")?;
    for (yaml, source) in [
        (MODEL_YAML, "examples/traffic-light/model.yaml"),
        (DEVICE_YAML, "examples/traffic-light/device.yaml"),
    ] {
        for document in edgetwin_model::devices::load::from_str(yaml, source)? {
            let (kind, namespace, name) = match &document.manifest {
                Manifest::Device(d) => (Kind::Device, d.namespace(), d.name()),
                Manifest::DeviceModel(m) => (Kind::DeviceModel, m.namespace(), m.name()),
            };
            let (namespace, name) = (namespace.to_owned(), name.to_owned());
            match client
                .get::<serde_json::Value>(kind, &namespace, &name)
                .await
            {
                Ok(_) => {
                    tracing::info!(kind = kind.as_str(), %name, "kept the stored object");
                    continue;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e).context("cannot read the registry"),
            }
            let applied = match &document.manifest {
                Manifest::Device(d) => {
                    client
                        .apply::<_, serde_json::Value>(kind, &namespace, &name, d)
                        .await
                }
                Manifest::DeviceModel(m) => {
                    client
                        .apply::<_, serde_json::Value>(kind, &namespace, &name, m)
                        .await
                }
            };
            applied.with_context(|| format!("cannot load {source}"))?;
            tracing::info!(kind = kind.as_str(), %name, "loaded the example");
        }
    }
    Ok(())
}

/// Starts the mapper on the simulated chip, in its own process group (Ctrl-C reaches
/// `edgetwin up`, which stops the mapper itself), and waits for its simulated-pin URL.
async fn start_mapper(
    bin: &Path,
    broker: &str,
    credentials: &Path,
    sim_http: SocketAddr,
) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(bin);
    command
        .args(["--node", NODE, "--broker", broker, "--backend", "sim"])
        .arg("--credentials")
        .arg(credentials)
        // The mapper ends when this process dies, however it dies.
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .arg("--sim-http")
        .arg(sim_http.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("the mapper's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(MAPPER_START, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix(SIM_HTTP_LINE) {
                return Ok(url.trim().to_owned());
            }
            println!("{line}");
        }
        Err(std::io::Error::other("the mapper exited before it served"))
    })
    .await;
    let url = match url {
        Ok(Ok(url)) => url,
        Ok(Err(err)) => {
            let _ = child.kill().await;
            return Err(err).context("the GPIO mapper did not start");
        }
        Err(_) => {
            let _ = child.kill().await;
            bail!("the GPIO mapper did not start within {MAPPER_START:?}");
        }
    };
    // The rest of the mapper's stdout goes to ours.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    });
    Ok((child, url))
}

/// Stops the mapper (SIGTERM by pid, then SIGKILL after [`MAPPER_STOP`]), then the edge, then
/// the cloud (which writes its last status patches).
async fn stop_all(mapper: Option<Child>, agent: AgentHandle, cloud: CloudHandle) {
    if let Some(mut mapper) = mapper {
        terminate(&mut mapper).await;
    }
    agent.shutdown().await;
    cloud.shutdown().await;
    println!("edgetwin up: stopped");
}

async fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        // No libc (unsafe is forbidden): the kill(1) command sends SIGTERM.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(MAPPER_STOP, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("the GPIO mapper did not stop on SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn the_hint_names_a_command_that_runs_as_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("target/release");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let exe = bin.join("edgetwin");
        std::fs::write(&exe, b"").expect("write");
        // Not on the PATH: the path from the current directory.
        let elsewhere = OsString::from("/nonexistent-dir");
        assert_eq!(
            command_for(&exe, Some(dir.path()), Some(&elsewhere)),
            "target/release/edgetwin"
        );
        assert_eq!(
            command_for(&exe, Some(&bin), Some(&elsewhere)),
            "./edgetwin"
        );
        assert_eq!(
            command_for(&exe, Some(Path::new("/nonexistent-dir")), None),
            exe.display().to_string()
        );
        // On the PATH (this very file): the bare name.
        let path =
            std::env::join_paths([Path::new("/nonexistent-dir"), bin.as_path()]).expect("join");
        assert_eq!(command_for(&exe, Some(dir.path()), Some(&path)), "edgetwin");
        // Another `edgetwin` first on the PATH: not this one, so the path.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(other.join("edgetwin"), b"x").expect("write");
        let path = std::env::join_paths([other.as_path(), bin.as_path()]).expect("join");
        assert_eq!(
            command_for(&exe, Some(dir.path()), Some(&path)),
            "target/release/edgetwin"
        );
    }
}
