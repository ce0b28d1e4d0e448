//! Where the stack under test runs and what its pins are: the same scenarios run on
//!
//! - [`Rig::simulated`]: this machine's binaries on the simulated chip, the jumpers as
//!   `--sim-wire` (every CI run);
//! - [`Rig::simulated_aarch64`]: the edge agent and the mapper built for `aarch64` and run under
//!   qemu-user, the cloud on this machine (every CI run: architecture bugs without a Pi);
//! - [`Rig::real_pins`]: a Raspberry Pi with the jumpers wired, `HIL=1` (rppal, or the GPIO
//!   character device with `HIL_BACKEND=cdev`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use edgetwin_testkit::binaries::{self, EDGETWIN, MAPPER_GPIO};
use edgetwin_testkit::peers;

/// Set to `1` on a Raspberry Pi with the jumpers wired: the real-pin scenarios run.
pub const HIL_ENV: &str = "HIL";
/// `rpi` (default: rppal, BCM numbers) or `cdev` (the GPIO character device).
pub const HIL_BACKEND_ENV: &str = "HIL_BACKEND";
/// The GPIO chip of the `cdev` backend (default `gpiochip0`).
pub const HIL_CHIP_ENV: &str = "HIL_CHIP";
/// The real-pin bound on desired → input high → reported and Verified, in ms (default 50).
pub const HIL_LATENCY_MS_ENV: &str = "HIL_LATENCY_MS";
/// A directory holding the `aarch64` `edgetwin` (edge build) and `edgetwin-mapper-gpio`
/// (`cargo xtask test` and `cargo xtask hil` build them and set it).
pub const AARCH64_DIR_ENV: &str = "EDGETWIN_HIL_AARCH64_DIR";
/// The qemu-user program for `aarch64` (default: `qemu-aarch64-static` or `qemu-aarch64`).
pub const QEMU_ENV: &str = "EDGETWIN_HIL_QEMU";
/// The `aarch64` sysroot qemu loads the C library from (default `/usr/aarch64-linux-gnu`,
/// Debian's `libc6-arm64-cross`).
pub const SYSROOT_ENV: &str = "EDGETWIN_HIL_SYSROOT";

/// The real-pin bound when [`HIL_LATENCY_MS_ENV`] is unset.
pub const DEFAULT_LATENCY_BOUND: Duration = Duration::from_millis(50);

/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

/// The pins the mapper drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pins {
    /// The mapper's simulated chip, the jumpers as `--sim-wire`.
    Simulated,
    /// A Raspberry Pi through rppal (BCM numbers).
    Rpi,
    /// The GPIO character device `chip` (`gpiochip0`).
    Cdev {
        /// The chip name or path.
        chip: String,
    },
}

impl Pins {
    /// The mapper's `--backend` value.
    pub fn backend(&self) -> &'static str {
        match self {
            Pins::Simulated => "sim",
            Pins::Rpi => "rpi",
            Pins::Cdev { .. } => "cdev",
        }
    }

    /// Whether a restarted mapper must find its outputs as it left them: the simulated chip
    /// (with `--sim-state`) and rppal keep them; with the character device it is up to the
    /// chip's driver (the Pi's turns a released line into an input).
    pub fn outputs_survive_the_mapper(&self) -> bool {
        !matches!(self, Pins::Cdev { .. })
    }
}

/// A program to run, natively or under an emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The emulator and its options, before the program (empty: run natively).
    runner: Vec<OsString>,
    path: PathBuf,
}

impl Program {
    /// `path`, run as it is.
    pub fn native(path: PathBuf) -> Self {
        Program {
            runner: Vec::new(),
            path,
        }
    }

    /// `path` under `qemu` with the C library from `sysroot`.
    pub fn emulated(qemu: PathBuf, sysroot: &Path, path: PathBuf) -> Self {
        Program {
            runner: vec![qemu.into_os_string(), "-L".into(), sysroot.into()],
            path,
        }
    }

    /// A command that runs the program (arguments are added by the caller).
    pub fn command(&self) -> Command {
        let mut command = match self.runner.split_first() {
            Some((emulator, options)) => {
                let mut command = Command::new(emulator);
                command.args(options).arg(&self.path);
                command
            }
            None => Command::new(&self.path),
        };
        // A user's ctl settings must not leak into the test's processes.
        for var in ["EDGETWIN_SERVER", "EDGETWIN_TOKEN", "EDGETWIN_DATA_DIR"] {
            command.env_remove(var);
        }
        command
    }

    /// How it runs, for messages (`qemu-aarch64-static … target/…/edgetwin`).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .runner
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        parts.push(self.path.display().to_string());
        parts.join(" ")
    }
}

/// Everything a scenario needs to know about where it runs.
#[derive(Debug, Clone)]
pub struct Rig {
    /// A short name for messages (`sim`, `aarch64-qemu`, `pins-rpi`).
    pub name: String,
    /// `edgetwin` for the cloud (and `ctl`): always this machine's full build.
    pub cloud: Program,
    /// `edgetwin` for the edge agent.
    pub edge: Program,
    /// `edgetwin-mapper-gpio`.
    pub mapper: Program,
    /// The pins.
    pub pins: Pins,
    /// How long a scenario waits for a state it expects (longer under the emulator).
    pub wait: Duration,
    /// The bound on desired → input high → reported and Verified that the scenarios assert;
    /// `None` where the figures are only printed (shared CI machines, emulators: the project
    /// measures performance in benchmarks, not in assertions).
    pub latency_bound: Option<Duration>,
}

impl Rig {
    /// This machine's binaries on the simulated chip.
    pub fn simulated() -> Rig {
        let (edgetwin, mapper) = host_binaries();
        Rig {
            name: "sim".into(),
            cloud: Program::native(edgetwin.clone()),
            edge: Program::native(edgetwin),
            mapper: Program::native(mapper),
            pins: Pins::Simulated,
            wait: Duration::from_secs(30),
            latency_bound: None,
        }
    }

    /// The `aarch64` edge agent and mapper from [`AARCH64_DIR_ENV`] under qemu-user, the cloud
    /// on this machine, on the simulated chip. `None` (after saying why) when [`AARCH64_DIR_ENV`]
    /// is unset, or when qemu or the sysroot is missing and peers are not required (see
    /// `edgetwin_testkit::peers`).
    ///
    /// # Panics
    /// When qemu or the sysroot is missing and peers are required, or when a binary is not an
    /// `aarch64` ELF file.
    pub fn simulated_aarch64(test: &str) -> Option<Rig> {
        // Opt-in (not a peer): `cargo xtask test` leaves the aarch64 run out (hil-tests/README.md).
        let Some(dir) = std::env::var_os(AARCH64_DIR_ENV).map(PathBuf::from) else {
            eprintln!(
                "{test}: skipped: {AARCH64_DIR_ENV} is unset; `cargo xtask hil` builds the aarch64 \
                 binaries and runs this suite"
            );
            return None;
        };
        let Some(qemu) = qemu() else {
            peers::missing(
                test,
                "qemu-user for aarch64",
                &format!(
                    "neither {QEMU_ENV} nor qemu-aarch64-static / qemu-aarch64 on PATH (Debian: qemu-user-static)"
                ),
            );
            return None;
        };
        let sysroot = std::env::var_os(SYSROOT_ENV)
            .map_or_else(|| PathBuf::from("/usr/aarch64-linux-gnu"), PathBuf::from);
        if !sysroot.join("lib").is_dir() {
            peers::missing(
                test,
                "the aarch64 C library",
                &format!(
                    "{} has no lib/ (Debian: libc6-arm64-cross, or set {SYSROOT_ENV})",
                    sysroot.display()
                ),
            );
            return None;
        }
        let arm = |name: &str| {
            let path = dir.join(name);
            match elf_machine(&path) {
                Ok(EM_AARCH64) => Program::emulated(qemu.clone(), &sysroot, path),
                Ok(other) => panic!(
                    "{test}: {} is not an aarch64 binary (ELF machine {other})",
                    path.display()
                ),
                Err(err) => panic!("{test}: {}: {err}", path.display()),
            }
        };
        let (edgetwin, _) = host_binaries();
        Some(Rig {
            name: "aarch64-qemu".into(),
            cloud: Program::native(edgetwin),
            edge: arm("edgetwin"),
            mapper: arm("edgetwin-mapper-gpio"),
            pins: Pins::Simulated,
            wait: Duration::from_secs(90),
            latency_bound: None,
        })
    }

    /// This machine's binaries on its real pins, when [`HIL_ENV`] is `1`; `None` (after saying
    /// so) otherwise: real pins are opt-in, never a missing peer.
    ///
    /// # Panics
    /// When [`HIL_BACKEND_ENV`] or [`HIL_LATENCY_MS_ENV`] has a value it cannot take.
    pub fn real_pins(test: &str) -> Option<Rig> {
        if std::env::var_os(HIL_ENV).is_none_or(|v| v != "1") {
            eprintln!(
                "{test}: skipped: real pins are opt-in ({HIL_ENV}=1 on a Raspberry Pi with the jumpers of hil-tests/README.md)"
            );
            return None;
        }
        let pins = match std::env::var(HIL_BACKEND_ENV).as_deref() {
            Err(_) | Ok("rpi") => Pins::Rpi,
            Ok("cdev") => Pins::Cdev {
                chip: std::env::var(HIL_CHIP_ENV).unwrap_or_else(|_| "gpiochip0".into()),
            },
            Ok(other) => panic!("{HIL_BACKEND_ENV}={other:?}: use rpi or cdev"),
        };
        let bound = match std::env::var(HIL_LATENCY_MS_ENV) {
            Err(_) => DEFAULT_LATENCY_BOUND,
            Ok(ms) => Duration::from_millis(
                ms.parse()
                    .unwrap_or_else(|_| panic!("{HIL_LATENCY_MS_ENV}={ms:?}: not milliseconds")),
            ),
        };
        let (edgetwin, mapper) = host_binaries();
        Some(Rig {
            name: format!("pins-{}", pins.backend()),
            cloud: Program::native(edgetwin.clone()),
            edge: Program::native(edgetwin),
            mapper: Program::native(mapper),
            pins,
            wait: Duration::from_secs(30),
            latency_bound: Some(bound),
        })
    }
}

/// This machine's `edgetwin` and `edgetwin-mapper-gpio` (built when missing).
fn host_binaries() -> (PathBuf, PathBuf) {
    let found = binaries::workspace_binaries(&[EDGETWIN, MAPPER_GPIO]);
    (found[0].clone(), found[1].clone())
}

/// The qemu-user program for aarch64: [`QEMU_ENV`], or the first of Debian's names on `PATH`.
fn qemu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(QEMU_ENV) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["qemu-aarch64-static", "qemu-aarch64"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The `e_machine` field of an ELF file.
fn elf_machine(path: &Path) -> std::io::Result<u16> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)?.read_exact(&mut header)?;
    if &header[..4] != b"\x7fELF" {
        return Err(std::io::Error::other("not an ELF file"));
    }
    // EI_DATA: 1 = little endian (every target here), 2 = big endian.
    let machine = [header[18], header[19]];
    Ok(if header[5] == 2 {
        u16::from_be_bytes(machine)
    } else {
        u16::from_le_bytes(machine)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulated_program_runs_under_its_emulator() {
        let program = Program::emulated(
            PathBuf::from("/usr/bin/qemu-aarch64-static"),
            Path::new("/usr/aarch64-linux-gnu"),
            PathBuf::from("/tmp/arm/edgetwin"),
        );
        let command = program.command();
        assert_eq!(command.get_program(), "/usr/bin/qemu-aarch64-static");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["-L", "/usr/aarch64-linux-gnu", "/tmp/arm/edgetwin"]);
        assert_eq!(
            program.describe(),
            "/usr/bin/qemu-aarch64-static -L /usr/aarch64-linux-gnu /tmp/arm/edgetwin"
        );
        assert_eq!(
            Program::native(PathBuf::from("/bin/true"))
                .command()
                .get_program(),
            "/bin/true"
        );
    }

    #[test]
    fn the_elf_machine_of_this_test_is_read() {
        let exe = std::env::current_exe().expect("exe");
        let machine = elf_machine(&exe).expect("an ELF file");
        let expected = if cfg!(target_arch = "x86_64") {
            62
        } else if cfg!(target_arch = "aarch64") {
            EM_AARCH64
        } else {
            machine
        };
        assert_eq!(machine, expected);
        let text = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(text.path(), b"#!/bin/sh\nexit 0\n").expect("write");
        assert!(elf_machine(text.path()).is_err());
    }
}
