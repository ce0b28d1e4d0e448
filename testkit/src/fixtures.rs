//! KubeEdge's own files (CRDs, samples, MQTT payloads, the DMI proto), from the directory in
//! [`FIXTURES_ENV`]. They are read in place, never copied into the repo.

use std::path::{Path, PathBuf};

use crate::peers;

/// The environment variable naming the KubeEdge fixtures directory (`.ci/run` and `cargo xtask
/// test` set it).
pub const FIXTURES_ENV: &str = "EDGETWIN_KUBEEDGE_FIXTURES";

/// `$EDGETWIN_KUBEEDGE_FIXTURES/<sub>`. `None` when the variable is unset and peers are not
/// required (after printing that `test` skips).
///
/// # Panics
/// When the variable is unset and peers are required, or when it names no such directory.
#[track_caller]
pub fn kubeedge_dir(sub: &str, test: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os(FIXTURES_ENV) else {
        peers::missing(
            test,
            "the KubeEdge fixtures",
            &format!("{FIXTURES_ENV} is unset"),
        );
        return None;
    };
    let dir = PathBuf::from(root).join(sub);
    assert!(
        dir.is_dir(),
        "{test}: {} ({FIXTURES_ENV}/{sub}) is not a directory",
        dir.display()
    );
    Some(dir)
}

/// The files of a fixture directory whose name starts with `prefix`, sorted.
///
/// # Panics
/// When the directory cannot be read.
pub fn files_starting_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}
