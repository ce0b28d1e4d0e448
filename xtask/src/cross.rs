//! Builds for the Raspberry Pi's architectures with Debian's own Rust: rustup cannot always fetch
//! targets (not on the reference machine), Debian can. bookworm-security ships `rustc-web` /
//! `cargo-web` (in `/usr/bin`) with `libstd-rust-web-dev` for arm64 and armhf through multiarch,
//! and the cross linkers `gcc-aarch64-linux-gnu` / `gcc-arm-linux-gnueabihf`; qemu-user runs
//! the results. Every build goes into `target/cross` (another compiler than the workspace's
//! toolchain: it never shares artifacts with `target/debug`).
//!
//! - `cargo xtask cross`: release builds of the edge binaries for both targets, stripped copies
//!   in `target/cross/dist/TARGET/`, and their sizes (for BENCHMARKS.md);
//! - [`build_hil`]: the `aarch64` edge agent and GPIO mapper in the fast `hil` profile, for the
//!   HIL scenarios under qemu-user in `cargo xtask test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::provision;

/// Where the cross builds go, relative to the workspace root.
pub const TARGET_DIR: &str = "target/cross";
/// Debian's compiler and cargo (`rustc-web`, `cargo-web`).
const RUSTC: &str = "/usr/bin/rustc";
const RUSTDOC: &str = "/usr/bin/rustdoc";
const CARGO: &str = "/usr/bin/cargo";

/// A target architecture and what Debian calls its parts.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The Rust target triple.
    pub triple: &'static str,
    /// Debian's architecture name (multiarch).
    pub deb_arch: &'static str,
    /// The GNU triple of the cross tools (`aarch64-linux-gnu-gcc`, `-strip`).
    pub gnu: &'static str,
    /// Debian's C library package for the target, seen from the build machine.
    pub libc_cross: &'static str,
}

/// 64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2 W).
pub const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    deb_arch: "arm64",
    gnu: "aarch64-linux-gnu",
    libc_cross: "libc6-dev-arm64-cross",
};

/// 32-bit Raspberry Pi OS (every Pi from the 2 on).
pub const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    deb_arch: "armhf",
    gnu: "arm-linux-gnueabihf",
    libc_cross: "libc6-dev-armhf-cross",
};

impl Target {
    /// The target's standard library of Debian's compiler.
    fn std_dir(&self) -> PathBuf {
        Path::new("/usr/lib/rustlib").join(self.triple).join("lib")
    }

    /// The cross C compiler.
    fn gcc(&self) -> String {
        format!("{}-gcc", self.gnu)
    }

    /// Where the cross C library lives (qemu-user's `-L`).
    pub fn sysroot(&self) -> PathBuf {
        PathBuf::from("/usr").join(self.gnu)
    }

    /// `CARGO_TARGET_<TRIPLE>_…`.
    fn cargo_env(&self, key: &str) -> String {
        format!(
            "CARGO_TARGET_{}_{key}",
            self.triple.to_uppercase().replace('-', "_")
        )
    }
}

/// One binary to build: its package, its name and the cargo feature arguments a user builds it
/// with (the edge build of `edgetwin`: no cloud, no kube).
struct Binary {
    package: &'static str,
    name: &'static str,
    features: &'static [&'static str],
}

/// The binaries that run on an edge node (the BLE mapper has no binary yet).
const EDGE_BINARIES: &[Binary] = &[
    Binary {
        package: "edgetwin-core",
        name: "edgetwin",
        features: &[
            "--no-default-features",
            "--features",
            "cli,edge,embedded-broker",
        ],
    },
    Binary {
        package: "edgetwin-mapper-gpio",
        name: "edgetwin-mapper-gpio",
        features: &[],
    },
    Binary {
        package: "edgetwin-mapper-modbus",
        name: "edgetwin-mapper-modbus",
        features: &[],
    },
    Binary {
        package: "edgetwin-mapper-opcua",
        name: "edgetwin-mapper-opcua",
        features: &[],
    },
    Binary {
        package: "edgetwin-mapper-sim",
        name: "edgetwin-mapper-sim",
        features: &[],
    },
];

/// The size target of a stripped edge binary (issue: ≤ 15 MB).
const SIZE_TARGET_BYTES: u64 = 15 * 1000 * 1000;

/// Installs Debian's compiler, the targets' standard libraries and C toolchains (adding the
/// architectures to dpkg first), and qemu-user. Idempotent.
pub fn provision(targets: &[Target]) -> Result<()> {
    for target in targets {
        provision::dpkg_architecture(target.deb_arch)?;
    }
    let mut packages: Vec<(String, bool)> = vec![
        ("rustc-web".into(), Path::new(RUSTC).is_file()),
        ("cargo-web".into(), Path::new(CARGO).is_file()),
        (
            "qemu-user-static".into(),
            provision::have_command("qemu-aarch64-static"),
        ),
    ];
    for target in targets {
        packages.push((
            format!("libstd-rust-web-dev:{}", target.deb_arch),
            target.std_dir().is_dir(),
        ));
        packages.push((
            format!("gcc-{}", target.gnu),
            provision::have_command(&target.gcc()),
        ));
        packages.push((
            target.libc_cross.into(),
            target.sysroot().join("lib").is_dir(),
        ));
    }
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| name.as_str())
        .collect();
    provision::apt_install(&missing)
}

/// Builds `args` (packages, binaries, features) for `target` in `profile` with Debian's
/// compiler into [`TARGET_DIR`]; returns the profile's output directory.
fn cargo_build(root: &Path, target: Target, profile: &str, args: &[&str]) -> Result<PathBuf> {
    let mut command = Command::new(CARGO);
    command
        .current_dir(root)
        .args(["build", "--locked", "--target", target.triple])
        .args(["--profile", profile, "--target-dir", TARGET_DIR])
        .args(args)
        .env("RUSTC", RUSTC)
        .env("RUSTDOC", RUSTDOC)
        .env(target.cargo_env("LINKER"), target.gcc())
        .env(
            format!("CC_{}", target.triple.replace('-', "_")),
            target.gcc(),
        )
        .env(
            format!("AR_{}", target.triple.replace('-', "_")),
            format!("{}-ar", target.gnu),
        )
        .env("CARGO_INCREMENTAL", "0");
    // Settings meant for the workspace's own toolchain must not reach Debian's.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO_BUILD_RUSTC",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .with_context(|| format!("starting {CARGO} (Debian's cargo-web)"))?;
    if !status.success() {
        bail!(
            "cargo build --target {} --profile {profile} {} failed ({status})",
            target.triple,
            args.join(" ")
        );
    }
    // `dev` builds go to `debug`, every other profile to its own name.
    let dir = if profile == "dev" { "debug" } else { profile };
    Ok(root.join(TARGET_DIR).join(target.triple).join(dir))
}

/// The `aarch64` edge agent (`edgetwin`, edge build) and GPIO mapper in the `hil` profile, for
/// the HIL scenarios under qemu-user; returns the directory that holds them. One cargo run for
/// both (they share most dependencies), so the agent gets tokio's features the mapper uses.
pub fn build_hil(root: &Path) -> Result<PathBuf> {
    provision(&[AARCH64])?;
    cargo_build(
        root,
        AARCH64,
        "hil",
        &[
            "-p",
            "edgetwin-core",
            "--bin",
            "edgetwin",
            "-p",
            "edgetwin-mapper-gpio",
            "--bin",
            "edgetwin-mapper-gpio",
            // The edge build of edgetwin; the mapper with both hardware backends. (Unqualified:
            // cargo enables each feature in the selected packages that have it.)
            "--no-default-features",
            "--features",
            "cli,edge,embedded-broker,cdev,rpi",
        ],
    )
}

/// `cargo xtask cross [--target aarch64|armv7]…`: release builds of every edge binary, one
/// cargo run each (the features a user builds it with), stripped copies in
/// `target/cross/dist/TRIPLE/`, and a size table.
pub fn release(root: &Path, args: &[String]) -> Result<()> {
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--target" => match args.next().map(String::as_str) {
                Some("aarch64") | Some("aarch64-unknown-linux-gnu") => targets.push(AARCH64),
                Some("armv7") | Some("armv7-unknown-linux-gnueabihf") => targets.push(ARMV7),
                other => bail!("--target {other:?}: use aarch64 or armv7"),
            },
            other => {
                bail!("unknown argument {other:?} (cargo xtask cross [--target aarch64|armv7]…)")
            }
        }
    }
    if targets.is_empty() {
        targets = vec![AARCH64, ARMV7];
    }
    provision(&targets)?;
    let mut rows = Vec::new();
    for target in &targets {
        let dist = root.join(TARGET_DIR).join("dist").join(target.triple);
        std::fs::create_dir_all(&dist).with_context(|| format!("{}", dist.display()))?;
        for binary in EDGE_BINARIES {
            let started = Instant::now();
            println!(
                "\n=== xtask cross: {} for {} (release)",
                binary.name, target.triple
            );
            let mut build_args = vec!["-p", binary.package, "--bin", binary.name];
            build_args.extend(binary.features);
            let out = cargo_build(root, *target, "release", &build_args)?;
            let built = out.join(binary.name);
            let stripped = dist.join(binary.name);
            let status = Command::new(format!("{}-strip", target.gnu))
                .arg("-o")
                .arg(&stripped)
                .arg(&built)
                .status()
                .context("starting the cross strip")?;
            if !status.success() {
                bail!("stripping {} failed ({status})", built.display());
            }
            let size = |path: &Path| std::fs::metadata(path).map(|m| m.len());
            let (as_built, after) = (size(&built)?, size(&stripped)?);
            println!(
                "=== xtask cross: {} for {}: {} bytes as built, {after} stripped, in {:.0?}",
                binary.name,
                target.triple,
                as_built,
                started.elapsed()
            );
            rows.push((binary.name, target.triple, after));
        }
    }
    println!("\nbinary | target | stripped | ≤ 15 MB");
    println!("---|---|---|---");
    for (name, triple, bytes) in &rows {
        println!(
            "{name} | {triple} | {:.2} MB ({bytes} bytes) | {}",
            *bytes as f64 / 1e6,
            if *bytes <= SIZE_TARGET_BYTES {
                "yes"
            } else {
                "no"
            }
        );
    }
    println!(
        "\nstripped binaries: {}/dist/",
        root.join(TARGET_DIR).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_target_variables_use_the_upper_case_triple() {
        assert_eq!(
            AARCH64.cargo_env("LINKER"),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"
        );
        assert_eq!(
            ARMV7.cargo_env("RUNNER"),
            "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER"
        );
        assert_eq!(AARCH64.gcc(), "aarch64-linux-gnu-gcc");
        assert_eq!(ARMV7.sysroot(), Path::new("/usr/arm-linux-gnueabihf"));
    }
}
