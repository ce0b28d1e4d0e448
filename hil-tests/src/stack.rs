//! The whole stack of the rig as separate processes, as a deployment runs it: `edgetwin cloud`
//! (embedded registry, controller, tunnel hub), `edgetwin edge` (twin store, embedded broker)
//! joined to it over a loopback tunnel, and `edgetwin-mapper-gpio` on the rig's pins. The test
//! is the user: it sets desired values through the registry's API (what `edgetwin ctl set`
//! sends) and reads the Device back. Every process can be killed (SIGKILL), frozen (SIGSTOP) and
//! started again on the same files; all of them are killed by pid when the stack is dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgetwin_core::cloud::registry::Kind;
use edgetwin_core::cloud::registry::embedded::client::RegistryClient;
use jiff::Timestamp;
use rustix::process::Signal;
use serde_json::Value;

use crate::http;
use crate::observe;
use crate::pins::PinView;
use crate::process::{Proc, print_logs};
use crate::rig::{Pins, Rig};
use crate::wiring::{self, DEVICE, JUMPERS, NODE};

/// How often a wait reads the Device again.
const POLL: Duration = Duration::from_millis(20);
/// The prefix of the mapper's first stdout line with `--sim-http`.
const SIM_HTTP_LINE: &str = "sim-http listening on http://";

/// A running stack and its files.
pub struct Stack {
    rig: Rig,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    client: RegistryClient,
    cloud: Proc,
    /// `None` until started.
    edge: Option<Proc>,
    broker: SocketAddr,
    /// `None` until started.
    mapper: Option<Proc>,
    metrics: SocketAddr,
    view: PinView,
}

impl Stack {
    /// Starts the cloud, applies the rig's model and Device, starts the edge agent and the
    /// mapper, and waits until every lamp is Verified `OFF` and every input reports `OFF`.
    ///
    /// # Panics
    /// When a process does not start or the stack does not reach that state within the rig's
    /// wait.
    pub fn start(rig: &Rig) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let tunnel = loopback(free_port());
        let cloud_dir = dir.path().join("cloud");
        let cloud_config = dir.path().join("cloud.yaml");
        write(
            &cloud_config,
            &format!(
                "listen: {tunnel}\ninsecure: true\ndataDir: {}\nregistry:\n  embedded:\n    apiListen: 127.0.0.1:0\nstatusIntervalMs: 100\nmetricsListen: null\n",
                cloud_dir.display()
            ),
        );
        let cloud = Proc::spawn(
            "cloud",
            rig.cloud
                .command()
                .args(["cloud", "-c"])
                .arg(&cloud_config)
                .env("RUST_LOG", "info"),
            &dir.path().join("cloud.log"),
            None,
        );
        let logs = log_paths(dir.path());
        wait_until(rig.wait, "the cloud listens", &logs, || {
            cloud_dir.join("registry.url").exists() && TcpStream::connect(tunnel).is_ok()
        });
        let client = edgetwin_core::ctl::connect(None, None, Some(&cloud_dir))
            .expect("a registry client from the cloud's data directory");
        let token = run_ok(
            rig.cloud
                .command()
                .args(["cloud", "token", "create", NODE, "--db"])
                .arg(cloud_dir.join("cloud.db")),
        );
        let manifest = dir.path().join("hil-light.yaml");
        write(&manifest, &wiring::manifests(&rig.pins));
        run_ok(
            rig.cloud
                .command()
                .arg("ctl")
                .arg("--data-dir")
                .arg(&cloud_dir)
                .args(["apply", "-f"])
                .arg(&manifest),
        );

        let broker = loopback(free_port());
        write(
            &dir.path().join("edge.yaml"),
            &format!(
                "nodeName: {NODE}\ndataDir: {}\nbroker:\n  embedded:\n    listen: {broker}\nhttp:\n  listen: null\ncloud:\n  url: ws://{tunnel}\n  token: {}\n  insecure: true\n  reconnectMinMs: 50\n  reconnectMaxMs: 500\n\
                 bus:\n  clients:\n    - name: gpio\n      protocols: [gpio]\n",
                dir.path().join("edge").display(),
                token.trim()
            ),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the registry client");
        let mut stack = Stack {
            edge: None,
            mapper: None,
            metrics: loopback(free_port()),
            view: PinView::Unavailable,
            rig: rig.clone(),
            dir,
            runtime,
            client,
            cloud,
            broker,
        };
        stack.start_edge();
        stack.start_mapper();
        stack.wait_lamps("the rig starts with every lamp off", [false; 3]);
        stack
    }

    /// The rig the stack runs on.
    pub fn rig(&self) -> &Rig {
        &self.rig
    }

    /// The Device as the registry holds it.
    ///
    /// # Panics
    /// When the registry does not answer.
    pub fn device(&self) -> Value {
        self.runtime
            .block_on(self.client.get::<Value>(Kind::Device, "default", DEVICE))
            .unwrap_or_else(|e| panic!("reading {DEVICE}: {e}"))
    }

    /// Sets desired values (`[("red", "ON")]`) in one request, as `edgetwin ctl set` does;
    /// returns the time just before the request was sent.
    ///
    /// # Panics
    /// When the registry refuses it.
    pub fn set(&self, values: &[(&str, &str)]) -> Timestamp {
        let values: Vec<(String, String)> = values
            .iter()
            .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
            .collect();
        let sent = Timestamp::now();
        self.runtime
            .block_on(self.client.set_desired::<Value>("default", DEVICE, &values))
            .unwrap_or_else(|e| panic!("setting {values:?}: {e}"));
        sent
    }

    /// Reads the Device until `done` holds; returns it.
    ///
    /// # Panics
    /// When `done` does not hold within the rig's wait (with the last status and the logs).
    pub fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + self.rig.wait;
        loop {
            let device = self.device();
            if done(&device) {
                return device;
            }
            if Instant::now() > deadline {
                print_logs(&log_paths(self.dir.path()));
                panic!(
                    "[{}] {what}: not within {:?}; status: {}",
                    self.rig.name, self.rig.wait, device["status"]
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until each lamp is Verified at its level (`[red, yellow, green]`, `true` = ON) and
    /// each lamp's input reports the same level: the pins really are there.
    pub fn wait_lamps(&self, what: &str, on: [bool; 3]) -> Value {
        self.wait_for(what, |device| {
            JUMPERS.iter().zip(on).all(|(j, on)| {
                let value = on_off(on);
                observe::verified(device, j.lamp, value)
                    && observe::reported(device, j.sense) == Some(value)
            })
        })
    }

    /// The pins as seen from outside the stack (see [`PinView`]).
    pub fn pins(&self) -> &PinView {
        &self.view
    }

    /// The mapper's Prometheus sample `name{device="default/hil-light"…}` (0 when absent).
    ///
    /// # Panics
    /// When the mapper's metrics endpoint does not answer.
    pub fn mapper_metric(&self, name: &str, extra_labels: &str) -> f64 {
        let (status, text) = http::get(self.metrics, "/metrics")
            .unwrap_or_else(|e| panic!("the mapper's metrics: {e}"));
        assert_eq!(status, 200, "the mapper's metrics: {text}");
        let series = format!("{name}{{device=\"default/{DEVICE}\"{extra_labels}}}");
        http::sample(&text, &series)
    }

    /// SIGKILLs the edge agent.
    pub fn kill_edge(&mut self) {
        if let Some(edge) = &mut self.edge {
            edge.kill();
        }
    }

    /// Starts the edge agent (again) on its configuration and store, and waits for its broker.
    pub fn start_edge(&mut self) {
        self.kill_edge();
        self.edge = Some(Proc::spawn(
            "edge",
            self.rig
                .edge
                .command()
                .args(["edge", "-c"])
                .arg(self.dir.path().join("edge.yaml"))
                .env("RUST_LOG", "info"),
            &self.dir.path().join("edge.log"),
            None,
        ));
        let broker = self.broker;
        wait_until(
            self.rig.wait,
            "the edge agent's broker listens",
            &log_paths(self.dir.path()),
            || TcpStream::connect(broker).is_ok(),
        );
    }

    /// SIGKILLs the mapper: it dies holding its lines, as in a crash.
    pub fn kill_mapper(&mut self) {
        if let Some(mapper) = &mut self.mapper {
            mapper.kill();
        }
    }

    fn running_mapper(&mut self) -> &mut Proc {
        self.mapper.as_mut().expect("the mapper was started")
    }

    /// Stops the mapper with SIGTERM (as systemd does) and waits for its clean exit.
    ///
    /// # Panics
    /// When it does not exit with 0 within the rig's wait.
    pub fn stop_mapper(&mut self) {
        let wait = self.rig.wait;
        let mapper = self.running_mapper();
        mapper.signal(Signal::TERM);
        let status = mapper.wait_exit(wait);
        assert!(
            status.is_some_and(|s| s.success()),
            "[{}] the mapper did not stop cleanly on SIGTERM: {status:?}",
            self.rig.name
        );
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the mapper.
    pub fn freeze_mapper(&mut self, frozen: bool) {
        self.running_mapper()
            .signal(if frozen { Signal::STOP } else { Signal::CONT });
    }

    /// Starts the mapper (again) with the same arguments and, on the simulated chip, the same
    /// pin state directory; waits for its endpoints.
    pub fn start_mapper(&mut self) {
        self.kill_mapper();
        let dir = self.dir.path();
        let stdout = dir.join("mapper.out");
        // Only this start's first line matters.
        write(&stdout, "");
        let mut command = self.rig.mapper.command();
        command
            .args(["--backend", self.rig.pins.backend(), "--node", NODE])
            .arg("--broker")
            .arg(self.broker.to_string())
            .arg("--metrics")
            .arg(self.metrics.to_string())
            // The bus credentials the edge agent wrote for its client `gpio` (edge.yaml).
            .arg("--credentials")
            .arg(dir.join("edge").join("bus").join("gpio.json"))
            .env("RUST_LOG", "info");
        if self.rig.pins == Pins::Simulated {
            command
                .args(["--sim-http", "127.0.0.1:0", "--sim-state"])
                .arg(dir.join("sim-pins"));
            for wire in wiring::sim_wires() {
                command.args(["--sim-wire", &wire]);
            }
        }
        self.mapper = Some(Proc::spawn(
            "mapper",
            &mut command,
            &dir.join("mapper.log"),
            Some(&stdout),
        ));
        let logs = log_paths(dir);
        let metrics = self.metrics;
        wait_until(self.rig.wait, "the mapper's metrics answer", &logs, || {
            TcpStream::connect(metrics).is_ok()
        });
        self.view = match &self.rig.pins {
            Pins::Simulated => {
                let mut addr = None;
                wait_until(
                    self.rig.wait,
                    "the mapper prints its sim view",
                    &logs,
                    || {
                        addr = std::fs::read_to_string(&stdout).ok().and_then(|text| {
                            text.lines()
                                .next()?
                                .strip_prefix(SIM_HTTP_LINE)?
                                .trim()
                                .parse()
                                .ok()
                        });
                        addr.is_some()
                    },
                );
                addr.map_or(PinView::Unavailable, PinView::Sim)
            }
            Pins::Rpi => PinView::rpi(),
            Pins::Cdev { .. } => PinView::Unavailable,
        };
    }

    /// Whether the mapper process still runs.
    pub fn mapper_running(&mut self) -> bool {
        self.mapper.as_mut().is_some_and(Proc::is_running)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(&log_paths(self.dir.path()));
        }
        // Mapper first (it would only retry its broker), then the edge and the cloud.
        self.kill_mapper();
        self.kill_edge();
        self.cloud.kill();
    }
}

/// `ON` or `OFF`.
pub fn on_off(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

fn log_paths(dir: &Path) -> Vec<PathBuf> {
    ["cloud.log", "edge.log", "mapper.log"]
        .iter()
        .map(|name| dir.join(name))
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port nothing listens on right now (chosen by the kernel).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Runs a short command to its end; its stdout, or a panic with its stderr.
fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_until(within: Duration, what: &str, logs: &[PathBuf], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            print_logs(logs);
            panic!("timed out after {within:?} waiting until {what}");
        }
        std::thread::sleep(POLL);
    }
}
