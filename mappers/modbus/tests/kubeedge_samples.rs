//! KubeEdge's own Modbus Devices (v1beta1 samples, v1alpha2 samples as `edgetwin convert`
//! flattens them, the v1alpha2 deviceProfile.json) are valid Modbus configurations for this
//! driver, and the v1beta1 temperature sample reads and writes a device with nothing but its
//! address changed. The fixtures come from `$EDGETWIN_KUBEEDGE_FIXTURES`; without it the tests
//! print that they skip.

mod support;

use std::path::PathBuf;

use edgetwin_core::model::{PropertyType, Value};
use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_mapper_modbus::codec::DataType;
use edgetwin_mapper_modbus::config::{LinkSettings, ProtocolConfig, VisitorConfig};
use edgetwin_mapper_modbus::sim::{SimConfig, Simulator, serve_tcp};
use edgetwin_mapper_modbus::table::Table;
use edgetwin_sdk::{DeviceConfig, DeviceId, Point, PointId, Session};
use serde_json::{Map, Value as Json, json};

fn fixtures() -> Option<PathBuf> {
    match std::env::var_os("EDGETWIN_KUBEEDGE_FIXTURES") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!("skipping: EDGETWIN_KUBEEDGE_FIXTURES is not set");
            None
        }
    }
}

fn yaml(dir: &std::path::Path, file: &str) -> Json {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DeviceModel property types: v1beta1 `type: FLOAT`, v1alpha2 `type: {int: {…}}`.
fn model_types(model: &Json) -> Vec<(String, PropertyType)> {
    let parse = |name: &str| match name.to_ascii_lowercase().as_str() {
        "int" => PropertyType::Int,
        "float" => PropertyType::Float,
        "double" => PropertyType::Double,
        "boolean" => PropertyType::Boolean,
        "bytes" => PropertyType::Bytes,
        _ => PropertyType::String,
    };
    model["spec"]["properties"]
        .as_array()
        .expect("model properties")
        .iter()
        .map(|p| {
            let ty = match &p["type"] {
                Json::String(name) => parse(name),
                Json::Object(typed) => parse(typed.keys().next().expect("a type")),
                other => panic!("property type {other}"),
            };
            (p["name"].as_str().expect("name").to_owned(), ty)
        })
        .collect()
}

/// v1alpha2 `spec.protocol` flattened as `edgetwin convert` does: the `modbus` block's fields,
/// and `common` with its `com`, `tcp` and `customizedValues` blocks merged in.
fn flatten_v1alpha2_protocol(protocol: &Json) -> Json {
    let mut flat = Map::new();
    if let Some(modbus) = protocol["modbus"].as_object() {
        flat.extend(modbus.clone());
    }
    for (key, value) in protocol["common"].as_object().cloned().unwrap_or_default() {
        match (key.as_str(), value) {
            ("com" | "tcp" | "customizedValues", Json::Object(inner)) => flat.extend(inner),
            (_, value) => {
                flat.insert(key, value);
            }
        }
    }
    Json::Object(flat)
}

type Config = DeviceConfig<ProtocolConfig, VisitorConfig>;

fn config(name: &str, protocol: Json, visitors: &[(String, PropertyType, Json)]) -> Config {
    DeviceConfig {
        id: DeviceId::new("default", name),
        protocol: serde_json::from_value(protocol).expect("protocol configData parses"),
        points: visitors
            .iter()
            .enumerate()
            .map(|(i, (property, ty, visitor))| Point {
                id: PointId(i),
                property: property.clone(),
                ty: *ty,
                writable: true,
                visitor: serde_json::from_value(visitor.clone())
                    .unwrap_or_else(|e| panic!("{property}: {e}")),
            })
            .collect(),
    }
}

fn v1beta1_temperature(dir: &std::path::Path) -> (Json, Vec<(String, PropertyType, Json)>) {
    let device = yaml(dir, "samples/v1beta1__modbus__temperature-instance.yaml");
    let types = model_types(&yaml(
        dir,
        "samples/v1beta1__modbus__temperature-model.yaml",
    ));
    let visitors = device["spec"]["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_owned();
            let ty = types.iter().find(|(n, _)| *n == name).expect("typed").1;
            (name, ty, p["visitors"]["configData"].clone())
        })
        .collect();
    (device["spec"]["protocol"]["configData"].clone(), visitors)
}

#[test]
fn the_v1beta1_samples_are_valid_as_they_are() {
    let Some(dir) = fixtures() else {
        return;
    };
    let (protocol, visitors) = v1beta1_temperature(&dir);
    let device = config("temperature-instance", protocol, &visitors);
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
            "v1alpha2__modbus__modbusrtu-device-instance.yaml",
            "v1alpha2__modbus__modbus-device-model.yaml",
            true,
        ),
        (
            "v1alpha2__modbus__modbustcp-device-instance.yaml",
            "v1alpha2__modbus__modbus-device-model.yaml",
            false,
        ),
        (
            "v1alpha2__modbus-dmi__modbus-device.yaml",
            "v1alpha2__modbus-dmi__modbus-model.yaml",
            true,
        ),
    ];
    for (instance, model, rtu) in samples {
        let device = yaml(&dir, &format!("samples/{instance}"));
        let types = model_types(&yaml(&dir, &format!("samples/{model}")));
        let visitors: Vec<_> = device["spec"]["propertyVisitors"]
            .as_array()
            .expect("propertyVisitors")
            .iter()
            .map(|v| {
                let name = v["propertyName"].as_str().expect("name").to_owned();
                let ty = types.iter().find(|(n, _)| *n == name).expect("typed").1;
                (name, ty, v["modbus"].clone())
            })
            .collect();
        let protocol = flatten_v1alpha2_protocol(&device["spec"]["protocol"]);
        let device = config(instance, protocol, &visitors);
        assert!(device.protocol.unknown_keys().is_empty(), "{instance}");
        let settings = device
            .protocol
            .settings()
            .unwrap_or_else(|e| panic!("{instance}: {e}"));
        assert_eq!(
            matches!(settings.link, LinkSettings::Rtu(_)),
            rtu,
            "{instance}"
        );
        for point in &device.points {
            point
                .visitor
                .field(point.ty, &settings.limits)
                .unwrap_or_else(|e| panic!("{instance} {}: {e}", point.property));
        }
    }
}

#[test]
fn the_v1alpha2_device_profile_is_valid() {
    let Some(dir) = fixtures() else {
        return;
    };
    let path =
        dir.join("deviceprofile/v1alpha2-deviceProfile__modbus__mappers-go-configmap_test.json");
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
    let device = config("sensor-tag-instance-01", Json::Object(flat), &visitors);
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
    let (mut protocol, visitors) = v1beta1_temperature(&dir);
    // Only the address changes: the sample's ip points at a pod of its own demo.
    protocol["ip"] = json!("127.0.0.1");
    protocol["port"] = json!(port.to_string());
    let device = config("temperature-instance", protocol, &visitors);
    let mut session = support::connect(&ModbusDriver::new(), &device).await;
    assert_eq!(
        support::read_all(&mut session, &device).await,
        vec![Ok(Value::Float(21.5)), Ok(Value::Int(0))]
    );
    // The sample's desired value for temperature-switch is "1".
    session
        .write(&device.points[1], &Value::Int(1))
        .await
        .expect("switch on");
    assert_eq!(sim.get(1, Table::Coils, 0, 1), Ok(vec![1]));
    server.abort();
}
