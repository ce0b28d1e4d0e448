//! A look at the pins that does not go through edgetwin: the simulated chip's own HTTP view
//! (`--sim-http`, with its transition log), or, on a Raspberry Pi, the GPIO registers read by
//! this process through rppal (reading a pin another process drives does not disturb it). The
//! character device offers no such look: a line the mapper holds cannot be opened twice.

use std::net::SocketAddr;

use serde_json::Value;

use crate::http;
use crate::wiring::JUMPERS;

/// The level of each of the rig's six lines: `(BCM, high)` in the order of [`JUMPERS`], each
/// output followed by its input.
pub type Levels = Vec<(u32, bool)>;

/// How the pins can be seen from outside the stack.
#[derive(Debug, Clone)]
pub enum PinView {
    /// The mapper's `--sim-http` endpoint.
    Sim(SocketAddr),
    /// The Raspberry Pi's GPIO registers.
    Rpi(rppal::gpio::Gpio),
    /// No view (the character device).
    Unavailable,
}

impl PinView {
    /// The view of a Raspberry Pi's pins.
    ///
    /// # Panics
    /// When rppal cannot open the GPIO registers (not a Pi, no permission).
    pub fn rpi() -> PinView {
        PinView::Rpi(
            rppal::gpio::Gpio::new()
                .unwrap_or_else(|e| panic!("reading the pins through rppal: {e}")),
        )
    }

    /// Whether pin `bcm` is high; `None` without a view.
    ///
    /// # Panics
    /// When the view does not answer.
    pub fn level(&self, bcm: u32) -> Option<bool> {
        match self {
            PinView::Sim(addr) => {
                let line = sim_get(*addr, &format!("/sim/gpiochip0/{bcm}"));
                Some(line["level"] == "high")
            }
            PinView::Rpi(gpio) => {
                let pin = u8::try_from(bcm)
                    .ok()
                    .and_then(|n| gpio.get(n).ok())
                    .unwrap_or_else(|| panic!("GPIO{bcm} cannot be read"));
                Some(pin.read() == rppal::gpio::Level::High)
            }
            PinView::Unavailable => None,
        }
    }

    /// The levels of all six lines of the rig; `None` without a view.
    pub fn levels(&self) -> Option<Levels> {
        if matches!(self, PinView::Unavailable) {
            return None;
        }
        let lines = JUMPERS.iter().flat_map(|j| [j.output, j.input]);
        Some(
            lines
                .map(|bcm| (bcm, self.level(bcm).unwrap_or_default()))
                .collect(),
        )
    }

    /// The simulated chip's transitions after `since` (a `seq`; 0 for the whole log) as JSON
    /// objects (`{"seq", "atMs", "line", "level", "cause"}`); `None` for real pins.
    pub fn transitions_since(&self, since: u64) -> Option<Vec<Value>> {
        let PinView::Sim(addr) = self else {
            return None;
        };
        let chip = sim_get(*addr, &format!("/sim/gpiochip0?since={since}"));
        Some(chip["transitions"].as_array().cloned().unwrap_or_default())
    }

    /// The `seq` of the simulated chip's last transition (0 when none); `None` for real pins.
    pub fn last_seq(&self) -> Option<u64> {
        let transitions = self.transitions_since(0)?;
        Some(
            transitions
                .last()
                .and_then(|t| t["seq"].as_u64())
                .unwrap_or(0),
        )
    }
}

/// A JSON answer of the simulated chip's view.
fn sim_get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) =
        http::get(addr, path).unwrap_or_else(|e| panic!("the sim view {addr}{path}: {e}"));
    assert_eq!(status, 200, "the sim view {addr}{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the sim view {addr}{path}: {e}: {body}"))
}
