//! The traffic-light example: a DeviceModel with three lamps (`model.yaml`) and a Device on BCM
//! GPIO 17, 27 and 22 (`device.yaml`), the README walk-through next to them, and the tests of
//! the user's path through `edgetwin up` (in `tests/`).
//!
//! The YAML is embedded here so that tests (and anyone embedding the demo) load exactly the
//! files the README tells users to apply.

use edgetwin_model::devices::load::{self, Document, LoadError};

/// `model.yaml`: the `traffic-light` DeviceModel (red, yellow, green: STRING `ON`/`OFF`,
/// ReadWrite) with the red-and-green interlock.
pub const MODEL_YAML: &str = include_str!("../model.yaml");

/// `device.yaml`: the `traffic-light` Device on node `edge-node1`, BCM pins 17, 27 and 22.
pub const DEVICE_YAML: &str = include_str!("../device.yaml");

/// `cargo build` arguments (from the workspace root) for the two binaries `edgetwin up` runs:
/// `edgetwin` and the GPIO mapper. The tests and the benchmark build them with these when needed.
pub const BUILD_BINARIES: [&str; 10] = [
    "build",
    "--quiet",
    "-p",
    "edgetwin-core",
    "--bin",
    "edgetwin",
    "-p",
    "edgetwin-mapper-gpio",
    "--bin",
    "edgetwin-mapper-gpio",
];

/// `edgetwin up` on free ports in `data_dir` with `mapper`, logging warnings only, its stdout
/// piped (the banner names the dashboard, the simulated pins and the broker): how the tests and
/// the benchmark start the demo.
pub fn up_command(
    edgetwin: &std::path::Path,
    mapper: &std::path::Path,
    data_dir: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(edgetwin);
    command
        .args(["up", "--listen", "127.0.0.1:0", "--mapper"])
        .arg(mapper)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    command
}

/// Stops an `edgetwin up` started with [`up_command`]: SIGTERM first, so that it stops its
/// mapper (which runs in its own process group and would outlive a SIGKILL), then SIGKILL when it
/// has not exited within 15 s. Nothing to do when it has exited already.
pub fn stop_up(child: &mut std::process::Child) {
    use std::time::{Duration, Instant};
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The example's objects, model first, loaded and checked by the same loader as
/// `edgetwin ctl apply` (errors name the file, line and field).
pub fn manifests() -> Result<Vec<Document>, LoadError> {
    let mut documents = load::from_str(MODEL_YAML, "examples/traffic-light/model.yaml")?;
    documents.extend(load::from_str(
        DEVICE_YAML,
        "examples/traffic-light/device.yaml",
    )?);
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use edgetwin_model::devices::{AccessMode, Manifest};
    use edgetwin_model::value::PropertyType;

    use super::*;

    #[test]
    fn the_example_loads_as_one_model_and_one_device() {
        let documents = manifests().expect("the example loads");
        let [model, device] = documents.as_slice() else {
            panic!("expected a model and a device, got {}", documents.len());
        };
        let Manifest::DeviceModel(model) = &model.manifest else {
            panic!("model.yaml holds a DeviceModel");
        };
        let Manifest::Device(device) = &device.manifest else {
            panic!("device.yaml holds a Device");
        };
        assert_eq!(model.name(), "traffic-light");
        assert_eq!(device.name(), "traffic-light");
        assert_eq!(
            device
                .spec
                .device_model_ref
                .as_ref()
                .map(|r| r.name.as_str()),
            Some(model.name())
        );
        assert_eq!(device.spec.node_name.as_deref(), Some("edge-node1"));
        for (property, lamp) in model.spec.properties.iter().zip(["red", "yellow", "green"]) {
            assert_eq!(property.name, lamp);
            assert_eq!(property.property_type, PropertyType::String);
            assert_eq!(property.access_mode, Some(AccessMode::ReadWrite));
        }
    }

    #[test]
    fn the_lamps_sit_on_bcm_17_27_22_and_start_off() {
        let documents = manifests().expect("the example loads");
        let Manifest::Device(device) = &documents[1].manifest else {
            panic!("device.yaml holds a Device");
        };
        let pins: Vec<(String, serde_json::Value, String)> = device
            .spec
            .properties
            .iter()
            .map(|p| {
                let config = p
                    .visitors
                    .as_ref()
                    .and_then(|v| v.config_data.as_ref())
                    .expect("every lamp has a visitor");
                let json = serde_json::to_value(config).expect("config is JSON");
                let desired = p.desired.as_ref().expect("desired").value.clone();
                (p.name.clone(), json["pin"].clone(), desired)
            })
            .collect();
        assert_eq!(
            pins,
            [
                ("red".to_owned(), 17.into(), "OFF".to_owned()),
                ("yellow".to_owned(), 27.into(), "OFF".to_owned()),
                ("green".to_owned(), 22.into(), "OFF".to_owned()),
            ]
        );
    }

    #[test]
    fn the_model_declares_the_red_and_green_interlock() {
        let documents = manifests().expect("the example loads");
        let Manifest::DeviceModel(model) = &documents[0].manifest else {
            panic!("model.yaml holds a DeviceModel");
        };
        let config = serde_json::to_value(&model.spec.protocol_config_data).expect("JSON");
        assert_eq!(
            config["interlock"][0]["never"],
            serde_json::json!({"red": "ON", "green": "ON"})
        );
    }
}
