//! `edgetwin install` into a scratch root, as on a Raspberry Pi running the traffic light: the
//! binaries, the agent's configuration (loaded back by the agent's own loader), the node token
//! and the units, which `systemd-analyze verify` must pass without a word; then `edgetwin
//! uninstall`, which leaves only the configuration (and nothing with `--purge`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgetwin_core::edge::config::EdgeConfig;
use edgetwin_testkit::peers;

fn edgetwin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(args)
        .output()
        .expect("edgetwin runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn under(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

/// `systemd-analyze`, or `None` (after saying so) when it is missing and peers are optional.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    for candidate in ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"] {
        if Path::new(candidate).is_file() {
            return Some(PathBuf::from(candidate));
        }
    }
    peers::missing(
        test,
        "systemd-analyze",
        "not installed (Debian package systemd)",
    );
    None
}

/// Copies `from` into `to` (directories recursively), keeping symlinks as they are.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn install_verify_and_uninstall_the_traffic_light_node() {
    let test = "install_verify_and_uninstall_the_traffic_light_node";
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("root");
    // The release a user unpacks: edgetwin and the mappers side by side.
    let from = work.path().join("release");
    std::fs::create_dir_all(&from).expect("dir");
    std::fs::copy(env!("CARGO_BIN_EXE_edgetwin"), from.join("edgetwin")).expect("copy");
    std::fs::write(from.join("edgetwin-mapper-gpio"), "#!/bin/sh\n").expect("mapper");
    std::fs::set_permissions(
        from.join("edgetwin-mapper-gpio"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("mode");
    let token = work.path().join("node.token");
    std::fs::write(&token, "secret-token\n").expect("token");
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("ca");

    let installed = edgetwin(&[
        "install",
        "--root",
        path(&root),
        "--from",
        path(&from),
        "--node",
        "pi-traffic",
        "--mapper",
        "gpio",
        "--cloud-url",
        "wss://cloud.example.net:10000",
        "--token-file",
        path(&token),
        "--ca-file",
        path(&ca),
    ]);
    assert!(installed.status.success(), "{}", text(&installed));
    let said = text(&installed);
    assert!(
        said.contains("installed /etc/systemd/system/edgetwin-mapper-gpio.service"),
        "{said}"
    );
    assert!(said.contains("not started"), "{said}");

    let mode = |p: &str| {
        std::fs::metadata(under(&root, p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    assert_eq!(mode("/usr/local/bin/edgetwin"), 0o755);
    assert_eq!(mode("/usr/local/bin/edgetwin-mapper-gpio"), 0o755);
    assert_eq!(
        mode("/etc/edgetwin/node.token"),
        0o600,
        "the token is root's alone"
    );
    assert_eq!(mode("/etc/edgetwin/cloud-ca.pem"), 0o644);
    let config = EdgeConfig::load(&under(&root, "/etc/edgetwin/edge.yaml"))
        .expect("the agent loads the installed configuration");
    assert_eq!(config.node_name, "pi-traffic");

    if let Some(analyze) = systemd_analyze(test) {
        // systemd resolves the units' dependencies (network-online.target, …) inside the root.
        copy_tree(
            Path::new("/usr/lib/systemd/system"),
            &under(&root, "/usr/lib/systemd/system"),
        );
        let units: Vec<PathBuf> = ["edgetwin-edge.service", "edgetwin-mapper-gpio.service"]
            .iter()
            .map(|u| under(&root, &format!("/etc/systemd/system/{u}")))
            .collect();
        let verified = Command::new(analyze)
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .args(&units)
            .output()
            .expect("systemd-analyze runs");
        let said = text(&verified);
        assert!(
            verified.status.success() && said.trim().is_empty(),
            "systemd-analyze verify must be clean (it exits 0 on warnings, so any output fails):\n{said}"
        );
        std::fs::remove_dir_all(under(&root, "/usr/lib")).expect("cleanup");
    }

    let removed = edgetwin(&["uninstall", "--root", path(&root)]);
    assert!(removed.status.success(), "{}", text(&removed));
    for gone in [
        "/usr/local/bin/edgetwin",
        "/usr/local/bin/edgetwin-mapper-gpio",
        "/etc/systemd/system/edgetwin-edge.service",
        "/etc/systemd/system/edgetwin-mapper-gpio.service",
        "/etc/edgetwin/installed-files",
    ] {
        assert!(!under(&root, gone).exists(), "{gone} is left");
    }
    assert!(
        under(&root, "/etc/edgetwin/edge.yaml").exists(),
        "configuration kept"
    );
    assert!(
        under(&root, "/etc/edgetwin/node.token").exists(),
        "token kept"
    );

    let again = edgetwin(&["uninstall", "--root", path(&root)]);
    assert!(!again.status.success(), "nothing left to uninstall");
    assert!(
        text(&again).contains("nothing was installed"),
        "{}",
        text(&again)
    );

    let reinstalled = edgetwin(&[
        "install",
        "--root",
        path(&root),
        "--from",
        path(&from),
        "--node",
        "pi-traffic",
        "--cloud-url",
        "wss://cloud.example.net:10000",
        "--token-file",
        path(&token),
        "--ca-file",
        path(&ca),
    ]);
    assert!(reinstalled.status.success(), "{}", text(&reinstalled));
    assert!(text(&reinstalled).contains("kept      /etc/edgetwin/edge.yaml"));
    let purged = edgetwin(&["uninstall", "--purge", "--root", path(&root)]);
    assert!(purged.status.success(), "{}", text(&purged));
    let left: Vec<PathBuf> = walk(&root);
    assert!(left.is_empty(), "a purge leaves no file: {left:?}");
}

#[test]
fn install_refuses_what_cannot_work_before_writing_anything() {
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("root");
    let refused = edgetwin(&[
        "install",
        "--root",
        path(&root),
        "--node",
        "pi-traffic",
        "--cloud-url",
        "wss://cloud.example.net:10000",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--token-file"),
        "{}",
        text(&refused)
    );
    let bad_mapper = edgetwin(&[
        "install",
        "--root",
        path(&root),
        "--node",
        "pi",
        "--devices",
        "/x",
        "--mapper",
        "zigbee",
    ]);
    assert!(
        text(&bad_mapper).contains("unknown mapper \"zigbee\""),
        "{}",
        text(&bad_mapper)
    );
    assert!(!root.exists(), "nothing written");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
