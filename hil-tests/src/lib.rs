//! Hardware-in-the-loop scenarios: the whole stack (`edgetwin cloud`, `edgetwin edge`, the GPIO
//! mapper, each a process) drives the traffic light, and the physical result is checked through
//! a second path: each lamp's output is jumpered to an input that the mapper reports as a
//! property of its own (see [`wiring`] for the table).
//!
//! The same [`scenarios`] run on three [`rig::Rig`]s:
//!
//! - the simulated chip with its loopback wiring (`--sim-wire`), in every CI run (`tests/sim.rs`);
//! - the same with the edge agent and the mapper built for `aarch64` and run under qemu-user
//!   (`tests/aarch64.rs`; `cargo xtask hil` builds them);
//! - a Raspberry Pi's real pins with `HIL=1` (`tests/pins.rs`; rppal, or `HIL_BACKEND=cdev`).
//!
//! Modules: [`wiring`] (the rig and its Device), [`rig`] (where it runs), [`stack`] (the
//! processes), [`observe`] (what the registry says), [`pins`] (the pins seen from outside),
//! [`process`] and [`http`] (plumbing). See `hil-tests/README.md` for wiring a Pi and running it.

pub mod http;
pub mod observe;
pub mod pins;
pub mod process;
pub mod rig;
pub mod scenarios;
pub mod stack;
pub mod wiring;
