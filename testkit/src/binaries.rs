//! The workspace's own binaries (`edgetwin`, the mappers) for tests that run them as processes
//! from another package than theirs (where cargo's `CARGO_BIN_EXE_*` does not exist).
//!
//! A workspace test run (`cargo xtask test`, `cargo nextest run --workspace`) has just built
//! every binary, so they are used as they are: building them again here with this package's
//! feature set would relink `target/*/edgetwin` under the feet of tests running in parallel. Only
//! when one is missing (one package tested alone) are the missing ones built, once per process.
//! After changing code, test with `--workspace` or build the binaries first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A binary target of a workspace package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bin {
    /// The package (`edgetwin-core`).
    pub package: &'static str,
    /// The binary (`edgetwin`).
    pub name: &'static str,
}

/// `edgetwin` (package `edgetwin-core`, default features: cloud, edge, ctl).
pub const EDGETWIN: Bin = Bin {
    package: "edgetwin-core",
    name: "edgetwin",
};

/// `edgetwin-mapper-gpio`.
pub const MAPPER_GPIO: Bin = Bin {
    package: "edgetwin-mapper-gpio",
    name: "edgetwin-mapper-gpio",
};

/// The profile directory of the running test executable: `target/debug` for
/// `target/debug/deps/NAME-HASH`.
///
/// # Panics
/// When the test executable's path has no such parent.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} has no target profile directory", exe.display()))
}

/// The paths of `bins` in the test's profile directory, in order; the missing ones are built
/// first (`cargo build -p PACKAGE --bin NAME …`, with `--release` when the test runs in release).
///
/// # Panics
/// When a build fails or leaves a binary missing.
pub fn workspace_binaries(bins: &[Bin]) -> Vec<PathBuf> {
    // One build at a time within a test process (tests run on threads under `cargo test`).
    static BUILD: Mutex<()> = Mutex::new(());
    let dir = profile_dir();
    let paths: Vec<PathBuf> = bins.iter().map(|b| dir.join(b.name)).collect();
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let missing: Vec<&Bin> = bins
        .iter()
        .zip(&paths)
        .filter(|(_, path)| !path.is_file())
        .map(|(bin, _)| bin)
        .collect();
    if missing.is_empty() {
        return paths;
    }
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "--quiet"]);
    for bin in &missing {
        build.args(["-p", bin.package, "--bin", bin.name]);
    }
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build starts");
    assert!(status.success(), "building {missing:?} failed: {status}");
    for path in &paths {
        assert!(
            path.is_file(),
            "{} is missing after the build",
            path.display()
        );
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_dir_is_the_parent_of_deps() {
        let dir = profile_dir();
        let exe = std::env::current_exe().expect("exe");
        assert!(
            exe.starts_with(&dir),
            "{} in {}",
            exe.display(),
            dir.display()
        );
        assert_eq!(
            exe.parent().and_then(Path::file_name),
            Some("deps".as_ref())
        );
    }
}
