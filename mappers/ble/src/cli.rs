//! The BLE mapper's own command-line options; the rest go to the SDK's common parser.

use crate::radio::{DEFAULT_MAX_CONNECTIONS, RadioOptions};

/// The help text of the BLE options, appended to the SDK's (after a blank line).
pub const USAGE: &str = "\n\
BLE OPTIONS:
  --adapter NAME           adapter of devices that name none (default: hci0 when present,
                           else BlueZ's first) [env EDGETWIN_BLE_ADAPTER]
  --max-connections N      devices connected at once per adapter; more wait for a free slot,
                           first come first served (default 5) [env EDGETWIN_BLE_MAX_CONNECTIONS]

BlueZ (bluetoothd) must run; the mapper talks to it on the system D-Bus
(DBUS_SYSTEM_BUS_ADDRESS overrides where that is).
";

/// Takes the BLE options out of `args` (without the program name), with the environment's as
/// defaults; returns them and the arguments left for the SDK.
pub fn split(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<(RadioOptions, Vec<String>), String> {
    let mut options = RadioOptions {
        default_adapter: env("EDGETWIN_BLE_ADAPTER").filter(|a| !a.is_empty()),
        max_connections: match env("EDGETWIN_BLE_MAX_CONNECTIONS") {
            Some(text) => {
                max_connections(&text).map_err(|e| format!("EDGETWIN_BLE_MAX_CONNECTIONS: {e}"))?
            }
            None => DEFAULT_MAX_CONNECTIONS,
        },
    };
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        if !matches!(flag, "--adapter" | "--max-connections") {
            rest.push(arg.clone());
            continue;
        }
        let value = inline
            .or_else(|| args.next().cloned())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--adapter" => options.default_adapter = Some(value),
            _ => {
                options.max_connections =
                    max_connections(&value).map_err(|e| format!("--max-connections: {e}"))?;
            }
        }
    }
    Ok((options, rest))
}

fn max_connections(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a number from 1 to 64")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ble_options_are_taken_and_the_rest_kept() {
        let (options, rest) = split(
            &args(&[
                "--node",
                "n1",
                "--adapter",
                "hci1",
                "--max-connections=3",
                "--devices",
                "d",
            ]),
            |_| None,
        )
        .expect("valid");
        assert_eq!(options.default_adapter.as_deref(), Some("hci1"));
        assert_eq!(options.max_connections, 3);
        assert_eq!(rest, args(&["--node", "n1", "--devices", "d"]));
    }

    #[test]
    fn the_environment_gives_defaults_that_flags_override() {
        let env = |key: &str| match key {
            "EDGETWIN_BLE_ADAPTER" => Some("hci2".to_owned()),
            "EDGETWIN_BLE_MAX_CONNECTIONS" => Some("7".to_owned()),
            _ => None,
        };
        let (options, _) = split(&[], env).expect("valid");
        assert_eq!(options.default_adapter.as_deref(), Some("hci2"));
        assert_eq!(options.max_connections, 7);
        let (options, _) = split(&args(&["--max-connections", "2"]), env).expect("valid");
        assert_eq!(options.max_connections, 2);
        let (defaults, _) = split(&[], |_| None).expect("valid");
        assert_eq!(defaults, RadioOptions::default());
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--max-connections", "0"][..],
            &["--max-connections", "x"],
            &["--adapter"],
        ] {
            assert!(split(&args(bad), |_| None).is_err(), "{bad:?}");
        }
        let err = split(&[], |k| {
            (k == "EDGETWIN_BLE_MAX_CONNECTIONS").then(|| "many".to_owned())
        })
        .expect_err("invalid");
        assert!(err.starts_with("EDGETWIN_BLE_MAX_CONNECTIONS"), "{err}");
    }
}
