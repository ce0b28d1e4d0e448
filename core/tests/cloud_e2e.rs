//! End to end with real processes on loopback: `edgetwin cloud` (embedded registry), two
//! `edgetwin edge` nodes (each with its embedded broker), and a scripted MQTT mapper per node
//! that answers every delta by reporting the desired value (and refuses the value [`REFUSED`] with
//! a `write_error`, as an interlock would). `edgetwin ctl` drives the registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgetwin_testkit::proxy::TcpProxy;
use edgetwin_testkit::{TestClient, free_port};
use serde_json::{Value, json};

/// The desired value the scripted mapper refuses, and why.
const REFUSED: &str = "overload";
const REFUSAL: &str = "interlock: the circuit would be overloaded";

/// How long a test waits for a state it expects (generous: CI shares 2 cores).
const WAIT: Duration = Duration::from_secs(30);

const MANIFEST: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: lamp
  namespace: default
spec:
  properties:
    - name: power
      type: STRING
      accessMode: ReadWrite
    - name: temp
      type: INT
      accessMode: ReadOnly
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: lamp-1
  namespace: default
spec:
  deviceModelRef:
    name: lamp
  nodeName: n1
  properties:
    - name: power
      desired:
        value: "off"
    - name: temp
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: lamp-2
  namespace: default
spec:
  deviceModelRef:
    name: lamp
  nodeName: n2
  properties:
    - name: power
      desired:
        value: "off"
"#;

fn edgetwin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgetwin"));
    for var in ["EDGETWIN_SERVER", "EDGETWIN_TOKEN", "EDGETWIN_DATA_DIR"] {
        command.env_remove(var);
    }
    command
}

/// A child process, SIGKILLed and reaped when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(command: &mut Command, log: &Path) -> Proc {
        let log = std::fs::File::create(log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawns");
        Proc(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cloud process and its files.
struct CloudProc {
    proc: Proc,
    dir: PathBuf,
    tunnel: SocketAddr,
    metrics: SocketAddr,
    config: PathBuf,
}

impl CloudProc {
    fn start(root: &Path) -> CloudProc {
        let dir = root.join("cloud");
        std::fs::create_dir_all(&dir).expect("cloud dir");
        let tunnel: SocketAddr = format!("127.0.0.1:{}", free_port().expect("port"))
            .parse()
            .expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().expect("port"))
            .parse()
            .expect("addr");
        let config = root.join("cloud.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {tunnel}\ninsecure: true\ndataDir: {}\nregistry:\n  embedded:\n    apiListen: 127.0.0.1:0\nstatusIntervalMs: 200\nmetricsListen: {metrics}\n",
                dir.display()
            ),
        )
        .expect("config");
        let mut cloud = CloudProc {
            proc: Proc(edgetwin().arg("--version").spawn().expect("version")),
            dir,
            tunnel,
            metrics,
            config,
        };
        cloud.restart(root);
        cloud
    }

    /// (Re)starts the process on the same config and data.
    fn restart(&mut self, root: &Path) {
        self.proc.kill();
        let _ = std::fs::remove_file(self.dir.join("registry.url"));
        self.proc = Proc::spawn(
            edgetwin().args(["cloud", "-c"]).arg(&self.config),
            &root.join("cloud.log"),
        );
        wait_until("the cloud is up", || {
            self.dir.join("registry.url").exists()
                && std::net::TcpStream::connect(self.tunnel).is_ok()
        });
    }

    fn tokens(&self, nodes: &[&str]) -> BTreeMap<String, String> {
        let output = edgetwin()
            .args(["cloud", "token", "create"])
            .args(nodes)
            .arg("--db")
            .arg(self.dir.join("cloud.db"))
            .output()
            .expect("token create");
        assert!(output.status.success(), "{}", stderr(&output));
        // One node: the token alone; several: `NODE TOKEN` lines.
        if let [node] = nodes {
            return BTreeMap::from([(node.to_string(), stdout(&output).trim().to_owned())]);
        }
        stdout(&output)
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(node, token)| (node.to_owned(), token.trim().to_owned()))
            .collect()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        edgetwin()
            .arg("ctl")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("runs edgetwin ctl")
    }

    /// `edgetwin ctl apply` of the test's model and devices.
    fn apply_devices(&self, root: &Path) {
        let manifest = root.join("devices.yaml");
        std::fs::write(&manifest, MANIFEST).expect("manifest");
        let applied = self.ctl(&["apply", "-f", manifest.to_str().expect("utf-8")]);
        assert!(applied.status.success(), "{}", stderr(&applied));
    }

    /// The `/metrics` samples (`name{labels}` → value); empty when the endpoint does not answer.
    fn metrics(&self) -> BTreeMap<String, u64> {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(self.metrics) else {
            return BTreeMap::new();
        };
        let mut response = String::new();
        let asked = stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .and_then(|()| stream.read_to_string(&mut response));
        if asked.is_err() {
            return BTreeMap::new();
        }
        response
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect()
    }

    fn metric(&self, name: &str) -> u64 {
        self.metrics().get(name).copied().unwrap_or_default()
    }

    fn device(&self, name: &str) -> Value {
        let output = self.ctl(&["get", "device", name, "-o", "json"]);
        if !output.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }
}

/// One edge process with its broker address.
struct EdgeProc {
    proc: Proc,
    broker: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl EdgeProc {
    fn start(root: &Path, node: &str, cloud: SocketAddr, token: &str) -> EdgeProc {
        let broker: SocketAddr = format!("127.0.0.1:{}", free_port().expect("port"))
            .parse()
            .expect("addr");
        let config = root.join(format!("{node}.yaml"));
        std::fs::write(
            &config,
            format!(
                "nodeName: {node}\ndataDir: {}\nbroker:\n  embedded:\n    listen: {broker}\nhttp:\n  listen: null\ncloud:\n  url: ws://{cloud}\n  token: {token}\n  insecure: true\n  reconnectMinMs: 50\n  reconnectMaxMs: 200\n  reconcileIntervalSecs: 1\n",
                root.join(node).display()
            ),
        )
        .expect("config");
        let log = root.join(format!("{node}.log"));
        let mut edge = EdgeProc {
            proc: Proc(edgetwin().arg("--version").spawn().expect("version")),
            broker,
            config,
            log,
        };
        edge.restart();
        edge
    }

    fn restart(&mut self) {
        self.proc.kill();
        self.proc = Proc::spawn(edgetwin().args(["edge", "-c"]).arg(&self.config), &self.log);
        wait_until("the edge broker is up", || {
            std::net::TcpStream::connect(self.broker).is_ok()
        });
    }
}

/// What a scripted mapper wrote to its devices: (device id, property, value), in order.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A mapper on `broker`: answers each delta by reporting the desired values as read back, except
/// [`REFUSED`], answered with a `write_error` and the value it holds.
async fn mapper(broker: SocketAddr, name: &str) -> (Seen, tokio::task::JoinHandle<()>) {
    let mut client = TestClient::connect(broker, name)
        .await
        .expect("mapper connects");
    client
        .subscribe("$hw/events/device/#")
        .await
        .expect("subscribes");
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut written: BTreeMap<(String, String), String> = BTreeMap::new();
        loop {
            let Ok(message) = client.recv_within(Duration::from_secs(3600)).await else {
                return;
            };
            let Some(id) = message
                .topic
                .strip_prefix("$hw/events/device/")
                .and_then(|rest| rest.strip_suffix("/twin/update/delta"))
            else {
                continue;
            };
            let delta = message.json();
            let Some(values) = delta.get("delta").and_then(Value::as_object) else {
                continue;
            };
            let mut twin = serde_json::Map::new();
            for (property, value) in values {
                let value = value.as_str().unwrap_or_default().to_owned();
                let key = (id.to_owned(), property.clone());
                if value == REFUSED {
                    let mut refusal = json!({
                        "metadata": {"type": "string"},
                        "write_error": {"value": value, "reason": REFUSAL},
                    });
                    if let Some(held) = written.get(&key) {
                        refusal["actual"] = json!({"value": held});
                    }
                    twin.insert(property.clone(), refusal);
                    continue;
                }
                // Like a real driver, write only a value the device does not hold yet: a delta
                // repeated because a report crossed a newer desired value is not a new write.
                if written.get(&key) != Some(&value) {
                    written.insert(key, value.clone());
                    record.lock().expect("lock").push((
                        id.to_owned(),
                        property.clone(),
                        value.clone(),
                    ));
                }
                twin.insert(
                    property.clone(),
                    json!({"actual": {"value": value}, "metadata": {"type": "string"}}),
                );
            }
            let report = json!({"event_id": "", "timestamp": 0, "twin": twin});
            let topic = format!("$hw/events/device/{id}/twin/update");
            let _ = client
                .publish_nowait(
                    &topic,
                    rumqttc::QoS::AtLeastOnce,
                    serde_json::to_vec(&report).expect("json"),
                )
                .await;
        }
    });
    (seen, task)
}

/// The test's directory, whose process logs a failure prints.
static LOG_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() > deadline {
            print_logs();
            panic!("timed out waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn print_logs() {
    let Some(dir) = LOG_DIR.get() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("==== {} (last lines) ====", path.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A property's twin in a Device's status: (reported value, condition type).
fn twin_of(device: &Value, property: &str) -> (Option<String>, Option<String>) {
    let twin = device["status"]["twins"]
        .as_array()
        .and_then(|twins| twins.iter().find(|t| t["propertyName"] == property))
        .cloned()
        .unwrap_or(Value::Null);
    (
        twin["reported"]["value"].as_str().map(str::to_owned),
        twin["condition"]["type"].as_str().map(str::to_owned),
    )
}

/// The condition message of lamp-1's power, when its condition is Failed.
fn power_failure(device: &Value) -> Option<String> {
    let twin = device["status"]["twins"]
        .as_array()?
        .iter()
        .find(|t| t["propertyName"] == "power")?;
    (twin["condition"]["type"] == "Failed")
        .then(|| twin["condition"]["message"].as_str().map(str::to_owned))
        .flatten()
}

fn power(device: &Value) -> (Option<String>, Option<String>) {
    twin_of(device, "power")
}

/// Publishes `temp` readings for lamp-1 every 50 ms from its own client; the last value sent is
/// in the returned counter.
async fn sensor(
    broker: SocketAddr,
) -> (
    Arc<std::sync::atomic::AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    let client = TestClient::connect(broker, "sensor")
        .await
        .expect("sensor connects");
    let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&last);
    let task = tokio::spawn(async move {
        for value in 1u64.. {
            let report = json!({"event_id": "", "timestamp": 0, "twin": {
                "temp": {"actual": {"value": value.to_string()}, "metadata": {"type": "int"}}
            }});
            let published = client
                .publish_nowait(
                    "$hw/events/device/default/lamp-1/twin/update",
                    rumqttc::QoS::AtLeastOnce,
                    serde_json::to_vec(&report).expect("json"),
                )
                .await;
            if published.is_ok() {
                counter.store(value, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (last, task)
}

/// The reported `temp` of lamp-1 in the registry.
fn reported_temp(cloud: &CloudProc) -> Option<u64> {
    twin_of(&cloud.device("lamp-1"), "temp").0?.parse().ok()
}

/// Sets lamp-1's desired power.
fn set_power(cloud: &CloudProc, value: &str) {
    let set = cloud.ctl(&["set", "device", "lamp-1", &format!("power={value}")]);
    assert!(set.status.success(), "{}", stderr(&set));
}

/// The cloud, node n1 (through `via` when given) and its mapper, with the devices applied and
/// lamp-1 verified off.
struct OneNode {
    root: tempfile::TempDir,
    cloud: Arc<CloudProc>,
    edge: EdgeProc,
    seen: Seen,
    mapper: tokio::task::JoinHandle<()>,
}

impl OneNode {
    async fn start(proxy: bool) -> (OneNode, Option<TcpProxy>) {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().to_owned();
        let _ = LOG_DIR.set(path.clone());
        let cloud = CloudProc::start(&path);
        let tokens = cloud.tokens(&["n1"]);
        let proxy = if proxy {
            Some(TcpProxy::start(cloud.tunnel).await.expect("proxy"))
        } else {
            None
        };
        let target = proxy.as_ref().map_or(cloud.tunnel, TcpProxy::addr);
        let edge = EdgeProc::start(&path, "n1", target, &tokens["n1"]);
        let (seen, mapper) = mapper(edge.broker, "mapper-n1").await;
        cloud.apply_devices(&path);
        let cloud = Arc::new(cloud);
        let c = Arc::clone(&cloud);
        blocking(move || wait_until("lamp-1 is verified off", || verified(&c, "lamp-1", "off")))
            .await;
        (
            OneNode {
                root,
                cloud,
                edge,
                seen,
                mapper,
            },
            proxy,
        )
    }

    /// Waits until lamp-1 is verified at `power` and its reported temp is at least `temp`.
    async fn converged(&self, power: &'static str, temp: u64) {
        let c = Arc::clone(&self.cloud);
        let seen = Arc::clone(&self.seen);
        blocking(move || {
            let deadline = Instant::now() + WAIT;
            while !(verified(&c, "lamp-1", power) && reported_temp(&c).is_some_and(|t| t >= temp)) {
                if Instant::now() > deadline {
                    print_logs();
                    panic!(
                        "lamp-1 did not converge to power={power}, temp>={temp}: status {}, mapper saw {seen:?}",
                        c.device("lamp-1")["status"]
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await;
    }
}

fn verified(cloud: &CloudProc, device: &str, value: &str) -> bool {
    power(&cloud.device(device)) == (Some(value.to_owned()), Some("Verified".to_owned()))
}

fn applied(seen: &Seen, id: &str, value: &str) -> usize {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|(d, p, v)| d == id && p == "power" && v == value)
        .count()
}

/// Runs blocking polls (they spawn `edgetwin ctl`) off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_process_set_reaches_only_the_right_node_and_is_verified() {
    let root = tempfile::tempdir().expect("temp dir");
    let path = root.path().to_owned();
    let _ = LOG_DIR.set(path.clone());
    let cloud = CloudProc::start(&path);
    let tokens = cloud.tokens(&["n1", "n2"]);
    let edge1 = EdgeProc::start(&path, "n1", cloud.tunnel, &tokens["n1"]);
    let edge2 = EdgeProc::start(&path, "n2", cloud.tunnel, &tokens["n2"]);
    let (seen1, task1) = mapper(edge1.broker, "mapper-n1").await;
    let (seen2, task2) = mapper(edge2.broker, "mapper-n2").await;

    // The devices are created while the nodes and their mappers run.
    cloud.apply_devices(&path);

    let cloud = Arc::new(cloud);
    let c = Arc::clone(&cloud);
    blocking(move || {
        wait_until("both lamps are verified off", || {
            verified(&c, "lamp-1", "off") && verified(&c, "lamp-2", "off")
        })
    })
    .await;

    let set = cloud.ctl(&["set", "device", "lamp-1", "power=on"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let c = Arc::clone(&cloud);
    blocking(move || wait_until("lamp-1 is verified on", || verified(&c, "lamp-1", "on"))).await;

    assert_eq!(applied(&seen1, "default/lamp-1", "on"), 1, "{seen1:?}");
    let on_n2: Vec<_> = seen2
        .lock()
        .expect("lock")
        .iter()
        .filter(|(d, _, _)| d.ends_with("lamp-1"))
        .cloned()
        .collect();
    assert!(on_n2.is_empty(), "n2 saw lamp-1's deltas: {on_n2:?}");
    assert!(
        seen1
            .lock()
            .expect("lock")
            .iter()
            .all(|(d, _, _)| d.ends_with("lamp-1")),
        "n1 saw another node's device: {seen1:?}"
    );
    assert!(verified(&cloud, "lamp-2", "off"), "lamp-2 untouched");

    // A value the device refuses shows as Failed with the device's reason; a later value the
    // device takes is verified again.
    let set = cloud.ctl(&["set", "device", "lamp-1", &format!("power={REFUSED}")]);
    assert!(set.status.success(), "{}", stderr(&set));
    let c = Arc::clone(&cloud);
    blocking(move || {
        wait_until("lamp-1 power is Failed with the reason", || {
            power_failure(&c.device("lamp-1")).as_deref() == Some(REFUSAL)
        })
    })
    .await;
    assert_eq!(power(&cloud.device("lamp-1")).0.as_deref(), Some("on"));
    let set = cloud.ctl(&["set", "device", "lamp-1", "power=off"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let c = Arc::clone(&cloud);
    blocking(move || wait_until("lamp-1 is verified off", || verified(&c, "lamp-1", "off"))).await;
    task1.abort();
    task2.abort();
    drop((edge1, edge2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_process_partition_converges_after_heal_without_double_actuation() {
    let (node, proxy) = OneNode::start(true).await;
    let proxy = proxy.expect("proxy");
    let (sent, sensor_task) = sensor(node.edge.broker).await;

    proxy.cut();
    // Desired changes in the cloud and readings at the edge go on while the link is down.
    set_power(&node.cloud, "on");
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_power(&node.cloud, "dim");
    tokio::time::sleep(Duration::from_secs(3)).await;
    sensor_task.abort();
    let last_sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(last_sent > 0, "the sensor published during the cut");
    assert_eq!(
        applied(&node.seen, "default/lamp-1", "dim"),
        0,
        "nothing crossed the cut"
    );

    let healed = Instant::now();
    proxy.heal();
    node.converged("dim", last_sent).await;
    let took = healed.elapsed();
    eprintln!("converged {took:?} after heal");
    assert!(
        took <= Duration::from_secs(2),
        "converged only {took:?} after heal"
    );
    // The newest desired value reached the mapper exactly once; the superseded one never.
    assert_eq!(
        applied(&node.seen, "default/lamp-1", "dim"),
        1,
        "{:?}",
        node.seen
    );
    assert!(
        applied(&node.seen, "default/lamp-1", "on") <= 1,
        "{:?}",
        node.seen
    );
    assert_eq!(
        reported_temp(&node.cloud),
        Some(last_sent),
        "the last reading, nothing lost"
    );
    node.mapper.abort();
    drop(node.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_process_sigkill_cloud_then_edge_mid_traffic_converges() {
    let (mut node, _) = OneNode::start(false).await;
    let path = node.root.path().to_owned();
    let (sent, sensor_task) = sensor(node.edge.broker).await;

    // SIGKILL the cloud while readings flow, change the desired value, restart it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cloud = Arc::try_unwrap(node.cloud).unwrap_or_else(|_| panic!("cloud shared"));
    cloud.proc.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart_root = path.clone();
    let cloud = blocking(move || {
        cloud.restart(&restart_root);
        cloud
    })
    .await;
    set_power(&cloud, "on");
    node.cloud = Arc::new(cloud);
    let floor = sent.load(std::sync::atomic::Ordering::SeqCst);
    node.converged("on", floor).await;

    // SIGKILL the edge mid-traffic; restart it on the same data dir with a new mapper; the
    // next desired change must reach the device and the readings must flow again.
    node.edge.proc.kill();
    sensor_task.abort();
    node.mapper.abort();
    node.edge.restart();
    let (seen, mapper_task) = mapper(node.edge.broker, "mapper-n1-again").await;
    let (sent, sensor_task) = sensor(node.edge.broker).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_power(&node.cloud, "off");
    let floor = sent.load(std::sync::atomic::Ordering::SeqCst);
    node.converged("off", floor).await;
    assert_eq!(applied(&seen, "default/lamp-1", "off"), 1, "{seen:?}");
    sensor_task.abort();
    mapper_task.abort();
}

/// The condition type and observedDesired of lamp-1's power.
fn power_condition(device: &Value) -> (Option<String>, Option<String>) {
    let twin = device["status"]["twins"]
        .as_array()
        .and_then(|twins| twins.iter().find(|t| t["propertyName"] == "power"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        twin["condition"]["type"].as_str().map(str::to_owned),
        twin["observedDesired"]["value"].as_str().map(str::to_owned),
    )
}

/// Waits until the cloud has handled `more` version summaries after now.
async fn summaries_after(cloud: &Arc<CloudProc>, more: u64) {
    let c = Arc::clone(cloud);
    blocking(move || {
        let start = c.metric("edgetwin_cloud_summaries_received_total");
        wait_until("the cloud receives version summaries", || {
            c.metric("edgetwin_cloud_summaries_received_total") >= start + more
        });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_process_applied_then_a_tampered_edge_store_is_repaired_by_the_version_summary() {
    let (mut node, proxy) = OneNode::start(true).await;
    let proxy = proxy.expect("proxy");
    let cloud = Arc::clone(&node.cloud);

    // Without a mapper to write it, a desired value the edge accepted is Applied (the edge's
    // echo is the observedDesired), and `ctl describe` says so.
    node.mapper.abort();
    set_power(&cloud, "dim");
    let c = Arc::clone(&cloud);
    blocking(move || {
        wait_until("lamp-1 power is Applied with observedDesired dim", || {
            power_condition(&c.device("lamp-1")) == (Some("Applied".into()), Some("dim".into()))
        })
    })
    .await;
    let described = cloud.ctl(&["describe", "device", "lamp-1"]);
    assert!(described.status.success(), "{}", stderr(&described));
    let text = stdout(&described);
    assert!(text.contains("Applied since"), "{text}");
    assert!(text.contains("AcceptedByEdge"), "{text}");

    // Summaries of a node in step cause no resend. (One more summary first, so that every
    // summary made before the edge applied `dim` has been handled.)
    summaries_after(&cloud, 1).await;
    let resent = cloud.metric("edgetwin_cloud_reconcile_resent_total");
    summaries_after(&cloud, 2).await;
    assert_eq!(
        cloud.metric("edgetwin_cloud_reconcile_resent_total"),
        resent,
        "a matching summary resends nothing"
    );
    // Everything the cloud sent was acknowledged: n1's outbox is empty, and says so.
    let c = Arc::clone(&cloud);
    blocking(move || {
        wait_until("n1's outbox depth is 0", || {
            c.metrics().get(r#"edgetwin_cloud_outbox_depth{node="n1"}"#) == Some(&0)
        })
    })
    .await;
    assert!(
        cloud
            .metrics()
            .contains_key("edgetwin_cloud_outbox_depth_all_nodes"),
        "{:?}",
        cloud.metrics()
    );

    // The edge dies; its store is put back to an older state of lamp-1's power (desired `off`
    // at the first spec generation), as a restored backup would have it.
    node.edge.proc.kill();
    proxy.cut();
    let db = node.root.path().join("n1").join("edge.db");
    {
        use edgetwin_core::edge::store::{ObjectKey, Store, StoreOptions};
        use edgetwin_model::twin::{PropertyTwin, TwinHalf, TwinVersion};
        let mut store = Store::open(&db, StoreOptions::default()).expect("edge store opens");
        let key = ObjectKey::new("default", "lamp-1");
        let mut twin: PropertyTwin = store
            .twin(&key, "power")
            .expect("reads")
            .expect("power is stored");
        assert_eq!(twin.desired.as_ref().map(|d| d.value.as_str()), Some("dim"));
        twin.desired = Some(TwinHalf {
            value: "off".into(),
            timestamp_ms: 1,
        });
        twin.desired_version = TwinVersion::new(1, 0);
        store
            .write(|scope| scope.put_twin(&key, "power", &twin))
            .expect("writes");
    }
    node.edge.restart();
    let (seen, mapper_task) = mapper(node.edge.broker, "mapper-n1-restored").await;
    proxy.heal();

    // The summary on reconnect shows the drift; the cloud resends lamp-1 and the edge has the
    // cloud's desired value again: the mapper writes it and the read-back verifies it.
    let c = Arc::clone(&cloud);
    blocking(move || wait_until("lamp-1 is verified dim", || verified(&c, "lamp-1", "dim"))).await;
    assert_eq!(applied(&seen, "default/lamp-1", "dim"), 1, "{seen:?}");
    assert!(
        cloud.metric("edgetwin_cloud_reconcile_resent_total") > resent,
        "the repair was a reconcile resend"
    );
    mapper_task.abort();
}
