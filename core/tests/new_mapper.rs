//! `edgetwin new mapper` writes a crate that builds and passes its own tests unchanged: the
//! check CI runs for the SDK's scaffolding. Slow (it builds the new crate); it shares the
//! workspace's target directory and lock file so that most dependencies are already built.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ has a parent")
        .to_owned()
}

#[test]
fn a_new_mapper_builds_and_passes_its_conformance_test() {
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(["new", "mapper", "ci-demo", "--dir"])
        .arg(dir.path())
        .arg("--sdk-path")
        .arg(root.join("sdk"))
        .output()
        .expect("edgetwin runs");
    assert!(
        output.status.success(),
        "edgetwin new mapper failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crate_dir = dir.path().join("ci-demo-mapper");
    assert!(String::from_utf8_lossy(&output.stdout).contains("ci-demo-mapper"));

    // The workspace's versions: nothing to resolve, and built dependencies are reused.
    std::fs::copy(root.join("Cargo.lock"), crate_dir.join("Cargo.lock")).expect("lock copied");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let test = Command::new(cargo)
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "the generated crate's tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        stdout.contains("the_driver_passes_the_conformance_suite")
            || stdout.contains("test result: ok. 1 passed"),
        "the conformance test ran: {stdout}"
    );
}

#[test]
fn an_existing_directory_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("taken-mapper")).expect("made");
    let output = Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(["new", "mapper", "taken", "--dir"])
        .arg(dir.path())
        .output()
        .expect("edgetwin runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
}
