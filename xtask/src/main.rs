//! Project automation, run as `cargo xtask <command>`.
//!
//! - `test`: provisions what the tests need on a fresh Debian machine (apt packages, a Python venv
//!   under `target/`), then runs `cargo fmt --check`, clippy with `-D warnings` and the whole test
//!   suite with nextest (the HIL scenarios on the simulated chip among them). This is the README's
//!   test command and what `.ci/run` calls. The aarch64 run of the HIL scenarios is not part of
//!   it: under Debian 12's qemu-user (7.2) the first thread an aarch64 program starts hangs on
//!   some hosts (seen on Linux 6.18), so it is `cargo xtask hil`'s alone.
//! - `cross [--target aarch64|armv7]`: release builds of the edge binaries for the Raspberry
//!   Pi's architectures with Debian's compiler, stripped, with their sizes (see `cross.rs`).
//! - `hil [NEXTEST ARGS]`: the HIL suite alone (`hil-tests/`): the aarch64 binaries, then the
//!   scenarios on the simulated chip natively and under qemu-user (and on real pins with `HIL=1`).
//! - `gen-crds`: regenerates `crds/*.yaml` from the Rust types.
//! - `up`: builds `edgetwin` and `edgetwin-mapper-gpio` in release mode and runs
//!   `edgetwin up` (the README's first command, as the cargo alias `cargo up`).
//! - `fuzz [TARGET] [SECONDS]`: builds the fuzz targets of `fuzz/` (libFuzzer on the stable
//!   toolchain) and runs each, or one, for a while (default 60 s). Not part of `test`: the
//!   instrumented release build of the targets' dependencies takes longer than the test budget.
//! - `bench TARGET [ARGS]`: runs a benchmark in release mode (`cloud`: connection scale of the
//!   tunnel hub, see `core/benches/cloud.rs`; `cloud-controller`: the real `edgetwin cloud` with
//!   its device controller, see `core/benches/cloud_controller.rs`; `traffic-light`: desired set
//!   → lamp → status latency of `edgetwin up`, see `examples/traffic-light/benches/flips.rs`);
//!   results go into `BENCHMARKS.md` by hand, with the commit and the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

mod cross;
mod fuzz;
mod layering;
mod provision;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test [NEXTEST ARGS]  provision peers, then fmt check, clippy -D warnings, all tests
  provision            only install what the tests need (apt packages, Python venv)
  layering             check the crate and module layering (docs/architecture.md)
  fuzz [TARGET] [SECS] build the fuzz targets (stable toolchain), run each SECS (60)
  gen-crds             regenerate crds/*.yaml from the Rust types
  up [ARGS]            build edgetwin and the GPIO mapper (release), run edgetwin up
  hil [NEXTEST ARGS]   the HIL scenarios: simulated pins, natively and aarch64 under qemu
  cross [--target aarch64|armv7]
                       release edge binaries for the Raspberry Pi (Debian's rustc), sizes
  bench cloud [ARGS]   tunnel hub connection-scale benchmark (--nodes N, --tls-nodes M, ...)
  bench cloud-controller [ARGS]
                       the real `edgetwin cloud` with the controller (--nodes N, --reports K)
  bench traffic-light [ARGS]
                       edgetwin up: desired set → pin → status latency (--flips N, --samples N)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root).context("cd to the workspace root")?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("gen-crds") => gen_crds(&root),
        Some("provision") => provision::all(&root),
        Some("layering") => layering::check(&root),
        Some("up") => up(&root, &args[1..]),
        Some("cross") => cross::release(&root, &args[1..]),
        Some("hil") => hil(&root, &args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::command(&root, &args[1..]),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask manifest has no parent directory")
}

fn test(root: &Path, nextest_args: &[String]) -> Result<()> {
    let started = Instant::now();
    provision::all(root)?;
    let env = test_env(root)?;
    step(
        "cargo fmt --check",
        cargo(&env, &["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy (workspace, all targets)",
        cargo(
            &env,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    )?;
    step(
        "clippy (edge-only build of edgetwin-core)",
        cargo(
            &env,
            &[
                "clippy",
                "-p",
                "edgetwin-core",
                "--no-default-features",
                "--features",
                "edge,embedded-broker",
                "--",
                "-D",
                "warnings",
            ],
        ),
    )?;
    let started_layering = Instant::now();
    println!(
        "\n=== xtask: layering (pure model, mappers on the SDK, edge without kube, no cycles)"
    );
    layering::check(root)?;
    println!(
        "=== xtask: layering: ok in {:.0?}",
        started_layering.elapsed()
    );
    let mut args = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
    args.extend(nextest_args.iter().map(String::as_str));
    step("tests (nextest)", cargo(&env, &args))?;
    println!("xtask test: all green in {:.0?}", started.elapsed());
    Ok(())
}

/// The environment that points the HIL suite at the aarch64 binaries in `arm` and their C
/// library for qemu-user.
fn hil_env(arm: &Path) -> Vec<(String, OsString)> {
    vec![
        (
            "EDGETWIN_HIL_AARCH64_DIR".to_owned(),
            arm.as_os_str().to_owned(),
        ),
        (
            "EDGETWIN_HIL_SYSROOT".to_owned(),
            cross::AARCH64.sysroot().into_os_string(),
        ),
    ]
}

/// `cargo xtask hil`: the HIL suite alone. Builds this machine's `edgetwin` and GPIO mapper
/// (the scenarios run them; a stale one would be used as it is) and the aarch64 ones, then runs
/// `hil-tests` with missing peers failing.
fn hil(root: &Path, nextest_args: &[String]) -> Result<()> {
    let started = Instant::now();
    step(
        "build edgetwin and edgetwin-mapper-gpio",
        cargo(
            &[],
            &[
                "build",
                "-p",
                "edgetwin-core",
                "--bin",
                "edgetwin",
                "-p",
                "edgetwin-mapper-gpio",
                "--bin",
                "edgetwin-mapper-gpio",
            ],
        ),
    )?;
    let arm = cross::build_hil(root)?;
    let mut env = hil_env(&arm);
    env.push(("EDGETWIN_REQUIRE_PEERS".to_owned(), "1".into()));
    let mut args = vec![
        "nextest",
        "run",
        "-p",
        "edgetwin-hil-tests",
        "--no-fail-fast",
    ];
    args.extend(nextest_args.iter().map(String::as_str));
    step("HIL scenarios (nextest)", cargo(&env, &args))?;
    println!("xtask hil: all green in {:.0?}", started.elapsed());
    Ok(())
}

/// Environment for the test processes. `EDGETWIN_KUBEEDGE_FIXTURES` is passed through when set;
/// otherwise it is found by [`find_kubeedge_fixtures`].
fn test_env(root: &Path) -> Result<Vec<(String, OsString)>> {
    let mut env = vec![
        (
            "EDGETWIN_PEERS_VENV".to_owned(),
            root.join(provision::VENV_DIR).into_os_string(),
        ),
        // Provisioned above: a missing peer (mosquitto, socat, the venv's packages, Chromium, the
        // KubeEdge fixtures) fails its tests instead of skipping them.
        ("EDGETWIN_REQUIRE_PEERS".to_owned(), "1".into()),
    ];
    if std::env::var_os(FIXTURES_ENV).is_none() {
        match find_kubeedge_fixtures(root) {
            Some(dir) => {
                println!("xtask: {FIXTURES_ENV} unset, using {}", dir.display());
                env.push((FIXTURES_ENV.to_owned(), dir.into_os_string()));
            }
            None => println!(
                "xtask: {FIXTURES_ENV} is unset and no shared/fixtures/kubeedge was found next to \
                 this checkout or the one it was cloned from: the tests on KubeEdge's fixtures \
                 will fail (set {FIXTURES_ENV})"
            ),
        }
    }
    Ok(env)
}

/// The variable naming KubeEdge's fixtures directory (read in place, never copied).
const FIXTURES_ENV: &str = "EDGETWIN_KUBEEDGE_FIXTURES";

/// `shared/fixtures/kubeedge` next to the checkout or one of its parent directories, else next
/// to the checkout this one was cloned from (a clean clone for CI lives elsewhere than the
/// workspace it was cloned from, whose `origin` is that workspace's path).
fn find_kubeedge_fixtures(root: &Path) -> Option<PathBuf> {
    let near = |start: &Path| {
        start
            .ancestors()
            .map(|dir| dir.join("shared/fixtures/kubeedge"))
            .find(|candidate| candidate.is_dir())
    };
    near(root)
        .or_else(|| {
            let output = Command::new("git")
                .args(["remote", "get-url", "origin"])
                .current_dir(root)
                .output()
                .ok()?;
            let origin = String::from_utf8(output.stdout).ok()?;
            let origin = Path::new(origin.trim().trim_start_matches("file://"));
            origin.is_dir().then(|| near(origin)).flatten()
        })
        .and_then(|dir| dir.canonicalize().ok())
}

fn cargo(env: &[(String, OsString)], args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

fn step(name: &str, mut cmd: Command) -> Result<()> {
    let started = Instant::now();
    println!("\n=== xtask: {name}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {name}"))?;
    println!("=== xtask: {name}: {status} in {:.0?}", started.elapsed());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// Builds both binaries of the demo in one cargo invocation, then replaces this process's work
/// with `edgetwin up ARGS`.
fn up(root: &Path, args: &[String]) -> Result<()> {
    step(
        "build edgetwin and edgetwin-mapper-gpio (release)",
        cargo(
            &[],
            &[
                "build",
                "--release",
                "--quiet",
                "-p",
                "edgetwin-core",
                "--bin",
                "edgetwin",
                "-p",
                "edgetwin-mapper-gpio",
                "--bin",
                "edgetwin-mapper-gpio",
            ],
        ),
    )?;
    let exe = root.join("target/release/edgetwin");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let exe = target_dir.map_or(exe, |dir| dir.join("release/edgetwin"));
    let mut command = Command::new(&exe);
    command.arg("up").args(args);
    #[cfg(unix)]
    {
        // exec: Ctrl-C reaches edgetwin alone, and the prompt returns after its clean stop.
        use std::os::unix::process::CommandExt;
        let error = command.exec();
        Err(error).with_context(|| format!("cannot start {}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// Benchmarks, each a `harness = false` bench target run with `cargo bench` (release profile).
fn bench(args: &[String]) -> Result<()> {
    let (package, features, target) = match args.first().map(String::as_str) {
        Some("cloud") => ("edgetwin-core", None, "cloud"),
        Some("cloud-controller") => ("edgetwin-core", None, "cloud_controller"),
        Some("traffic-light") => ("edgetwin-example-traffic-light", None, "flips"),
        Some(other) => {
            bail!("unknown benchmark {other:?}; available: cloud, cloud-controller, traffic-light")
        }
        None => bail!("usage: cargo xtask bench cloud|cloud-controller|traffic-light [ARGS]"),
    };
    let mut cargo_args = vec!["bench", "-p", package];
    if let Some(features) = features {
        cargo_args.extend(["--features", features]);
    }
    cargo_args.extend(["--bench", target, "--"]);
    cargo_args.extend(args[1..].iter().map(String::as_str));
    step(&format!("bench {target}"), cargo(&[], &cargo_args))
}

/// Writes `crds/devices.yaml` and `crds/devicemodels.yaml` from the Rust types, through
/// `edgetwin crd write` (so xtask itself does not build the Kubernetes client stack).
fn gen_crds(root: &Path) -> Result<()> {
    let dir = root.join("crds");
    let dir = dir.to_str().context("the crds path is not UTF-8")?;
    step(
        "gen-crds (edgetwin crd write crds)",
        cargo(
            &[],
            &[
                "run",
                "--quiet",
                "-p",
                "edgetwin-core",
                "--bin",
                "edgetwin",
                "--",
                "crd",
                "write",
                dir,
            ],
        ),
    )
}
