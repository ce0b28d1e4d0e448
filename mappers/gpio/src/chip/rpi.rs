//! A Raspberry Pi's GPIO header through rppal, lines addressed by BCM GPIO number (the `GPIO17`
//! of pinout diagrams, not the physical pin 11).
//!
//! rppal has no active-low, so it is applied here; edges come from rppal's interrupt thread
//! (with its debounce), translated to logical edges. rppal cannot leave a pull resistor as it
//! is: an input without `bias` gets none, and outputs ignore `bias`.
//!
//! Outputs survive the mapper: a pin that is already an output when it is requested (a mapper
//! restarted after a crash or by systemd) is taken over at its level, not driven to `initial`,
//! and a released output is left driving (rppal's reset on drop is turned off for outputs), so
//! a restart never blinks a lamp. A released input goes back to the mode it had before.
//!
//! Not exercised in CI: on anything but a Raspberry Pi [`RpiChip::open`] fails with
//! [`GpioError::Unavailable`] ("not a Raspberry Pi"), which the tests check.

use rppal::gpio::{Gpio, InputPin, Level, Mode, OutputPin, Trigger};

use super::{
    Bias, EdgeEvent, EdgeStream, GpioChip, GpioError, InputLine, InputRequest, OutputLine,
    OutputRequest,
};

/// The chip name rppal's lines report in errors.
const NAME: &str = "rpi (BCM)";

/// The Raspberry Pi's GPIO controller.
#[derive(Debug)]
pub struct RpiChip {
    gpio: Gpio,
}

impl RpiChip {
    /// Opens the GPIO controller; fails clearly on a machine that is not a Raspberry Pi.
    pub fn open() -> Result<RpiChip, GpioError> {
        Gpio::new()
            .map(|gpio| RpiChip { gpio })
            .map_err(|err| match err {
                rppal::gpio::Error::UnknownModel => GpioError::Unavailable(
                    "not a Raspberry Pi (rppal cannot identify the board): use backend cdev or sim"
                        .into(),
                ),
                rppal::gpio::Error::PermissionDenied(path) => GpioError::Unavailable(format!(
                    "permission denied on {path} (run as root or add the user to the gpio group)"
                )),
                other => GpioError::Io {
                    chip: NAME.into(),
                    detail: other.to_string(),
                },
            })
    }

    fn pin(&self, line: u32) -> Result<rppal::gpio::Pin, GpioError> {
        let no_line = || GpioError::NoSuchLine {
            chip: NAME.into(),
            line,
            lines: None,
        };
        let bcm = u8::try_from(line).map_err(|_| no_line())?;
        self.gpio.get(bcm).map_err(|err| match err {
            rppal::gpio::Error::PinNotAvailable(_) => no_line(),
            rppal::gpio::Error::PinUsed(_) => GpioError::Busy {
                chip: NAME.into(),
                line,
                holder: None,
            },
            other => io(line, other),
        })
    }
}

fn io(line: u32, err: impl std::fmt::Display) -> GpioError {
    GpioError::Io {
        chip: NAME.into(),
        detail: format!("GPIO{line}: {err}"),
    }
}

fn level_of(active: bool, active_low: bool) -> Level {
    if active != active_low {
        Level::High
    } else {
        Level::Low
    }
}

impl GpioChip for RpiChip {
    fn name(&self) -> &str {
        NAME
    }

    fn request_output(&self, request: &OutputRequest) -> Result<Box<dyn OutputLine>, GpioError> {
        let options = &request.options;
        let pin = self.pin(options.line)?;
        let mut pin = if pin.mode() == Mode::Output {
            // Still driving what the last holder set: keep it.
            pin.into_output()
        } else {
            match level_of(request.initial, options.active_low) {
                Level::High => pin.into_output_high(),
                Level::Low => pin.into_output_low(),
            }
        };
        pin.set_reset_on_drop(false);
        Ok(Box::new(RpiOutput {
            pin,
            active_low: options.active_low,
        }))
    }

    fn request_input(&self, request: &InputRequest) -> Result<Box<dyn InputLine>, GpioError> {
        let options = &request.options;
        let line = options.line;
        let pin = self.pin(line)?;
        let mut pin = match options.bias {
            Some(Bias::PullUp) => pin.into_input_pullup(),
            Some(Bias::PullDown) => pin.into_input_pulldown(),
            Some(Bias::Disabled) | None => pin.into_input(),
        };
        let edges = if request.edges {
            let (tx, stream) = EdgeStream::channel();
            let active_low = options.active_low;
            pin.set_async_interrupt(Trigger::Both, request.debounce, move |event| {
                let rising = event.trigger == Trigger::RisingEdge;
                tx.send(Ok(EdgeEvent {
                    active: rising != active_low,
                }));
            })
            .map_err(|err| io(line, err))?;
            Some(stream)
        } else {
            None
        };
        Ok(Box::new(RpiInput {
            pin,
            active_low: options.active_low,
            edges,
        }))
    }
}

#[derive(Debug)]
struct RpiOutput {
    pin: OutputPin,
    active_low: bool,
}

impl OutputLine for RpiOutput {
    fn set(&mut self, active: bool) -> Result<(), GpioError> {
        self.pin.write(level_of(active, self.active_low));
        Ok(())
    }

    fn get(&self) -> Result<bool, GpioError> {
        Ok(self.pin.is_set_high() != self.active_low)
    }
}

#[derive(Debug)]
struct RpiInput {
    pin: InputPin,
    active_low: bool,
    edges: Option<EdgeStream>,
}

impl InputLine for RpiInput {
    fn get(&self) -> Result<bool, GpioError> {
        Ok(self.pin.is_high() != self.active_low)
    }

    fn edges(&mut self) -> Option<EdgeStream> {
        self.edges.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_a_pi() -> bool {
        std::fs::read("/proc/device-tree/compatible")
            .map(|c| crate::platform::is_raspberry_pi(&c))
            .unwrap_or(false)
    }

    #[test]
    fn off_a_pi_opening_fails_with_a_clear_error_not_a_panic() {
        if on_a_pi() {
            println!("skipped: this is a Raspberry Pi");
            return;
        }
        println!("note: the rppal hardware path is not exercised here (not a Raspberry Pi)");
        let err = RpiChip::open().expect_err("not a Raspberry Pi");
        assert!(matches!(err, GpioError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("not a Raspberry Pi"), "{err}");
        assert!(!err.is_transient(), "retrying cannot help");
    }

    #[test]
    fn active_low_is_applied_by_the_adapter() {
        assert_eq!(level_of(true, false), Level::High);
        assert_eq!(level_of(true, true), Level::Low);
        assert_eq!(level_of(false, true), Level::High);
        assert_eq!(level_of(false, false), Level::Low);
    }
}
