//! The rig: the traffic light's three lamps, each output jumpered to an input that reads it back,
//! and the DeviceModel and Device that describe it to edgetwin.
//!
//! | lamp | output (BCM) | header pin | jumper to input (BCM) | header pin | input property |
//! |---|---|---|---|---|---|
//! | red | GPIO17 | 11 | GPIO5 | 29 | `red_in` |
//! | yellow | GPIO27 | 13 | GPIO6 | 31 | `yellow_in` |
//! | green | GPIO22 | 15 | GPIO13 | 33 | `green_in` |
//!
//! On a Raspberry Pi these are real jumper wires (the LEDs with their resistors stay on the
//! outputs); on the simulated chip they are `--sim-wire 17:5` and so on. The inputs are
//! properties of the same device, so what the pins really did travels the whole reported path
//! (input edge → mapper → edge agent → tunnel → registry status) next to the lamps' read-back.

use crate::rig::Pins;

/// The edge node of the rig.
pub const NODE: &str = "hil-node";
/// The rig's Device (and DeviceModel), in namespace `default`.
pub const DEVICE: &str = "hil-light";
/// How often an input is polled: far longer than any test waits, so that an input's report
/// can only come from its edge (the mapper pushes it when the line changes).
pub const INPUT_COLLECT_CYCLE_MS: u64 = 3_600_000;
/// How soon a pushed input value is reported: the SDK reports at each report tick (the
/// shortest `reportCycle` of the device, 1 s by default), so the inputs ask for 10 ms.
pub const INPUT_REPORT_CYCLE_MS: u64 = 10;

/// One lamp and the jumper that reads it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jumper {
    /// The lamp property (an output).
    pub lamp: &'static str,
    /// The lamp's BCM GPIO number (the line offset on other chips).
    pub output: u32,
    /// The output's physical pin on the 40-pin header.
    pub output_header: u32,
    /// The input property that reads the lamp's pin back.
    pub sense: &'static str,
    /// The input's BCM GPIO number.
    pub input: u32,
    /// The input's physical pin on the 40-pin header.
    pub input_header: u32,
}

/// The three jumpers, in the order of the device's lamp properties.
pub const JUMPERS: [Jumper; 3] = [
    Jumper {
        lamp: "red",
        output: 17,
        output_header: 11,
        sense: "red_in",
        input: 5,
        input_header: 29,
    },
    Jumper {
        lamp: "yellow",
        output: 27,
        output_header: 13,
        sense: "yellow_in",
        input: 6,
        input_header: 31,
    },
    Jumper {
        lamp: "green",
        output: 22,
        output_header: 15,
        sense: "green_in",
        input: 13,
        input_header: 33,
    },
];

/// The jumper of `lamp`.
///
/// # Panics
/// When `lamp` is not one of the rig's lamps (a mistake in a scenario).
pub fn jumper(lamp: &str) -> Jumper {
    JUMPERS
        .into_iter()
        .find(|j| j.lamp == lamp)
        .unwrap_or_else(|| panic!("{lamp} is not a lamp of the rig"))
}

/// The `--sim-wire` arguments of the simulated rig (`17:5`, …).
pub fn sim_wires() -> Vec<String> {
    JUMPERS
        .iter()
        .map(|j| format!("{}:{}", j.output, j.input))
        .collect()
}

/// The DeviceModel and the Device of the rig for `pins`, as one YAML stream.
pub fn manifests(pins: &Pins) -> String {
    let mut model = String::from(
        "apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: hil-light
  namespace: default
spec:
  protocol: gpio
  protocolConfigData:
    interlock:
      - never: {red: \"ON\", green: \"ON\"}
        reason: red and green are never both on
  properties:
",
    );
    for j in &JUMPERS {
        model.push_str(&format!(
            "    - {{name: {}, type: STRING, accessMode: ReadWrite}}\n",
            j.lamp
        ));
    }
    for j in &JUMPERS {
        model.push_str(&format!(
            "    - {{name: {}, type: STRING, accessMode: ReadOnly}}\n",
            j.sense
        ));
    }
    let protocol = match pins {
        Pins::Simulated => "backend: sim".to_owned(),
        Pins::Rpi => "backend: rpi".to_owned(),
        Pins::Cdev { chip } => format!("backend: cdev, chip: {chip}"),
    };
    let mut device = format!(
        "apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: {DEVICE}
  namespace: default
spec:
  deviceModelRef:
    name: hil-light
  nodeName: {NODE}
  protocol:
    protocolName: gpio
    configData: {{{protocol}}}
  properties:
"
    );
    for j in &JUMPERS {
        device.push_str(&format!(
            "    - name: {}
      desired: {{value: \"OFF\"}}
      visitors: {{protocolName: gpio, configData: {{pin: {}}}}}
",
            j.lamp, j.output
        ));
    }
    for j in &JUMPERS {
        device.push_str(&format!(
            "    - name: {}
      collectCycle: {INPUT_COLLECT_CYCLE_MS}
      reportCycle: {INPUT_REPORT_CYCLE_MS}
      visitors: {{protocolName: gpio, configData: {{pin: {}, direction: in, bias: pullDown}}}}
",
            j.sense, j.input
        ));
    }
    format!("{model}---\n{device}")
}

#[cfg(test)]
mod tests {
    use edgetwin_model::devices::Manifest;
    use edgetwin_model::devices::load;

    use super::*;

    #[test]
    fn the_wiring_uses_distinct_gpio_pins_on_matching_header_pins() {
        let mut bcm: Vec<u32> = JUMPERS.iter().flat_map(|j| [j.output, j.input]).collect();
        bcm.sort_unstable();
        bcm.dedup();
        assert_eq!(bcm.len(), 6, "six different lines");
        // The 40-pin header's BCM numbering for the pins used.
        let header = [(17, 11), (27, 13), (22, 15), (5, 29), (6, 31), (13, 33)];
        for j in &JUMPERS {
            assert!(header.contains(&(j.output, j.output_header)), "{j:?}");
            assert!(header.contains(&(j.input, j.input_header)), "{j:?}");
        }
        assert_eq!(sim_wires(), ["17:5", "27:6", "22:13"]);
    }

    #[test]
    fn the_manifests_load_as_a_model_and_a_device_for_each_backend() {
        for pins in [
            Pins::Simulated,
            Pins::Rpi,
            Pins::Cdev {
                chip: "gpiochip0".into(),
            },
        ] {
            let text = manifests(&pins);
            let documents = load::from_str(&text, "hil-light.yaml")
                .unwrap_or_else(|e| panic!("{pins:?}: {e}\n{text}"));
            let [model, device] = documents.as_slice() else {
                panic!("a model and a device: {}", documents.len());
            };
            let Manifest::DeviceModel(model) = &model.manifest else {
                panic!("model first");
            };
            let Manifest::Device(device) = &device.manifest else {
                panic!("device second");
            };
            assert_eq!(model.spec.properties.len(), 6);
            assert_eq!(device.spec.properties.len(), 6);
            assert_eq!(device.spec.node_name.as_deref(), Some(NODE));
        }
    }
}
