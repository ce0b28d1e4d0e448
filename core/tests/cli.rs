//! The `edgetwin` binary's `convert` and `crd` commands, run as real processes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use edgetwin_model::devices::{Manifest, load};

fn edgetwin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgetwin starts");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes())
            .expect("stdin accepts the input");
    }
    drop(pipe);
    child.wait_with_output().expect("edgetwin finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn committed_crd(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds")
        .join(name);
    std::fs::read_to_string(path).expect("committed CRD is readable")
}

#[test]
fn convert_prints_v1beta1_yaml_and_warnings() {
    let input = fixture("v1alpha2-traffic-light.yaml");
    let out = edgetwin(
        &["convert", "-f", input.to_str().expect("UTF-8 path")],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let docs = load::from_str(&text(&out.stdout), "stdout").expect("the output loads");
    let [Manifest::DeviceModel(model), Manifest::Device(device)] =
        &docs.iter().map(|d| d.manifest.clone()).collect::<Vec<_>>()[..]
    else {
        panic!("a model and a device: {docs:?}");
    };
    assert!(model.spec.problems().is_empty());
    assert_eq!(device.check_against(model), []);
    assert_eq!(device.node_name(), Some("edge-node-1"));
    let red = device.property("red").expect("red");
    assert_eq!(red.desired.as_ref().map(|d| d.value.as_str()), Some("true"));
    assert_eq!(red.collect_cycle, Some(500));

    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: "), "{stderr}");
    assert!(
        stderr.contains("no defaultValue: dropped for red"),
        "{stderr}"
    );
    assert!(
        stderr.contains("collectCycle 500000000 is in nanoseconds"),
        "{stderr}"
    );
}

#[test]
fn convert_reads_stdin() {
    let input = std::fs::read_to_string(fixture("v1alpha2-traffic-light.yaml")).expect("fixture");
    let out = edgetwin(&["convert", "-f", "-"], Some(&input));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        load::from_str(&text(&out.stdout), "stdout")
            .expect("loads")
            .len(),
        2
    );
}

#[test]
fn convert_errors_name_the_file_and_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: devices.kubeedge.io/v1alpha2\nkind: Device\nmetadata:\n  name: x\n   oops: 1\n",
    )
    .expect("write");
    let out = edgetwin(&["convert", "-f", bad.to_str().expect("UTF-8 path")], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("edgetwin convert: {}:5:", bad.display())),
        "{stderr}"
    );

    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing here\n").expect("write");
    let out = edgetwin(
        &["convert", "-f", empty.to_str().expect("UTF-8 path")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no Device or DeviceModel in the input"),
        "{}",
        text(&out.stderr)
    );

    let missing = dir.path().join("missing.yaml");
    let out = edgetwin(
        &["convert", "-f", missing.to_str().expect("UTF-8 path")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn crd_print_prints_the_committed_crds() {
    let out = edgetwin(&["crd", "print"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = format!(
        "{}---\n{}",
        committed_crd("devices.yaml"),
        committed_crd("devicemodels.yaml")
    );
    assert!(
        text(&out.stdout) == expected,
        "`edgetwin crd print` differs from crds/: run `cargo xtask gen-crds`"
    );
}

#[test]
fn crd_write_writes_the_committed_crds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("out");
    let out = edgetwin(
        &["crd", "write", target.to_str().expect("UTF-8 path")],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in ["devices.yaml", "devicemodels.yaml"] {
        let written = std::fs::read_to_string(target.join(name)).expect("written");
        assert!(written == committed_crd(name), "{name} differs");
    }
}
