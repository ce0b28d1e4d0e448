//! The edgetwin GPIO mapper: device properties on GPIO lines.
//!
//! Each property of a `gpio` device is one line: an output the twin's desired value drives (a
//! lamp, a relay) or an input reported when it changes (a button, a contact). The lines come
//! from one of three backends behind the [`chip::GpioChip`] seam: a Raspberry Pi through rppal
//! (`rpi`, BCM numbering), any Linux board's GPIO character device through gpiocdev (`cdev`,
//! chip + line) and a simulated chip (`sim`, the default off a Pi) that logs every pin
//! transition and can wire an output to an input.
//!
//! - [`config`]: the Device/DeviceModel configuration and ON/OFF values;
//! - [`interlock`]: safety rules checked before every write;
//! - [`driver`]: the SDK [`edgetwin_sdk::Driver`] and its session;
//! - [`chip`]: the backends;
//! - [`sim_http`]: the loopback endpoint that shows (and drives) the simulated pins;
//! - [`platform`]: picks the default backend.
//!
//! See `mappers/gpio/README.md` for the configuration reference.

pub mod chip;
pub mod cli;
pub mod config;
pub mod driver;
pub mod interlock;
pub mod platform;
pub mod sim_http;

pub use driver::GpioDriver;
