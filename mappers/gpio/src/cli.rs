//! The GPIO mapper's own command-line options; the rest go to the SDK's common parser.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::BackendKind;
use crate::driver::DEFAULT_CHIP;

/// The help text of the GPIO options, appended to the SDK's (after a blank line).
pub const USAGE: &str = "\n\
GPIO OPTIONS:
  --backend sim|cdev|rpi   backend of devices that name none (default: rpi on a Raspberry Pi,
                           sim elsewhere)
  --sim-http ADDR          serve the simulated pins as JSON on ADDR, e.g. 127.0.0.1:9180
                           (GET /sim, GET /sim/CHIP/LINE, PUT /sim/CHIP/LINE high|low|float)
  --sim-wire [CHIP:]OUT:IN wire simulated output line OUT to input line IN (repeatable;
                           CHIP defaults to gpiochip0)
  --sim-state DIR          keep the simulated pins in DIR, so that the mapper started again
                           finds them as it left them (as real pins stay when it dies)
";

/// A wire between two lines of a simulated chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimWire {
    /// The chip.
    pub chip: String,
    /// The output line.
    pub output: u32,
    /// The input line it drives.
    pub input: u32,
}

/// The GPIO options of a command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpioArgs {
    /// `--backend`.
    pub backend: Option<BackendKind>,
    /// `--sim-http`.
    pub sim_http: Option<SocketAddr>,
    /// `--sim-wire`, in order.
    pub wires: Vec<SimWire>,
    /// `--sim-state`.
    pub sim_state: Option<PathBuf>,
}

impl GpioArgs {
    /// Takes the GPIO options out of `args` (without the program name); returns them and the
    /// arguments left for the SDK.
    pub fn split(args: &[String]) -> Result<(GpioArgs, Vec<String>), String> {
        let mut gpio = GpioArgs::default();
        let mut rest = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            if !matches!(
                flag,
                "--backend" | "--sim-http" | "--sim-wire" | "--sim-state"
            ) {
                rest.push(arg.clone());
                continue;
            }
            let value = inline
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))?;
            match flag {
                "--backend" => {
                    gpio.backend = Some(match value.as_str() {
                        "sim" => BackendKind::Sim,
                        "cdev" => BackendKind::Cdev,
                        "rpi" => BackendKind::Rpi,
                        other => {
                            return Err(format!("--backend {other:?}: use sim, cdev or rpi"));
                        }
                    });
                }
                "--sim-http" => {
                    gpio.sim_http = Some(value.parse().map_err(|_| {
                        format!("--sim-http {value:?} is not an address like 127.0.0.1:9180")
                    })?);
                }
                "--sim-state" => gpio.sim_state = Some(PathBuf::from(value)),
                _ => gpio.wires.push(parse_wire(&value)?),
            }
        }
        Ok((gpio, rest))
    }
}

fn parse_wire(text: &str) -> Result<SimWire, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (chip, output, input) = match parts.as_slice() {
        [output, input] => (DEFAULT_CHIP, *output, *input),
        [chip, output, input] if !chip.is_empty() => (*chip, *output, *input),
        _ => return Err(format!("--sim-wire {text:?}: write OUT:IN or CHIP:OUT:IN")),
    };
    let line = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("--sim-wire {text:?}: {s:?} is not a line number"))
    };
    Ok(SimWire {
        chip: chip.to_owned(),
        output: line(output)?,
        input: line(input)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn gpio_options_are_taken_and_the_rest_left_in_order() {
        let (gpio, rest) = GpioArgs::split(&args(&[
            "--node",
            "edge-1",
            "--backend=sim",
            "--sim-http",
            "127.0.0.1:9180",
            "--sim-wire",
            "17:4",
            "--sim-wire=bank1:2:3",
            "--sim-state",
            "/var/lib/sim",
            "--devices",
            "/etc/devices",
        ]))
        .expect("valid");
        assert_eq!(gpio.backend, Some(BackendKind::Sim));
        assert_eq!(gpio.sim_http, "127.0.0.1:9180".parse().ok());
        assert_eq!(
            gpio.wires,
            vec![
                SimWire {
                    chip: "gpiochip0".into(),
                    output: 17,
                    input: 4
                },
                SimWire {
                    chip: "bank1".into(),
                    output: 2,
                    input: 3
                },
            ]
        );
        assert_eq!(gpio.sim_state, Some(PathBuf::from("/var/lib/sim")));
        assert_eq!(
            rest,
            args(&["--node", "edge-1", "--devices", "/etc/devices"])
        );
    }

    #[test]
    fn bad_gpio_options_are_explained() {
        for (list, message) in [
            (
                &["--backend", "pi"][..],
                "--backend \"pi\": use sim, cdev or rpi",
            ),
            (
                &["--sim-http", "localhost"],
                "--sim-http \"localhost\" is not an address",
            ),
            (
                &["--sim-wire", "17"],
                "--sim-wire \"17\": write OUT:IN or CHIP:OUT:IN",
            ),
            (&["--sim-wire", "a:b"], "\"a\" is not a line number"),
            (&["--sim-wire"], "--sim-wire needs a value"),
            (&["--sim-state"], "--sim-state needs a value"),
        ] {
            let err = GpioArgs::split(&args(list)).expect_err("invalid");
            assert!(err.contains(message), "{err}");
        }
    }
}
