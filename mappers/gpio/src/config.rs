//! The mapper's configuration as it appears in Device and DeviceModel YAML, and the ON/OFF
//! values of GPIO properties.
//!
//! ```yaml
//! # DeviceModel (inherited by every instance) or Device
//! protocolConfigData:          # Device: spec.protocol.configData
//!   backend: sim               # sim | cdev | rpi (default: rpi on a Raspberry Pi, sim elsewhere)
//!   chip: gpiochip0            # default chip of the lines (cdev, sim)
//!   interlock:                 # see crate::interlock
//!     - never: {red: "ON", green: "ON"}
//!       reason: red and green are never both on
//! # Device: spec.properties[].visitors.configData
//! pin: 17                      # BCM number on a Pi; the line offset for cdev and sim
//! direction: out               # out | in (default: out when the property is ReadWrite)
//! activeLow: false
//! bias: pullUp                 # pullUp | pullDown | disabled (default: leave as is)
//! initial: "off"               # outputs: level when the line is requested (default off)
//! debounce: 10ms               # inputs
//! ```

use std::collections::BTreeMap;
use std::fmt;

use edgetwin_sdk::DurationSpec;
use edgetwin_sdk::{PropertyType, Value};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::chip::Bias;

/// Which GPIO backend serves a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The simulated chip (in memory).
    Sim,
    /// The Linux GPIO character device (`/dev/gpiochipN`).
    Cdev,
    /// A Raspberry Pi through rppal (BCM numbering).
    Rpi,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Sim => "sim",
            BackendKind::Cdev => "cdev",
            BackendKind::Rpi => "rpi",
        })
    }
}

/// `protocol.configData` of a GPIO device (the model's `protocolConfigData` merged under it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpioProtocol {
    /// The backend; the driver's default (detected from the board) when absent.
    #[serde(default)]
    pub backend: Option<BackendKind>,
    /// The chip of lines that name none (`gpiochip0` when absent).
    #[serde(default)]
    pub chip: Option<String>,
    /// Safety rules checked before every write.
    #[serde(default)]
    pub interlock: Vec<InterlockRule>,
}

/// One interlock rule: exactly one of `never` and `mutuallyExclusive`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterlockRule {
    /// A forbidden combination: these properties never all have these values at once.
    #[serde(default)]
    pub never: Option<BTreeMap<String, Switch>>,
    /// At most one of these properties is ON at any time.
    #[serde(default)]
    pub mutually_exclusive: Option<Vec<String>>,
    /// Why the rule exists; the message of a refused write.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Direction of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// An output the mapper drives (a lamp, a relay).
    #[serde(alias = "output")]
    Out,
    /// An input the mapper reads (a button, a contact).
    #[serde(alias = "input")]
    In,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Out => "out",
            Direction::In => "in",
        })
    }
}

/// `properties[].visitors.configData` of a GPIO property.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpioVisitor {
    /// The BCM GPIO number on a Raspberry Pi; the line offset on the chip for cdev and sim.
    #[serde(default)]
    pub pin: Option<u32>,
    /// The line offset on the chip (a synonym of `pin`; give one of them).
    #[serde(default)]
    pub line: Option<u32>,
    /// The chip, when not the device's `chip` (cdev, sim).
    #[serde(default)]
    pub chip: Option<String>,
    /// `out` or `in`; default `out` for a writable property, `in` for a ReadOnly one.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// The line is active (ON) when the pin is low.
    #[serde(default)]
    pub active_low: bool,
    /// The pull resistor; left as it is when absent.
    #[serde(default)]
    pub bias: Option<Bias>,
    /// Outputs: the level driven when the line is requested (default OFF).
    #[serde(default)]
    pub initial: Option<Switch>,
    /// Inputs: report a change only once the line has been stable this long.
    #[serde(default)]
    pub debounce: Option<DurationSpec>,
    /// Accepted for KubeEdge compatibility and ignored: the model's property type decides.
    #[serde(default)]
    pub data_type: Option<String>,
}

/// A logical level written in YAML: `ON`/`OFF` (any case), `true`/`false` or `1`/`0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Switch(pub bool);

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SwitchVisitor;

        impl Visitor<'_> for SwitchVisitor {
            type Value = Switch;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ON or OFF (also true/false, 1/0)")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(Switch(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Switch, E> {
                match v {
                    0 => Ok(Switch(false)),
                    1 => Ok(Switch(true)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Switch, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Switch, E> {
                parse_switch(v)
                    .map(Switch)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(SwitchVisitor)
    }
}

/// Parses `ON`/`OFF` (any case), `true`/`false` (any case) or `1`/`0`.
pub fn parse_switch(text: &str) -> Option<bool> {
    let text = text.trim();
    if ["on", "true", "1"]
        .iter()
        .any(|t| text.eq_ignore_ascii_case(t))
    {
        Some(true)
    } else if ["off", "false", "0"]
        .iter()
        .any(|t| text.eq_ignore_ascii_case(t))
    {
        Some(false)
    } else {
        None
    }
}

/// The text of a logical level in messages and STRING properties.
pub fn on_off(active: bool) -> &'static str {
    if active { "ON" } else { "OFF" }
}

/// Whether a property type can carry a GPIO level.
pub fn holds_level(ty: PropertyType) -> bool {
    matches!(
        ty,
        PropertyType::String | PropertyType::Boolean | PropertyType::Int
    )
}

/// The logical level a written value asks for.
pub fn level_of(value: &Value) -> Result<bool, String> {
    match value {
        Value::Boolean(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::String(s) => parse_switch(s).ok_or_else(|| {
            format!("{s:?} is not a GPIO level: write ON or OFF (or true/false, 1/0)")
        }),
        other => Err(format!(
            "{other} is not a GPIO level: write ON or OFF (or true/false, 1/0)"
        )),
    }
}

/// The value a level is reported as, in the property's type: `ON`/`OFF` for STRING (as in
/// KubeEdge's traffic-light example), `true`/`false` for BOOLEAN, `1`/`0` for INT.
pub fn value_of(active: bool, ty: PropertyType) -> Value {
    match ty {
        PropertyType::Boolean => Value::Boolean(active),
        PropertyType::Int => Value::Int(i64::from(active)),
        _ => Value::String(on_off(active).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_accept_on_off_booleans_and_digits() {
        for text in ["ON", "on", "On", " true ", "TRUE", "1"] {
            assert_eq!(parse_switch(text), Some(true), "{text}");
        }
        for text in ["OFF", "off", "False", "0"] {
            assert_eq!(parse_switch(text), Some(false), "{text}");
        }
        for text in ["", "yes", "2", "high", "ONN"] {
            assert_eq!(parse_switch(text), None, "{text}");
        }
        let parsed: Vec<Switch> =
            serde_json::from_str(r#"["ON", "off", true, false, 1, 0]"#).expect("switches");
        assert_eq!(
            parsed.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![true, false, true, false, true, false]
        );
        let err = serde_json::from_str::<Switch>("2").expect_err("not a level");
        assert!(err.to_string().contains("ON or OFF"), "{err}");
    }

    #[test]
    fn written_values_map_to_levels() {
        assert_eq!(level_of(&Value::String("on".into())), Ok(true));
        assert_eq!(level_of(&Value::String("OFF".into())), Ok(false));
        assert_eq!(level_of(&Value::Boolean(true)), Ok(true));
        assert_eq!(level_of(&Value::Int(0)), Ok(false));
        let err = level_of(&Value::String("blink".into())).expect_err("not a level");
        assert!(err.contains("\"blink\" is not a GPIO level"), "{err}");
        assert!(level_of(&Value::Int(2)).is_err());
        assert!(level_of(&Value::Float(1.0)).is_err());
    }

    #[test]
    fn levels_are_reported_in_the_property_type() {
        assert_eq!(
            value_of(true, PropertyType::String),
            Value::String("ON".into())
        );
        assert_eq!(
            value_of(false, PropertyType::String),
            Value::String("OFF".into())
        );
        assert_eq!(value_of(true, PropertyType::Boolean), Value::Boolean(true));
        assert_eq!(value_of(true, PropertyType::Int), Value::Int(1));
        assert!(holds_level(PropertyType::String));
        assert!(!holds_level(PropertyType::Float));
    }

    #[test]
    fn visitor_config_reads_every_field() {
        let visitor: GpioVisitor = serde_json::from_value(serde_json::json!({
            "pin": 17, "direction": "in", "activeLow": true, "bias": "pullUp",
            "debounce": "10ms", "chip": "gpiochip1", "dataType": "string"
        }))
        .expect("valid");
        assert_eq!(visitor.pin, Some(17));
        assert_eq!(visitor.direction, Some(Direction::In));
        assert!(visitor.active_low);
        assert_eq!(visitor.bias, Some(Bias::PullUp));
        assert_eq!(visitor.debounce.map(DurationSpec::as_millis), Some(10));
        assert_eq!(visitor.chip.as_deref(), Some("gpiochip1"));
        let output: GpioVisitor = serde_json::from_value(
            serde_json::json!({"line": 4, "direction": "output", "initial": "ON"}),
        )
        .expect("valid");
        assert_eq!(output.direction, Some(Direction::Out));
        assert_eq!(output.initial, Some(Switch(true)));
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let err = serde_json::from_value::<GpioVisitor>(serde_json::json!({"pn": 17}))
            .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `pn`"), "{err}");
        let err = serde_json::from_value::<GpioVisitor>(serde_json::json!({"bias": "up"}))
            .expect_err("bad bias");
        assert!(err.to_string().contains("pullUp"), "{err}");
        let err = serde_json::from_value::<GpioProtocol>(serde_json::json!({"backend": "pi"}))
            .expect_err("bad backend");
        assert!(err.to_string().contains("rpi"), "{err}");
    }

    #[test]
    fn protocol_config_reads_interlock_rules() {
        let protocol: GpioProtocol = serde_json::from_value(serde_json::json!({
            "backend": "sim",
            "interlock": [
                {"never": {"red": "ON", "green": "ON"}, "reason": "never both"},
                {"mutuallyExclusive": ["red", "yellow", "green"]}
            ]
        }))
        .expect("valid");
        assert_eq!(protocol.backend, Some(BackendKind::Sim));
        assert_eq!(protocol.interlock.len(), 2);
        let never = protocol.interlock[0].never.as_ref().expect("never");
        assert_eq!(never.get("red"), Some(&Switch(true)));
        assert_eq!(
            protocol.interlock[1].mutually_exclusive.as_deref(),
            Some(&["red".to_owned(), "yellow".to_owned(), "green".to_owned()][..])
        );
        assert_eq!(GpioProtocol::default().interlock, Vec::new());
    }
}
