//! The ctl verbs against a real registry server on a free port.

use std::path::PathBuf;

use super::*;
use crate::cloud::registry::embedded::testkit::{DEVICE_YAML, MODEL_YAML, TestServer};
use edgetwin_model::devices::TwinProperty;

struct Run {
    out: String,
    err: String,
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8 output")
}

fn write_manifests(dir: &std::path::Path) -> PathBuf {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(manifests.join("a-model.yaml"), MODEL_YAML).expect("write");
    std::fs::write(manifests.join("b-device.yaml"), DEVICE_YAML).expect("write");
    manifests
}

async fn apply(ctl: &Ctl, paths: &[PathBuf]) -> (Result<(), CtlError>, Run) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = ctl.apply(paths, &mut out, &mut err).await;
    (
        result,
        Run {
            out: text(out),
            err: text(err),
        },
    )
}

async fn get(
    ctl: &Ctl,
    kind: Kind,
    name: Option<&str>,
    format: Format,
    all: bool,
) -> (Result<(), CtlError>, Run) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = ctl.get(kind, name, format, all, &mut out, &mut err).await;
    (
        result,
        Run {
            out: text(out),
            err: text(err),
        },
    )
}

async fn seeded() -> (TestServer, Ctl) {
    let server = TestServer::start().await;
    let ctl = Ctl::new(server.client.clone(), None);
    let manifests = write_manifests(server.dir.path());
    let (result, _) = apply(&ctl, &[manifests]).await;
    result.expect("seeded");
    (server, ctl)
}

#[tokio::test]
async fn apply_a_directory_then_again_then_a_change() {
    let server = TestServer::start().await;
    let ctl = Ctl::new(server.client.clone(), None);
    let manifests = write_manifests(server.dir.path());

    let (result, run) = apply(&ctl, std::slice::from_ref(&manifests)).await;
    result.expect("applied");
    assert_eq!(
        run.out,
        "devicemodel.devices.kubeedge.io/traffic-light-model created\ndevice.devices.kubeedge.io/traffic-light created\n"
    );
    assert_eq!(run.err, "");

    let (result, run) = apply(&ctl, std::slice::from_ref(&manifests)).await;
    result.expect("applied");
    assert!(
        run.out.contains("traffic-light-model unchanged\n"),
        "{}",
        run.out
    );
    assert!(
        run.out
            .contains("device.devices.kubeedge.io/traffic-light unchanged\n"),
        "{}",
        run.out
    );

    let device_file = manifests.join("b-device.yaml");
    std::fs::write(
        &device_file,
        DEVICE_YAML.replace("nodeName: pi-1", "nodeName: pi-2"),
    )
    .expect("write");
    let (result, run) = apply(&ctl, &[device_file]).await;
    result.expect("applied");
    assert_eq!(
        run.out,
        "device.devices.kubeedge.io/traffic-light configured\n"
    );
}

#[tokio::test]
async fn apply_reports_load_errors_before_writing_and_server_errors_per_object() {
    let server = TestServer::start().await;
    let ctl = Ctl::new(server.client.clone(), None);
    let dir = server.dir.path();

    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        format!(
            "{MODEL_YAML}---\n{}",
            DEVICE_YAML
                .replace("collectCycle", "x")
                .replace("nodeName: pi-1", "nodeName: [pi-1")
        ),
    )
    .expect("write");
    let (result, _) = apply(&ctl, &[broken]).await;
    let err = result.expect_err("YAML error");
    assert!(matches!(err, CtlError::Load(_)), "{err}");
    assert!(err.to_string().contains("broken.yaml:"), "{err}");
    let (result, run) = get(&ctl, Kind::DeviceModel, None, Format::Table, false).await;
    result.expect("listed");
    assert_eq!(
        run.err, "No resources found in default namespace.\n",
        "nothing was applied"
    );

    let invalid = dir.join("invalid.yaml");
    std::fs::write(
        &invalid,
        format!(
            "{MODEL_YAML}---\n{}",
            DEVICE_YAML.replace("value: \"100\"", "value: \"bright\"")
        ),
    )
    .expect("write");
    let (result, run) = apply(&ctl, &[invalid]).await;
    let err = result.expect_err("one object is invalid");
    assert!(
        matches!(
            err,
            CtlError::Partial {
                failed: 1,
                total: 2
            }
        ),
        "{err}"
    );
    assert_eq!(
        run.out,
        "devicemodel.devices.kubeedge.io/traffic-light-model created\n"
    );
    assert!(
        run.err.starts_with("Error from server (Invalid): Device.devices.kubeedge.io \"traffic-light\" is invalid: spec.properties[3].desired.value: Invalid value: \"bright\""),
        "{}",
        run.err
    );
    assert!(
        run.err.contains("invalid.yaml:"),
        "names the file: {}",
        run.err
    );

    let elsewhere = Ctl::new(server.client.clone(), Some("plant"));
    let in_default = dir.join("in-default.yaml");
    std::fs::write(
        &in_default,
        MODEL_YAML.replace("name: traffic-light-model", "name: m\n  namespace: default"),
    )
    .expect("write");
    let (result, _) = apply(&elsewhere, &[in_default]).await;
    let err = result.expect_err("namespace mismatch");
    assert!(err.to_string().contains("--namespace=default"), "{err}");
}

#[tokio::test]
async fn apply_warns_about_a_missing_model() {
    let server = TestServer::start().await;
    let ctl = Ctl::new(server.client.clone(), None);
    let file = server.dir.path().join("device.yaml");
    std::fs::write(&file, DEVICE_YAML).expect("write");
    let (result, run) = apply(&ctl, &[file]).await;
    result.expect("accepted");
    assert!(
        run.err
            .starts_with("Warning: DeviceModel \"traffic-light-model\" does not exist"),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn get_prints_tables_wide_json_yaml_and_names() {
    let (server, ctl) = seeded().await;
    server
        .registry
        .patch_device_status(
            "default",
            "traffic-light",
            edgetwin_model::devices::DeviceStatus {
                twins: vec![edgetwin_model::devices::Twin {
                    reported: Some(TwinProperty::new("OFF")),
                    ..edgetwin_model::devices::Twin::new("red")
                }],
                state: Some("online".into()),
                ..Default::default()
            },
        )
        .await
        .expect("status");

    let (result, run) = get(&ctl, Kind::Device, None, Format::Table, false).await;
    result.expect("table");
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.out);
    let columns: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        columns,
        ["NAME", "NODE", "MODEL", "PROTOCOL", "STATE", "AGE"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [
            "traffic-light",
            "pi-1",
            "traffic-light-model",
            "gpio",
            "online"
        ]
    );
    assert!(row[5].ends_with('s'), "an age in seconds: {}", row[5]);

    let (result, run) = get(
        &ctl,
        Kind::Device,
        Some("traffic-light"),
        Format::Wide,
        false,
    )
    .await;
    result.expect("wide");
    let lines: Vec<Vec<&str>> = run
        .out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][6..], ["DESIRED", "REPORTED"], "{}", run.out);
    assert_eq!(
        lines[1][6..],
        ["red=OFF,amber=OFF,green=ON,brightness=100", "red=OFF"],
        "{}",
        run.out
    );

    let (result, run) = get(&ctl, Kind::Device, None, Format::Table, true).await;
    result.expect("all namespaces");
    assert!(run.out.starts_with("NAMESPACE   NAME"), "{}", run.out);

    let (result, run) = get(
        &ctl,
        Kind::Device,
        Some("traffic-light"),
        Format::Json,
        false,
    )
    .await;
    result.expect("json");
    let json: Value = serde_json::from_str(&run.out).expect("JSON");
    assert_eq!(json["kind"], "Device");
    assert_eq!(json["status"]["state"], "online");

    let (result, run) = get(&ctl, Kind::DeviceModel, None, Format::Json, false).await;
    result.expect("json list");
    let json: Value = serde_json::from_str(&run.out).expect("JSON");
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["metadata"]["name"], "traffic-light-model");

    let (result, run) = get(
        &ctl,
        Kind::Device,
        Some("traffic-light"),
        Format::Yaml,
        false,
    )
    .await;
    result.expect("yaml");
    let reloaded = edgetwin_model::devices::load::from_str(&run.out, "<get -o yaml>")
        .expect("the YAML loads back");
    assert_eq!(reloaded[0].manifest.name(), "traffic-light");

    let (result, run) = get(&ctl, Kind::DeviceModel, None, Format::Name, false).await;
    result.expect("names");
    assert_eq!(
        run.out,
        "devicemodel.devices.kubeedge.io/traffic-light-model\n"
    );

    let (result, run) = get(&ctl, Kind::DeviceModel, None, Format::Wide, false).await;
    result.expect("models wide");
    assert!(
        run.out
            .contains("red:STRING,amber:STRING,green:STRING,brightness:INT,cycles:INT"),
        "{}",
        run.out
    );

    let (result, _) = get(&ctl, Kind::Device, Some("nope"), Format::Table, false).await;
    let err = result.expect_err("missing");
    assert_eq!(
        err.to_string(),
        "Error from server (NotFound): devices.devices.kubeedge.io \"nope\" not found"
    );
}

/// The traffic light as the registry holds it.
async fn stored_light(ctl: &Ctl) -> Device {
    ctl.client
        .get(Kind::Device, "default", "traffic-light")
        .await
        .expect("get")
}

#[tokio::test]
async fn set_changes_desired_values_by_property_name() {
    let (_server, ctl) = seeded().await;
    let mut out = Vec::new();
    ctl.set(
        "traffic-light",
        &["red=ON".into(), "green=OFF".into()],
        &mut out,
    )
    .await
    .expect("set");
    assert_eq!(
        text(out),
        "device.devices.kubeedge.io/traffic-light patched\n"
    );
    let device = stored_light(&ctl).await;
    assert_eq!(
        output::desired_summary(&device),
        "red=ON,amber=OFF,green=OFF,brightness=100"
    );
    assert_eq!(device.metadata.generation, Some(2));
    assert_eq!(
        device.spec.properties[0].visitors,
        crate::cloud::registry::embedded::testkit::device()
            .spec
            .properties[0]
            .visitors,
        "the rest of the property stays"
    );

    let mut out = Vec::new();
    ctl.set("traffic-light", &["red=ON".into()], &mut out)
        .await
        .expect("no change");
    assert_eq!(
        text(out),
        "device.devices.kubeedge.io/traffic-light patched (no change)\n"
    );

    let err = ctl
        .set("traffic-light", &["cycles=3".into()], &mut Vec::new())
        .await
        .expect_err("read-only");
    assert!(
        err.to_string().contains("the property is ReadOnly"),
        "{err}"
    );
    let err = ctl
        .set("traffic-light", &["brightness=dim".into()], &mut Vec::new())
        .await
        .expect_err("not an int");
    assert!(
        err.to_string()
            .contains("spec.properties[3].desired.value: Invalid value: \"dim\""),
        "{err}"
    );
    let err = ctl
        .set("traffic-light", &["blue=ON".into()], &mut Vec::new())
        .await
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "Error from server (Invalid): Device.devices.kubeedge.io \"traffic-light\" is invalid: spec.properties: Not found: the device has no property \"blue\" (it has: red, amber, green, brightness, cycles)"
    );
    let err = ctl
        .set("traffic-light", &["red".into()], &mut Vec::new())
        .await
        .expect_err("no =");
    assert_eq!(err.to_string(), "error: \"red\" is not property=value");
    let err = ctl
        .set("nope", &["red=ON".into()], &mut Vec::new())
        .await
        .expect_err("missing");
    assert!(
        matches!(err, CtlError::Client(ref e) if e.is_not_found()),
        "{err}"
    );
}

/// Several writers set different properties of one Device at the same time: every write lands
/// (none is lost to a read-modify-write race), because each is one write of the named property
/// under the registry's write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sets_lose_no_update() {
    let (_server, ctl) = seeded().await;
    let properties = ["red", "amber", "green", "brightness"];
    let rounds = 6;
    let mut writers = Vec::new();
    for property in properties {
        let ctl = ctl.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..rounds {
                let value = if property == "brightness" {
                    round.to_string()
                } else {
                    format!("{property}-{round}")
                };
                ctl.set(
                    "traffic-light",
                    &[format!("{property}={value}")],
                    &mut Vec::new(),
                )
                .await
                .expect("set");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let device = stored_light(&ctl).await;
    assert_eq!(
        output::desired_summary(&device),
        format!(
            "red=red-{last},amber=amber-{last},green=green-{last},brightness={last}",
            last = rounds - 1
        )
    );
    assert_eq!(
        device.metadata.generation,
        Some(1 + i64::from(rounds) * 4),
        "every set was one spec change"
    );
}

#[tokio::test]
async fn patch_delete_and_describe() {
    let (server, ctl) = seeded().await;
    // The same patch twice: a change, then none.
    for expected in ["patched", "patched (no change)"] {
        let mut out = Vec::new();
        ctl.patch(
            Kind::Device,
            "traffic-light",
            "merge",
            r#"{"spec":{"nodeName":"pi-7"}}"#,
            &mut out,
        )
        .await
        .expect("patch");
        assert_eq!(
            text(out),
            format!("device.devices.kubeedge.io/traffic-light {expected}\n")
        );
    }
    let mut out = Vec::new();
    ctl.patch(
        Kind::Device,
        "traffic-light",
        "json",
        r#"[{"op":"test","path":"/spec/properties/0/name","value":"red"},{"op":"replace","path":"/spec/properties/0/desired/value","value":"ON"}]"#,
        &mut out,
    )
    .await
    .expect("json patch");
    assert_eq!(
        text(out),
        "device.devices.kubeedge.io/traffic-light patched\n"
    );
    let device = stored_light(&ctl).await;
    assert_eq!(
        output::desired_summary(&device),
        "red=ON,amber=OFF,green=ON,brightness=100"
    );
    let err = ctl
        .patch(
            Kind::Device,
            "traffic-light",
            "json",
            r#"{"op":"add"}"#,
            &mut Vec::new(),
        )
        .await
        .expect_err("not an array");
    assert!(err.to_string().contains("an array of operations"), "{err}");
    let err = ctl
        .patch(
            Kind::Device,
            "traffic-light",
            "strategic",
            "{}",
            &mut Vec::new(),
        )
        .await
        .expect_err("strategic");
    assert!(
        err.to_string()
            .contains("use merge (RFC 7386) or json (RFC 6902)"),
        "{err}"
    );
    let err = ctl
        .patch(
            Kind::Device,
            "traffic-light",
            "merge",
            "{nope",
            &mut Vec::new(),
        )
        .await
        .expect_err("bad JSON");
    assert!(
        err.to_string()
            .starts_with("error: the patch is not valid JSON"),
        "{err}"
    );

    server
        .registry
        .record_device_event(
            "default",
            "traffic-light",
            crate::cloud::registry::DeviceEvent::warning("ActuationFailed", "red: write timed out"),
        )
        .await
        .expect("event");
    let mut out = Vec::new();
    ctl.describe(Kind::Device, "traffic-light", &mut out)
        .await
        .expect("describe");
    let description = text(out);
    assert!(
        description.starts_with("Name:                 traffic-light\n"),
        "{description}"
    );
    assert!(
        description.contains("Node:                 pi-7\n"),
        "{description}"
    );
    assert!(
        description.contains("  brightness:\n    Desired:          100\n"),
        "{description}"
    );
    assert!(description.contains("ActuationFailed"), "{description}");
    let mut out = Vec::new();
    ctl.describe(Kind::DeviceModel, "traffic-light-model", &mut out)
        .await
        .expect("describe model");
    let model = text(out);
    let brightness: Vec<&str> = model
        .lines()
        .find(|l| l.trim_start().starts_with("brightness"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        brightness,
        ["brightness", "INT", "ReadWrite", "0", "255", "<none>"],
        "{model}"
    );

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = ctl
        .delete(
            Kind::Device,
            &["traffic-light".into(), "nope".into()],
            &mut out,
            &mut err,
        )
        .await;
    assert!(matches!(
        result,
        Err(CtlError::Partial {
            failed: 1,
            total: 2
        })
    ));
    assert_eq!(
        text(out),
        "device.devices.kubeedge.io \"traffic-light\" deleted\n"
    );
    assert_eq!(
        text(err),
        "Error from server (NotFound): devices.devices.kubeedge.io \"nope\" not found\n"
    );

    let manifests = server.dir.path().join("manifests");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = ctl
        .delete_files(std::slice::from_ref(&manifests), &mut out, &mut err)
        .await;
    assert!(
        matches!(
            result,
            Err(CtlError::Partial {
                failed: 1,
                total: 2
            })
        ),
        "the device is gone already"
    );
    assert_eq!(
        text(out),
        "devicemodel.devices.kubeedge.io \"traffic-light-model\" deleted\n"
    );
}

/// A writer the test can read while a task writes to it.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn wait_for(buf: &SharedBuf, needle: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !buf.text().contains(needle) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {needle:?} in {:?}",
            buf.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watch_prints_changes_until_the_server_stops() {
    let (server, ctl) = seeded().await;
    let listed = ctl
        .client
        .list::<Device>(Kind::Device, None)
        .await
        .expect("list");
    let from: u64 = listed.metadata.resource_version.parse().expect("revision");
    let spawn_watch = |all: bool, format: Format| {
        let ctl = ctl.clone();
        let buf = SharedBuf::default();
        let mut out = buf.clone();
        let task = tokio::spawn(async move {
            ctl.watch(Kind::Device, all, Some(from), format, &mut out)
                .await
        });
        (task, buf)
    };
    let (table_task, table) = spawn_watch(false, Format::Table);
    let (json_task, json) = spawn_watch(true, Format::Json);

    ctl.set("traffic-light", &["red=ON".into()], &mut Vec::new())
        .await
        .expect("set");
    ctl.delete(
        Kind::Device,
        &["traffic-light".into()],
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .expect("delete");
    wait_for(&table, "DELETED").await;
    wait_for(&json, "DELETED").await;
    server.stop().await;
    table_task
        .await
        .expect("task")
        .expect("the table watch ended cleanly");
    json_task
        .await
        .expect("task")
        .expect("the JSON watch ended cleanly");

    let out = table.text();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        [
            "EVENT",
            "NAMESPACE",
            "NAME",
            "NODE",
            "STATE",
            "DESIRED",
            "REPORTED"
        ]
    );
    assert_eq!(
        lines[1],
        [
            "MODIFIED",
            "default",
            "traffic-light",
            "pi-1",
            "<none>",
            "red=ON,amber=OFF,green=ON,brightness=100",
            "<none>"
        ]
    );
    assert_eq!(lines[2][0], "DELETED");

    let kinds: Vec<String> = json
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("a JSON line")["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["MODIFIED", "DELETED"]);
}

#[test]
fn resource_names_parse_like_kubectl() {
    for text in [
        "device",
        "devices",
        "dev",
        "Devices",
        "devices.devices.kubeedge.io",
    ] {
        assert_eq!(parse_kind(text).ok(), Some(Kind::Device), "{text}");
    }
    for text in ["devicemodel", "devicemodels", "dm"] {
        assert_eq!(parse_kind(text).ok(), Some(Kind::DeviceModel), "{text}");
    }
    let err = parse_kind("pods").expect_err("unknown");
    assert!(err.to_string().contains("\"pods\""), "{err}");
}

#[test]
fn targets_are_type_and_names_or_type_slash_name_as_get_o_name_prints() {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        parse_targets("device", &names(&["a", "b"])).expect("parses"),
        [(Kind::Device, names(&["a", "b"]))]
    );
    assert_eq!(
        parse_targets(
            "device.devices.kubeedge.io/a",
            &names(&["dev/b", "dm/m", "devicemodel.devices.kubeedge.io/n"])
        )
        .expect("parses"),
        [
            (Kind::Device, names(&["a", "b"])),
            (Kind::DeviceModel, names(&["m", "n"]))
        ]
    );
    for (resource, rest) in [
        ("device/a", &["b"][..]),
        ("device/", &[][..]),
        ("pods/a", &[][..]),
        ("device/a/b", &[][..]),
    ] {
        assert!(
            parse_targets(resource, &names(rest)).is_err(),
            "{resource} {rest:?}"
        );
    }
}

#[test]
fn connect_reads_the_data_dir_and_explains_what_is_missing() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = DataDir::new(temp.path());
    let err = connect(None, Some("t"), Some(temp.path())).expect_err("no URL file");
    assert!(err.to_string().contains("--server"), "{err}");
    dir.write_url("http://127.0.0.1:9").expect("url");
    let err = connect(None, None, Some(temp.path())).expect_err("no token file");
    assert!(err.to_string().contains("--token"), "{err}");
    dir.load_or_create_token().expect("token");
    let client = connect(None, None, Some(temp.path())).expect("both files");
    assert_eq!(client.url(), "http://127.0.0.1:9");
    let client =
        connect(Some("http://127.0.0.1:10"), Some("t"), Some(temp.path())).expect("flags win");
    assert_eq!(client.url(), "http://127.0.0.1:10");
}
