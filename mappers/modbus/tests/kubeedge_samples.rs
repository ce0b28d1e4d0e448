//! KubeEdge's own Modbus Devices are valid Modbus configurations for this driver: the v1beta1
//! samples as they are, the v1alpha2 samples after `edgetwin convert` (the real converter), and
//! the v1alpha2 deviceProfile.json; and the v1beta1 temperature sample reads and writes a device
//! with nothing but its address changed. The fixtures come from `$EDGETWIN_KUBEEDGE_FIXTURES`;
//! without it the tests print that they skip.

mod support;

use std::path::PathBuf;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_mapper_modbus::codec::DataType;
use edgetwin_mapper_modbus::config::LinkSettings;
use edgetwin_mapper_modbus::sim::{SimConfig, Simulator, serve_tcp};
use edgetwin_mapper_modbus::table::Table;
use edgetwin_sdk::Session;
use edgetwin_sdk::{PropertyType, Value};
use serde_json::Value as Json;

fn fixtures() -> Option<PathBuf> {
    edgetwin_sdk::testkit::kit::fixtures::kubeedge_dir("samples", "modbus kubeedge_samples")
}

const TEMPERATURE: [&str; 2] = [
    "v1beta1__modbus__temperature-instance.yaml",
    "v1beta1__modbus__temperature-model.yaml",
];

#[test]
fn the_v1beta1_samples_are_valid_as_they_are() {
    let Some(dir) = fixtures() else {
        return;
    };
    let (device, model) = support::load_pair(&dir, TEMPERATURE);
    let device = support::driver_config(&device, &model, None);
    let settings = device.protocol.settings().expect("valid protocol");
    assert_eq!(
        settings.link,
        LinkSettings::Tcp {
            host: "10.244.1.13".into(),
            port: 5502
        }
    );
    let fields: Vec<_> = device
        .points
        .iter()
        .map(|p| {
            p.visitor
                .field(p.ty, &settings.limits)
                .expect("valid visitor")
        })
        .collect();
    assert_eq!(
        (
            fields[0].table,
            fields[0].data_type,
            fields[0].transform.scale
        ),
        (Table::HoldingRegisters, DataType::Uint16, 0.1)
    );
    assert_eq!((fields[1].table, fields[1].count), (Table::Coils, 1));
    // `max` and `min` are KubeEdge extras this driver knowingly ignores.
    assert!(device.points[0].visitor.unknown_keys().is_empty());
}

#[test]
fn the_converted_v1alpha2_samples_are_valid() {
    let Some(dir) = fixtures() else {
        return;
    };
    let samples = [
        (
            [
                "v1alpha2__modbus__modbusrtu-device-instance.yaml",
                "v1alpha2__modbus__modbus-device-model.yaml",
            ],
            true,
        ),
        (
            [
                "v1alpha2__modbus__modbustcp-device-instance.yaml",
                "v1alpha2__modbus__modbus-device-model.yaml",
            ],
            false,
        ),
        (
            [
                "v1alpha2__modbus-dmi__modbus-device.yaml",
                "v1alpha2__modbus-dmi__modbus-model.yaml",
            ],
            true,
        ),
    ];
    for (files, rtu) in samples {
        let (device, model) = support::load_pair(&dir, files);
        let device = support::driver_config(&device, &model, None);
        assert!(device.protocol.unknown_keys().is_empty(), "{files:?}");
        assert_eq!(device.points.len(), 2, "{files:?}");
        let settings = device
            .protocol
            .settings()
            .unwrap_or_else(|e| panic!("{files:?}: {e}"));
        assert_eq!(
            matches!(settings.link, LinkSettings::Rtu(_)),
            rtu,
            "{files:?}"
        );
        for point in &device.points {
            point
                .visitor
                .field(point.ty, &settings.limits)
                .unwrap_or_else(|e| panic!("{files:?} {}: {e}", point.property));
        }
    }
}

#[test]
fn the_v1alpha2_device_profile_is_valid() {
    let Some(dir) = fixtures() else {
        return;
    };
    let path =
        dir.join("../deviceprofile/v1alpha2-deviceProfile__modbus__mappers-go-configmap_test.json");
    let profile: Json =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("profile")).expect("JSON");
    let protocol = &profile["protocols"][0];
    let mut flat = protocol["protocolConfig"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (key, value) in protocol["protocolCommonConfig"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        match value {
            Json::Object(inner) => flat.extend(inner),
            value => {
                flat.insert(key, value);
            }
        }
    }
    let types: Vec<(String, PropertyType)> = profile["deviceModels"][0]["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .map(|p| {
            let ty = match p["dataType"].as_str() {
                Some("int") => PropertyType::Int,
                _ => PropertyType::String,
            };
            (p["name"].as_str().expect("name").to_owned(), ty)
        })
        .collect();
    let visitors: Vec<_> = profile["deviceInstances"][0]["propertyVisitors"]
        .as_array()
        .expect("visitors")
        .iter()
        .map(|v| {
            let name = v["propertyName"].as_str().expect("name").to_owned();
            let ty = types.iter().find(|(n, _)| *n == name).expect("typed").1;
            (name, ty, v["visitorConfig"].clone())
        })
        .collect();
    let device = support::device("sensor-tag-instance-01", Json::Object(flat), &visitors);
    let settings = device.protocol.settings().expect("valid");
    let LinkSettings::Rtu(serial) = &settings.link else {
        panic!("an RTU device")
    };
    assert_eq!((serial.path.as_str(), serial.baud_rate), ("1", 115_200));
    for point in &device.points {
        // "temperature-enable" is a STRING property over a coil: it reads "true"/"false".
        point
            .visitor
            .field(point.ty, &settings.limits)
            .unwrap_or_else(|e| panic!("{}: {e}", point.property));
    }
}

#[tokio::test]
async fn the_v1beta1_temperature_sample_runs_against_a_device() {
    let Some(dir) = fixtures() else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sim = Simulator::new(&SimConfig::uniform([1], 100)).expect("sim");
    let server = tokio::spawn(serve_tcp(listener, sim.clone()));
    sim.set(1, Table::HoldingRegisters, 0, &[215]).expect("set");
    let (device, model) = support::load_pair(&dir, TEMPERATURE);
    // Only the address changes: the sample's ip points at a pod of its own demo.
    let config = support::driver_config(&device, &model, Some(("127.0.0.1", port)));
    let mut session = support::connect(&ModbusDriver::new(), &config).await;
    assert_eq!(
        support::read_all(&mut session, &config).await,
        vec![Ok(Value::Float(21.5)), Ok(Value::Int(0))]
    );
    // The sample's desired value for temperature-switch is "1".
    let desired = device.spec.properties[1]
        .desired
        .as_ref()
        .map(|d| d.value.clone())
        .expect("a desired value");
    let value = PropertyType::Int.parse(&desired).expect("an INT");
    session
        .write(&config.points[1], &value)
        .await
        .expect("switch on");
    assert_eq!(sim.get(1, Table::Coils, 0, 1), Ok(vec![1]));
    server.abort();
}
