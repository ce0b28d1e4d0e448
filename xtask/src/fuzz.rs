//! `cargo xtask fuzz [TARGET] [SECONDS]`: builds the fuzz targets of `fuzz/` with libFuzzer on
//! the stable toolchain and runs each (or one) for a while.
//!
//! libfuzzer-sys needs no nightly feature; what cargo-fuzz adds with nightly is the sanitizers
//! (`-Zsanitizer`). Without them the coverage instrumentation is a stable `-C passes=sancov-module`
//! plus LLVM arguments, so the targets are built here with exactly those flags, for the host
//! target explicitly (so the flags reach the targets and their dependencies, not build scripts or
//! proc macros). Safe Rust needs no address sanitizer; debug assertions and overflow checks are
//! on, so a logic error is a crash.
//!
//! Corpora grow under `target/fuzz/corpus/TARGET` (seeded from `fuzz/seeds/TARGET`), crashes go
//! to `target/fuzz/artifacts/TARGET/`. A crash fails the run and prints the command that
//! reproduces it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Every target of `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 8] = [
    "mqtt_topic",
    "mqtt_payload",
    "tunnel_frame",
    "device_yaml",
    "device_json",
    "registry_patch",
    "modbus_codec",
    "pipeline_spec",
];

/// The coverage instrumentation cargo-fuzz uses, without the (nightly) sanitizer.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing";

/// What one run found.
#[derive(Debug)]
pub struct Outcome {
    /// The target.
    pub target: String,
    /// Inputs executed.
    pub executions: u64,
    /// Seconds it ran.
    pub seconds: u64,
    /// Whether it crashed.
    pub crashed: bool,
}

/// `cargo xtask fuzz [TARGET] [SECONDS]`.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let (targets, seconds) = match args {
        [] => (TARGETS.to_vec(), 60),
        [one] => match one.parse::<u64>() {
            Ok(seconds) => (TARGETS.to_vec(), seconds),
            Err(_) => (vec![known(one)?], 60),
        },
        [one, seconds] => (
            vec![known(one)?],
            seconds
                .parse()
                .with_context(|| format!("{seconds:?} is not a number of seconds"))?,
        ),
        _ => bail!("usage: cargo xtask fuzz [TARGET] [SECONDS]"),
    };
    let outcomes = run_all(root, &targets, seconds)?;
    println!("\n| target | seconds | executions | crashes |\n|---|---:|---:|---:|");
    for outcome in &outcomes {
        println!(
            "| `{}` | {} | {} | {} |",
            outcome.target,
            outcome.seconds,
            outcome.executions,
            u8::from(outcome.crashed)
        );
    }
    check(&outcomes)
}

/// Builds the targets and runs each for `seconds`; fails on a crash.
pub fn run_all(root: &Path, targets: &[&str], seconds: u64) -> Result<Vec<Outcome>> {
    let bin_dir = build(root)?;
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(run(root, &bin_dir, target, seconds)?);
    }
    Ok(outcomes)
}

/// Fails when a run crashed.
pub fn check(outcomes: &[Outcome]) -> Result<()> {
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        bail!("fuzz targets crashed: {}", crashed.join(", "))
    }
}

fn known(target: &str) -> Result<&'static str> {
    TARGETS
        .iter()
        .find(|t| **t == target)
        .copied()
        .with_context(|| {
            format!(
                "unknown fuzz target {target:?}; targets: {}",
                TARGETS.join(", ")
            )
        })
}

/// `target/fuzz` (or under `CARGO_TARGET_DIR`).
fn fuzz_dir(root: &Path) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("fuzz")
}

fn host_triple() -> Result<String> {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    let text = String::from_utf8(output.stdout).context("rustc -vV is not UTF-8")?;
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// Builds every target (release, instrumented); returns the directory of the binaries.
fn build(root: &Path) -> Result<PathBuf> {
    let triple = host_triple()?;
    let target_dir = fuzz_dir(root).join("build");
    let started = Instant::now();
    println!("\n=== xtask: build the fuzz targets (libFuzzer, release, {triple})");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bins", "--manifest-path"])
        .arg(root.join("fuzz/Cargo.toml"))
        .arg("--target")
        .arg(&triple)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        // The fuzz workspace is not the main one: its own lock file, no incremental state.
        .env("CARGO_INCREMENTAL", "0")
        .status()
        .context("cannot start cargo build for the fuzz targets")?;
    println!(
        "=== xtask: build the fuzz targets: {status} in {:.0?}",
        started.elapsed()
    );
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    Ok(target_dir.join(triple).join("release"))
}

/// Runs one target for `seconds` on its corpus (seeded from `fuzz/seeds/TARGET`).
fn run(root: &Path, bin_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let dir = fuzz_dir(root);
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    for path in [&corpus, &artifacts] {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    let seeds = root.join("fuzz/seeds").join(target);
    let binary = bin_dir.join(target);
    let mut command = Command::new(&binary);
    command
        .arg(format!("-max_total_time={seconds}"))
        .arg("-rss_limit_mb=2048")
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    println!("\n=== xtask: fuzz {target} for {seconds} s");
    let output = command
        .output()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let log = String::from_utf8_lossy(&output.stderr);
    let executions = log
        .lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let crashed = !output.status.success();
    if crashed {
        eprintln!("{log}");
        eprintln!(
            "=== xtask: {target} crashed; the input is in {} (reproduce: {} INPUT)",
            artifacts.display(),
            binary.display()
        );
    } else {
        println!("=== xtask: fuzz {target}: {executions} executions, no crash");
    }
    Ok(Outcome {
        target: target.to_owned(),
        executions,
        seconds,
        crashed,
    })
}
