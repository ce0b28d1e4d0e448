//! `edgetwin cloud token create|revoke` as a user runs it.

use std::path::Path;
use std::process::Command;

use edgetwin_core::tunnel::NodeName;
use edgetwin_core::tunnel::auth::TokenStore;

/// `edgetwin cloud token VERB NODES… --db DB`.
fn token(verb: &str, nodes: &[&str], db: &Path) -> std::process::Output {
    let mut args = vec!["cloud", "token", verb];
    args.extend(nodes);
    args.extend(["--db", db.to_str().expect("utf-8 path")]);
    edgetwin(&args)
}

fn edgetwin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .args(args)
        .env_remove("EDGETWIN_CLOUD_DB")
        .env_remove("EDGETWIN_DATA_DIR")
        .output()
        .expect("run edgetwin")
}

#[test]
fn create_prints_a_token_that_the_hub_accepts_and_revoke_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cloud.db");
    let output = token("create", &["edge-1"], &db);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let printed = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout:?}"
    );
    assert!(printed.starts_with("et1_"), "{printed}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shown only this once"), "{stderr}");

    let node = NodeName::new("edge-1").expect("node");
    let store = TokenStore::open(&db).expect("open");
    store
        .verify(&node, printed)
        .expect("the printed token verifies");

    let output = token("revoke", &["edge-1"], &db);
    assert!(output.status.success(), "{output:?}");
    assert!(store.verify(&node, printed).is_err(), "revoked");
}

#[test]
fn several_nodes_get_one_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cloud.db");
    let output = token("create", &["edge-1", "edge-2"], &db);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let store = TokenStore::open(&db).expect("open");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, name) in lines.iter().zip(["edge-1", "edge-2"]) {
        let (node, printed) = line.split_once(' ').expect("NODE TOKEN");
        assert_eq!(node, name);
        store
            .verify(&NodeName::new(node).expect("node"), printed)
            .expect("valid");
    }
}

#[test]
fn a_bad_node_name_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cloud.db");
    let output = token("create", &["Edge_1"], &db);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid node name \"Edge_1\""), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_directory_is_created_and_revoke_of_a_missing_database_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("not-yet").join("cloud.db");
    let output = token("create", &["edge-1"], &db);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("created the directory"), "{stderr}");
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    TokenStore::open(&db)
        .expect("open")
        .verify(&NodeName::new("edge-1").expect("node"), printed.trim())
        .expect("the token is in the new directory's database");

    let missing = dir.path().join("elsewhere").join("cloud.db");
    let output = token("revoke", &["edge-1"], &missing);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no token database at"), "{stderr}");
    assert!(!missing.exists(), "revoke creates nothing");
}

/// Without --db, the token goes where `edgetwin cloud -c cloud.yaml` reads it: the
/// configuration's `dataDir`, or the --data-dir given.
#[test]
fn the_default_database_is_the_clouds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("cloud.yaml");
    let yaml = edgetwin_core::cloud::config::CloudConfig::default_yaml()
        .replace(
            "dataDir: edgetwin-cloud",
            &format!("dataDir: {}", data.display()),
        )
        .replace("insecure: false", "insecure: true");
    assert!(yaml.contains(&data.display().to_string()), "{yaml}");
    std::fs::write(&config, yaml).expect("write config");
    let output = edgetwin(&[
        "cloud",
        "token",
        "create",
        "edge-1",
        "-c",
        config.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let loaded = edgetwin_core::cloud::config::CloudConfig::load(&config).expect("load");
    TokenStore::open(&loaded.cloud_db())
        .expect("open")
        .verify(&NodeName::new("edge-1").expect("node"), printed.trim())
        .expect("the token is in the cloud's own cloud.db");

    let other = dir.path().join("other");
    let output = edgetwin(&[
        "cloud",
        "token",
        "create",
        "edge-2",
        "--data-dir",
        other.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(other.join("cloud.db").is_file());
}

#[test]
fn plain_cloud_without_tls_or_insecure_refuses_to_start() {
    let output = edgetwin(&["cloud"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`tls`: required unless `insecure: true`"),
        "{stderr}"
    );
}
