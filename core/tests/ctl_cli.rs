//! The real `edgetwin ctl` binary against a real `edgetwin cloud --registry-only` process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The registry's test fixtures (shared with the library's tests).
const MODEL: &str = include_str!("fixtures/registry/traffic-light-model.yaml");
const DEVICE: &str = include_str!("fixtures/registry/traffic-light.yaml");

fn edgetwin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgetwin"));
    for var in [
        "EDGETWIN_SERVER",
        "EDGETWIN_TOKEN",
        "EDGETWIN_DATA_DIR",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// `edgetwin cloud --registry-only` on a free port in a temp data dir; SIGKILLed if the test
/// did not stop it.
struct Registry {
    child: Child,
    data_dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let child = edgetwin()
            .args([
                "cloud",
                "--registry-only",
                "--registry-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts edgetwin cloud");
        let registry = Self { child, data_dir };
        let url_file = registry.dir().join("registry.url");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !url_file.exists() {
            assert!(
                Instant::now() < deadline,
                "the registry never wrote {}",
                url_file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    fn dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Runs `edgetwin ctl --data-dir DIR ARGS…`.
    fn ctl(&self, args: &[&str]) -> Output {
        edgetwin()
            .arg("ctl")
            .arg("--data-dir")
            .arg(self.dir())
            .args(args)
            .output()
            .expect("runs edgetwin ctl")
    }

    /// Stops the registry with SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "edgetwin cloud exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "edgetwin cloud did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !self.dir().join("registry.url").exists(),
            "the URL file is removed at shutdown"
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

#[track_caller]
fn fails(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

fn write_manifests(dir: &Path) -> PathBuf {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(manifests.join("model.yaml"), MODEL).expect("write");
    std::fs::write(manifests.join("traffic-light.yaml"), DEVICE).expect("write");
    manifests
}

#[test]
fn the_traffic_light_walkthrough() {
    let registry = Registry::start();
    let manifests = write_manifests(registry.dir());
    let manifests = manifests.to_str().expect("utf-8 path");

    let out = ok(registry.ctl(&["apply", "-f", manifests]));
    assert_eq!(
        out,
        "devicemodel.devices.kubeedge.io/traffic-light-model created\ndevice.devices.kubeedge.io/traffic-light created\n"
    );
    let out = ok(registry.ctl(&["apply", "-f", manifests]));
    assert!(out.contains("traffic-light unchanged"), "{out}");

    let out = ok(registry.ctl(&["get", "devices"]));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "NODE", "MODEL", "PROTOCOL", "STATE", "AGE"]
    );
    assert_eq!(
        rows[1][..5],
        [
            "traffic-light",
            "pi-1",
            "traffic-light-model",
            "gpio",
            "<none>"
        ]
    );

    // The issue's own words: `set traffic-light red=ON`, and the singular `get device … -o json`.
    let out = ok(registry.ctl(&["set", "traffic-light", "red=ON"]));
    assert_eq!(out, "device.devices.kubeedge.io/traffic-light patched\n");
    let out = ok(registry.ctl(&["set", "device", "traffic-light", "amber=ON", "green=OFF"]));
    assert_eq!(out, "device.devices.kubeedge.io/traffic-light patched\n");
    let out = ok(registry.ctl(&["get", "device", "traffic-light", "-o", "json"]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let desired: Vec<&str> = json["spec"]["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .filter_map(|p| p["desired"]["value"].as_str())
        .collect();
    assert_eq!(desired, ["ON", "ON", "OFF", "100"]);
    assert_eq!(json["metadata"]["generation"], 3);

    let out = ok(registry.ctl(&["get", "devices", "-o", "wide"]));
    assert!(
        out.contains("red=ON,amber=ON,green=OFF,brightness=100"),
        "{out}"
    );

    let out = ok(registry.ctl(&["describe", "device", "traffic-light"]));
    assert!(
        out.starts_with("Name:                 traffic-light\n"),
        "{out}"
    );
    assert!(out.contains("  red:\n    Desired:          ON\n"), "{out}");
    assert!(
        out.contains("Generation:           3 (not observed yet)\n"),
        "{out}"
    );

    let out = ok(registry.ctl(&[
        "patch",
        "device",
        "traffic-light",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"nodeName":"pi-2"}}"#,
    ]));
    assert_eq!(out, "device.devices.kubeedge.io/traffic-light patched\n");
    let out = ok(registry.ctl(&["get", "dev", "traffic-light", "-o", "yaml"]));
    assert!(out.contains("nodeName: pi-2"), "{out}");

    let out = ok(registry.ctl(&["get", "dm"]));
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("traffic-light-model"), "{out}");

    // What `get -o name` prints is what `delete` takes, as with kubectl.
    let name = ok(registry.ctl(&["get", "device", "traffic-light", "-o", "name"]));
    assert_eq!(name, "device.devices.kubeedge.io/traffic-light\n");
    let out = ok(registry.ctl(&["delete", name.trim()]));
    assert_eq!(
        out,
        "device.devices.kubeedge.io \"traffic-light\" deleted\n"
    );
    let err = fails(registry.ctl(&["get", "device", "traffic-light"]));
    assert_eq!(
        err,
        "Error from server (NotFound): devices.devices.kubeedge.io \"traffic-light\" not found\n"
    );
    let out = ok(registry.ctl(&["delete", "-f", &format!("{manifests}/model.yaml")]));
    assert_eq!(
        out,
        "devicemodel.devices.kubeedge.io \"traffic-light-model\" deleted\n"
    );
    let output = registry.ctl(&["get", "devices"]);
    assert!(output.status.success());
    assert_eq!(
        stderr(&output),
        "No resources found in default namespace.\n"
    );

    registry.stop();
}

#[test]
fn failures_exit_1_with_the_servers_message() {
    let registry = Registry::start();
    let manifests = write_manifests(registry.dir());
    ok(registry.ctl(&["apply", "-f", manifests.to_str().expect("utf-8")]));

    let err = fails(registry.ctl(&["set", "traffic-light", "brightness=dim"]));
    assert!(
        err.starts_with("Error from server (Invalid): Device.devices.kubeedge.io \"traffic-light\" is invalid: spec.properties[3].desired.value: Invalid value: \"dim\""),
        "{err}"
    );
    let err = fails(registry.ctl(&["set", "traffic-light", "blue=ON"]));
    assert!(err.contains("has no property \"blue\""), "{err}");

    let bad = registry.dir().join("bad.yaml");
    std::fs::write(&bad, DEVICE.replace("nodeName: pi-1", "nodeName: [pi-1")).expect("write");
    let err = fails(registry.ctl(&["apply", "-f", bad.to_str().expect("utf-8")]));
    assert!(err.contains("bad.yaml:"), "names the file: {err}");

    let err = fails(registry.ctl(&["--token", "guess", "get", "devices"]));
    assert!(err.starts_with("Error from server (Unauthorized)"), "{err}");
    let err = fails(registry.ctl(&["get", "pods"]));
    assert!(
        err.contains("doesn't have a resource type \"pods\""),
        "{err}"
    );
    let err = fails(registry.ctl(&[
        "patch",
        "device",
        "traffic-light",
        "--type",
        "strategic",
        "-p",
        "{}",
    ]));
    assert!(
        err.contains("use merge (RFC 7386) or json (RFC 6902)"),
        "{err}"
    );
    let err = fails(registry.ctl(&[
        "patch",
        "device",
        "traffic-light",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/nodeName","value":"pi-9"}]"#,
    ]));
    assert!(
        err.starts_with("Error from server (Invalid)") && err.contains("value did not match"),
        "{err}"
    );

    let elsewhere = tempfile::tempdir().expect("temp dir");
    let output = edgetwin()
        .args(["ctl", "--data-dir"])
        .arg(elsewhere.path())
        .args(["get", "devices"])
        .output()
        .expect("runs");
    let err = fails(output);
    assert!(err.contains("no registry URL"), "{err}");
    registry.stop();

    // The server is gone: a clear connection error.
    let output = edgetwin()
        .args([
            "ctl",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "t",
            "get",
            "devices",
        ])
        .output()
        .expect("runs");
    let err = fails(output);
    assert!(
        err.starts_with("cannot connect to the registry at http://127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn watch_streams_changes_until_the_registry_stops() {
    let registry = Registry::start();
    let manifests = write_manifests(registry.dir());
    ok(registry.ctl(&["apply", "-f", manifests.to_str().expect("utf-8")]));

    let mut watch = edgetwin()
        .arg("ctl")
        .arg("--data-dir")
        .arg(registry.dir())
        .args(["watch", "devices"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts the watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = BufReader::new(watch.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a watch line within 30 s")
    };
    assert!(next_line().starts_with("EVENT"));
    let added: Vec<String> = next_line().split_whitespace().map(String::from).collect();
    assert_eq!(added[..3], ["ADDED", "default", "traffic-light"]);

    ok(registry.ctl(&["set", "traffic-light", "red=ON"]));
    let modified: Vec<String> = next_line().split_whitespace().map(String::from).collect();
    assert_eq!(modified[..3], ["MODIFIED", "default", "traffic-light"]);
    assert!(modified[5].starts_with("red=ON,"), "{modified:?}");

    registry.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = watch.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = watch.kill();
            panic!("the watch did not end with the registry");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the watch ends cleanly: {status}");
}

#[test]
fn cloud_without_registry_only_checks_its_configuration() {
    let output = edgetwin()
        .args(["cloud", "--print-default-config"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("statusIntervalMs: 1000"));
    let output = edgetwin().arg("cloud").output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("`tls`"), "{}", stderr(&output));
}

#[test]
#[cfg(feature = "kube")]
fn cloud_with_the_kubernetes_registry_and_no_cluster_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cloud.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ninsecure: true\ndataDir: {}\nmetricsListen: null\nregistry:\n  kubernetes:\n    namespace: plant-a\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let output = edgetwin()
        .args(["cloud", "-c"])
        .arg(&config)
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("no Kubernetes cluster configuration found")
            && message.contains("KUBECONFIG"),
        "{message}"
    );
}
