//! The user's path, as the README tells it: `edgetwin up` (cloud + edge in one process, the GPIO
//! mapper as its child on the simulated chip), then `edgetwin ctl set` / `ctl get` from another
//! process, the simulated pin through the mapper's HTTP view, the interlock, the dashboard in
//! headless Chromium, Ctrl-C (SIGINT) and a second start that resumes the stored state.
//!
//! The binaries come from the workspace build (see `binaries()`; built here only when missing).

#[path = "../../../core/tests/support/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use edgetwin_example_traffic_light::stop_up;
use edgetwin_testkit::binaries;
use serde_json::Value;

/// How long `edgetwin up` may take to print its banner (a loaded CI machine, first start).
const START: Duration = Duration::from_secs(60);
/// The bound for desired → reported + Verified, seen through `edgetwin ctl`.
const VERIFIED_WITHIN: Duration = Duration::from_secs(1);

/// The `edgetwin` and `edgetwin-mapper-gpio` binaries of this build's target directory (built
/// only when missing: see `edgetwin_testkit::binaries`).
fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINARIES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let found = binaries::workspace_binaries(&[binaries::EDGETWIN, binaries::MAPPER_GPIO]);
        (found[0].clone(), found[1].clone())
    })
}

/// A running `edgetwin up`, killed by pid when dropped.
struct Up {
    child: Child,
    data_dir: PathBuf,
    dashboard: String,
    sim: SocketAddr,
    _stdout: std::thread::JoinHandle<()>,
}

impl Up {
    /// Started with its stderr (and its mapper's) appended to `data_dir/up.log`.
    fn start(data_dir: &Path) -> Self {
        let (edgetwin, mapper) = binaries();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(data_dir))
            .expect("log file");
        let mut child = edgetwin_example_traffic_light::up_command(edgetwin, mapper, data_dir)
            .stderr(log)
            .spawn()
            .expect("edgetwin up starts");
        let stdout = child.stdout.take().expect("stdout");
        let (dashboard, sim, rest) = read_banner(stdout, &mut child);
        Self {
            child,
            data_dir: data_dir.to_path_buf(),
            dashboard,
            sim,
            _stdout: rest,
        }
    }

    /// `edgetwin ctl ARGS` against this demo; its stdout, or a panic with its stderr.
    fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new(&binaries().0)
            .arg("ctl")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .expect("ctl runs");
        assert!(
            output.status.success(),
            "edgetwin ctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    fn device(&self) -> Value {
        serde_json::from_str(&self.ctl(&["get", "device", "traffic-light", "-o", "json"]))
            .expect("ctl get -o json is JSON")
    }

    /// The simulated line `line` of gpiochip0 as the mapper's HTTP view shows it.
    fn pin(&self, line: u32) -> Value {
        webdriver::request(self.sim, "GET", &format!("/sim/gpiochip0/{line}"), None)
            .expect("the sim view answers")
    }

    /// Stops with SIGINT (Ctrl-C) and waits for a clean exit.
    fn interrupt(mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                assert!(
                    status.success(),
                    "edgetwin up exited with {status} on Ctrl-C"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edgetwin up did not stop on Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    /// After a failed assertion: stopped as the lib's [`stop_up`] does.
    fn drop(&mut self) {
        stop_up(&mut self.child);
    }
}

/// The log of the `edgetwin up` runs in `data_dir` (removed with it).
fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("up.log")
}

/// Reads the banner for the dashboard URL and the simulated pins' address; the rest of stdout
/// is echoed by a thread (so the pipe never fills).
fn read_banner(
    stdout: ChildStdout,
    child: &mut Child,
) -> (String, SocketAddr, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("[up] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START;
    let (mut dashboard, mut sim) = (None, None);
    while dashboard.is_none() || sim.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim();
                if let Some(url) = line.strip_prefix("dashboard") {
                    dashboard = Some(url.trim().to_owned());
                } else if let Some(url) = line.strip_prefix("sim pins") {
                    let addr = url
                        .trim()
                        .trim_start_matches("http://")
                        .split('/')
                        .next()
                        .expect("host:port");
                    sim = Some(addr.parse().expect("a socket address"));
                }
            }
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                panic!("no banner from edgetwin up within {START:?} (exit: {status:?})");
            }
        }
    }
    (dashboard.expect("dashboard"), sim.expect("sim"), echo)
}

/// The twin of `property` in a Device's JSON.
fn twin<'a>(device: &'a Value, property: &str) -> &'a Value {
    device["status"]["twins"]
        .as_array()
        .and_then(|twins| twins.iter().find(|t| t["propertyName"] == property))
        .unwrap_or(&Value::Null)
}

/// Polls `ctl get` until `done` holds for the device, or panics with the last state.
fn wait_for(up: &Up, within: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let device = up.device();
        if done(&device) {
            return device;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; status: {}",
            device["status"]
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls the simulated line until its level is `level`.
fn wait_pin(up: &Up, line: u32, level: &str) {
    let started = Instant::now();
    loop {
        let pin = up.pin(line);
        if pin["level"] == level {
            return;
        }
        assert!(
            started.elapsed() < START,
            "line {line} is not {level}: {pin}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn verified(device: &Value, property: &str, value: &str) -> bool {
    let twin = twin(device, property);
    twin["reported"]["value"] == value && twin["condition"]["type"] == "Verified"
}

#[test]
fn e2e_up_ctl_set_reaches_the_pin_and_comes_back_verified_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(dir.path());
    // The example is loaded and the edge reported the lamps: all off.
    wait_for(&up, START, "the lamps reported OFF", |d| {
        verified(d, "red", "OFF") && verified(d, "green", "OFF")
    });
    assert_eq!(up.pin(17)["level"], "low");

    up.ctl(&["set", "traffic-light", "red=ON"]);
    let device = wait_for(&up, VERIFIED_WITHIN, "red=ON reported and Verified", |d| {
        verified(d, "red", "ON")
    });
    assert_eq!(device["spec"]["properties"][0]["desired"]["value"], "ON");
    let red = up.pin(17);
    assert_eq!(red["level"], "high", "the simulated red pin: {red}");
    assert_eq!(red["consumer"], "default/traffic-light:red");

    // Ctrl-C stops everything; a second start in the same directory resumes.
    up.interrupt();
    let again = Up::start(dir.path());
    wait_for(&again, START, "red still ON after a restart", |d| {
        verified(d, "red", "ON")
    });
    // The stored status says ON at once; the pin follows when the mapper has the twin again.
    wait_pin(&again, 17, "high");
    again.interrupt();

    // Two normal starts, a set and two Ctrl-C stops (the mapper's included) log nothing at
    // WARN or above (`up_command` sets RUST_LOG=warn), and no colour codes into a file.
    let log = std::fs::read_to_string(log_path(dir.path())).unwrap_or_default();
    let complaints: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    assert!(
        complaints.is_empty(),
        "a normal run of edgetwin up logs no WARN or ERROR:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file: {log}"
    );
}

#[test]
fn e2e_up_the_interlock_keeps_green_off_while_red_is_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(dir.path());
    up.ctl(&["set", "traffic-light", "red=ON"]);
    wait_for(&up, START, "red=ON Verified", |d| verified(d, "red", "ON"));

    up.ctl(&["set", "traffic-light", "green=ON"]);
    // The refusal is not a reported value: give the edge time to (not) move the pin, then
    // check the pin, the reported value and the condition.
    wait_for(
        &up,
        START,
        "green's desired value reached the controller",
        |d| {
            twin(d, "green")["observedDesired"]["value"] == "ON"
                || twin(d, "green")["condition"]["type"] != "Verified"
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(up.pin(22)["level"], "low", "the green pin never moved");
    assert_eq!(up.pin(17)["level"], "high", "red stays on");
    // The mapper's refusal travels up (twin/update `write_error` → edge outbox → tunnel →
    // controller) and turns the condition Failed with the interlock's reason.
    let device = wait_for(
        &up,
        START,
        "green Failed with the interlock's reason",
        |d| twin(d, "green")["condition"]["type"] == "Failed",
    );
    let green = twin(&device, "green");
    assert_eq!(
        green["reported"]["value"], "OFF",
        "green stays reported OFF"
    );
    let message = green["condition"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("interlock") && message.contains("green"),
        "the condition names the refusal: {green}"
    );

    // Red off, then green on: allowed.
    up.ctl(&["set", "traffic-light", "red=OFF", "green=ON"]);
    wait_for(&up, START, "green=ON Verified once red is off", |d| {
        verified(d, "red", "OFF") && verified(d, "green", "ON")
    });
    assert_eq!(up.pin(22)["level"], "high");
    up.interrupt();
}

#[test]
fn e2e_up_dashboard_red_button_lights_the_drawn_lamp_from_reported() {
    if !webdriver::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(dir.path());
    wait_for(&up, START, "the lamps reported OFF", |d| {
        verified(d, "red", "OFF")
    });
    let lamp = "circle.lamp[data-lamp='red']";
    let browser = webdriver::Browser::start();
    browser.goto(&up.dashboard);
    browser.wait_attribute("#access", "data-mode", "control", START);
    browser.wait_attribute(lamp, "data-on", "false", START);
    browser.click(
        "section.device[data-name='traffic-light'] button[data-property='red'][data-on='true']",
    );
    browser.wait_attribute(lamp, "data-on", "true", Duration::from_secs(10));
    browser.wait_attribute(
        "tr[data-property='red'] .condition",
        "data-type",
        "Verified",
        Duration::from_secs(10),
    );
    assert_eq!(up.pin(17)["level"], "high");
    let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(target, PathBuf::from);
    let shot = browser.screenshot(&target.join("screenshots/traffic-light.png"));
    println!("screenshot: {}", shot.display());
    drop(browser);
    up.interrupt();
}
