use serde_json::json;

use super::*;
use crate::model::fixtures::{files_starting_with, kubeedge_dir};
use crate::model::{AccessMode, load};

const MODBUS_DEVICE: &str = "\
apiVersion: devices.kubeedge.io/v1alpha2
kind: Device
metadata:
  name: boiler
  namespace: plant
  resourceVersion: \"4711\"
  uid: 6b1f
  labels:
    model: boiler-model
spec:
  deviceModelRef:
    name: boiler-model
  protocol:
    modbus:
      slaveID: 3
    common:
      tcp:
        ip: 10.0.0.7
        port: 502
      collectRetryTimes: 2
      customizedValues:
        serialType: RS485
  nodeSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - key: ''
        operator: In
        values:
        - edge-a
        - edge-b
  propertyVisitors:
    - propertyName: temperature
      collectCycle: 2000000000
      reportCycle: 500
      modbus:
        register: HoldingRegister
        offset: 4
        limit: 1
        scale: 0.1
        isSwap: true
        isRegisterSwap: false
    - propertyName: valve
      customizedValues:
        note: main
      modbus:
        register: CoilRegister
        offset: 0
        limit: 1
  data:
    dataTopic: boiler/data
status:
  twins:
    - propertyName: valve
      desired:
        metadata:
          type: string
        value: 'OPEN'
      reported:
        metadata:
          timestamp: '1550049403598'
        value: 'CLOSED'
    - propertyName: alarm
      desired:
        value: 'OFF'
";

const MODEL: &str = "\
apiVersion: devices.kubeedge.io/v1alpha2
kind: DeviceModel
metadata:
  name: boiler-model
spec:
  properties:
    - name: temperature
      description: water temperature
      type:
        float:
          accessMode: ReadOnly
          minimum: 0
          maximum: 99.5
          unit: Celsius
    - name: valve
      type:
        string:
          accessMode: ReadWrite
          defaultValue: CLOSED
    - name: pressure
      type:
        int:
          maximum: \"16\"
    - name: raw
      type:
        bytes:
";

fn convert_one(text: &str) -> (Manifest, Vec<String>) {
    let conversion = from_str(text, "in.yaml").expect("converts");
    assert_eq!(conversion.manifests.len(), 1);
    let warnings = conversion.warnings.iter().map(|w| w.to_string()).collect();
    let manifest = conversion
        .manifests
        .into_iter()
        .next()
        .expect("one manifest");
    (manifest, warnings)
}

fn unconvertible(text: &str) -> String {
    let err = from_str(text, "in.yaml").expect_err("does not convert");
    err.to_string()
}

/// The converted YAML loads as v1beta1 and gives back the same objects.
fn assert_reparses(conversion: &Conversion) {
    let yaml = conversion.to_yaml().expect("serializes");
    let loaded = load::from_str(&yaml, "converted.yaml")
        .unwrap_or_else(|e| panic!("converted YAML does not load: {e}\n{yaml}"));
    let loaded: Vec<_> = loaded.into_iter().map(|d| d.manifest).collect();
    assert_eq!(loaded, conversion.manifests, "{yaml}");
}

#[test]
fn device_protocol_is_flattened_into_config_data() {
    let (Manifest::Device(device), _) = convert_one(MODBUS_DEVICE) else {
        panic!("a Device");
    };
    let protocol = device.spec.protocol.as_ref().expect("protocol");
    assert_eq!(protocol.protocol_name.as_deref(), Some("modbus"));
    assert_eq!(
        serde_json::to_value(&protocol.config_data).expect("json"),
        json!({
            "slaveID": 3,
            "ip": "10.0.0.7",
            "port": 502,
            "collectRetryTimes": 2,
            "serialType": "RS485",
        })
    );
}

#[test]
fn device_visitors_twins_node_and_metadata_are_converted() {
    let (Manifest::Device(device), warnings) = convert_one(MODBUS_DEVICE) else {
        panic!("a Device");
    };
    assert_eq!(device.name(), "boiler");
    assert_eq!(device.namespace(), "plant");
    assert_eq!(device.metadata.resource_version, None);
    assert_eq!(device.metadata.uid, None);
    assert!(device.metadata.labels.is_some());
    assert_eq!(device.model_name(), Some("boiler-model"));
    assert_eq!(device.node_name(), Some("edge-a"));

    let names: Vec<&str> = device
        .spec
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["temperature", "valve", "alarm"]);

    let temperature = device.property("temperature").expect("temperature");
    assert_eq!(temperature.collect_cycle, Some(2000));
    assert_eq!(temperature.report_cycle, Some(500));
    let visitor = temperature.visitors.as_ref().expect("visitor");
    assert_eq!(visitor.protocol_name.as_deref(), Some("modbus"));
    assert_eq!(
        serde_json::to_value(&visitor.config_data).expect("json"),
        json!({
            "register": "HoldingRegister",
            "offset": 4,
            "limit": 1,
            "scale": 0.1,
            "isSwap": true,
            "isRegisterSwap": false,
        })
    );
    assert_eq!(temperature.desired, None);

    let valve = device.property("valve").expect("valve");
    let desired = valve.desired.as_ref().expect("desired moved to the spec");
    assert_eq!(desired.value, "OPEN");
    assert_eq!(
        desired.metadata.get("type").map(String::as_str),
        Some("string")
    );
    let valve_config = valve.visitors.as_ref().and_then(|v| v.config_data.as_ref());
    assert_eq!(valve_config.map(|c| c["note"].clone()), Some(json!("main")));

    let alarm = device.property("alarm").expect("twin-only property");
    assert_eq!(
        alarm.desired.as_ref().map(|d| d.value.as_str()),
        Some("OFF")
    );
    assert_eq!(alarm.visitors, None);

    let status = device.status.as_ref().expect("reported values kept");
    assert_eq!(status.twins.len(), 1);
    let reported = status.twin("valve").and_then(|t| t.reported.as_ref());
    assert_eq!(reported.map(|r| r.value.as_str()), Some("CLOSED"));

    assert_eq!(
        warnings,
        [
            "in.yaml:1: spec.propertyVisitors[0].collectCycle 2000000000 is in nanoseconds; \
             written as 2000 (milliseconds)",
            "in.yaml:1: spec.data has no v1beta1 equivalent and was dropped (dataProperties: \
             [], dataTopic: boiler/data); use spec.properties[].pushMethod instead",
            "in.yaml:1: spec.nodeSelector has 2 values; nodeName is the first, \"edge-a\"",
        ]
    );
}

#[test]
fn model_types_limits_and_access_modes_are_converted() {
    let (Manifest::DeviceModel(model), warnings) = convert_one(MODEL) else {
        panic!("a DeviceModel");
    };
    let temperature = model.property("temperature").expect("temperature");
    assert_eq!(temperature.property_type, PropertyType::Float);
    assert_eq!(temperature.access_mode, Some(AccessMode::ReadOnly));
    assert_eq!(temperature.minimum.as_deref(), Some("0"));
    assert_eq!(temperature.maximum.as_deref(), Some("99.5"));
    assert_eq!(temperature.unit.as_deref(), Some("Celsius"));
    assert_eq!(
        temperature.description.as_deref(),
        Some("water temperature")
    );
    assert!(temperature.check_value("99.6").is_err());

    let valve = model.property("valve").expect("valve");
    assert_eq!(valve.property_type, PropertyType::String);
    let pressure = model.property("pressure").expect("pressure");
    assert_eq!(pressure.property_type, PropertyType::Int);
    assert_eq!(pressure.maximum.as_deref(), Some("16"));
    assert_eq!(pressure.access_mode, None);
    let raw = model.property("raw").expect("a type block without content");
    assert_eq!(raw.property_type, PropertyType::Bytes);
    assert_eq!(model.spec.protocol, None);
    assert_eq!(
        warnings,
        ["in.yaml:1: v1beta1 has no defaultValue: dropped for valve"]
    );
}

#[test]
fn old_style_model_visitors_become_property_visitors() {
    let text = "\
apiVersion: devices.kubeedge.io/v1alpha2
kind: DeviceModel
metadata: {name: tag}
spec:
  properties:
    - name: temperature
      type: {int: {accessMode: ReadOnly}}
  propertyVisitors:
    - propertyName: temperature
      bluetooth:
        characteristicUUID: f000aa01
        dataWrite:
          \"ON\": [1]
    - propertyName: ghost
      bluetooth: {characteristicUUID: f000}
";
    let (Manifest::DeviceModel(model), warnings) = convert_one(text) else {
        panic!("a DeviceModel");
    };
    assert_eq!(model.spec.protocol.as_deref(), Some("bluetooth"));
    let visitor = model
        .property("temperature")
        .and_then(|p| p.visitors.as_ref())
        .expect("visitor attached");
    assert_eq!(visitor.protocol_name.as_deref(), Some("bluetooth"));
    assert_eq!(
        serde_json::to_value(&visitor.config_data).expect("json"),
        json!({"characteristicUUID": "f000aa01", "dataWrite": {"ON": [1]}})
    );
    assert_eq!(
        warnings,
        [
            "in.yaml:1: spec.propertyVisitors[1] is for \"ghost\", which the model does not \
             define: dropped"
        ]
    );
}

#[test]
fn customized_protocols_keep_their_name_and_config() {
    let text = "\
apiVersion: devices.kubeedge.io/v1alpha2
kind: Device
metadata: {name: cam}
spec:
  protocol:
    customizedProtocol:
      protocolName: onvif
      configData: {url: '10.0.0.9:80'}
  propertyVisitors:
    - propertyName: reboot
      customizedValues: {reportNumber: 1}
";
    let (Manifest::Device(device), warnings) = convert_one(text) else {
        panic!("a Device");
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(device.protocol_name(), Some("onvif"));
    let visitor = device
        .property("reboot")
        .and_then(|p| p.visitors.as_ref())
        .expect("visitor");
    // A visitor without a protocol block inherits the device's protocol.
    assert_eq!(visitor.protocol_name.as_deref(), Some("onvif"));
    assert_eq!(
        visitor
            .config_data
            .as_ref()
            .map(|c| c["reportNumber"].clone()),
        Some(json!(1))
    );
}

#[test]
fn the_output_reloads_as_v1beta1_and_v1beta1_input_passes_through() {
    let text = format!(
        "{MODBUS_DEVICE}---\n{MODEL}---\napiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {{name: new}}\nspec: {{protocol: gpio}}\n"
    );
    let conversion = from_str(&text, "all.yaml").expect("converts");
    assert_eq!(conversion.manifests.len(), 3);
    assert_reparses(&conversion);
    let passthrough: Vec<_> = conversion
        .warnings
        .iter()
        .filter(|w| w.message.contains("already v1beta1"))
        .collect();
    assert_eq!(passthrough.len(), 1);
    assert_eq!(passthrough[0].at.line, 93);
}

#[test]
fn contradictions_are_errors() {
    let two_protocols = MODBUS_DEVICE.replace(
        "    modbus:\n      slaveID: 3\n",
        "    modbus:\n      slaveID: 3\n    opcua:\n      url: opc.tcp://x\n",
    );
    assert_eq!(
        unconvertible(&two_protocols),
        "in.yaml:1: spec.protocol has several protocols (modbus, opcua); v1beta1 has one \
         protocol per device"
    );

    let clash = MODBUS_DEVICE.replace("serialType: RS485", "slaveID: 4");
    assert_eq!(
        unconvertible(&clash),
        "in.yaml:1: \"slaveID\" is set to 3 in spec.protocol.modbus and to 4 in \
         spec.protocol.common.customizedValues; configData can hold one value"
    );

    let duplicate = MODBUS_DEVICE.replace(
        "propertyName: valve\n      customizedValues",
        "propertyName: temperature\n      customizedValues",
    );
    assert!(unconvertible(&duplicate).contains("two entries for property \"temperature\""));

    let two_types = MODEL.replace("        bytes:\n", "        bytes:\n        int: {}\n");
    assert_eq!(
        unconvertible(&two_types),
        "in.yaml:1: spec.properties[3].type must hold exactly one of int, string, double, \
         float, boolean, bytes (it holds 2)"
    );
}

#[test]
fn unknown_fields_and_versions_are_errors_with_lines() {
    let typo = MODBUS_DEVICE.replace("      reportCycle: 500", "      reportCycel: 500");
    let message = unconvertible(&typo);
    assert!(
        message.starts_with("in.yaml:34:7: spec.propertyVisitors[0].reportCycel: unknown field"),
        "{message}"
    );

    let v1alpha1 = "apiVersion: devices.kubeedge.io/v1alpha1\nkind: Device\nmetadata: {name: a}\n";
    assert!(
        unconvertible(v1alpha1).contains("only devices.kubeedge.io/v1alpha2 can"),
        "{}",
        unconvertible(v1alpha1)
    );

    let nameless = "apiVersion: devices.kubeedge.io/v1alpha2\nkind: DeviceModel\nmetadata: {}\n";
    assert_eq!(
        unconvertible(nameless),
        "in.yaml:1: the DeviceModel has no metadata.name"
    );

    let not_ours = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
    assert!(unconvertible(not_ours).contains("is not a devices.kubeedge.io/v1beta1"));
    assert!(from_file(Path::new("/nonexistent/x.yaml")).is_err());
}

#[test]
fn every_kubeedge_v1alpha2_sample_converts_and_reparses() {
    let Some(dir) = kubeedge_dir("samples", "every_kubeedge_v1alpha2_sample_converts") else {
        return;
    };
    let samples = files_starting_with(&dir, "v1alpha2__");
    assert_eq!(samples.len(), 25, "the fixture set changed");
    for path in &samples {
        let conversion =
            from_file(path).unwrap_or_else(|e| panic!("{} does not convert: {e}", path.display()));
        assert_eq!(conversion.manifests.len(), 1, "{}", path.display());
        assert_reparses(&conversion);
    }
}

#[test]
fn kubeedge_samples_convert_to_the_expected_v1beta1_shapes() {
    let Some(dir) = kubeedge_dir("samples", "kubeedge_samples_convert_to_expected_shapes") else {
        return;
    };
    let device = |name: &str| match convert_one(&read(&dir.join(name))).0 {
        Manifest::Device(d) => d,
        Manifest::DeviceModel(_) => panic!("{name} is a Device"),
    };

    let tcp = device("v1alpha2__modbus__modbustcp-device-instance.yaml");
    assert_eq!(tcp.node_name(), Some("test"));
    assert_eq!(tcp.protocol_name(), Some("modbus"));
    let config = tcp
        .spec
        .protocol
        .as_ref()
        .and_then(|p| p.config_data.clone());
    assert_eq!(
        serde_json::to_value(config).expect("json"),
        json!({"slaveID": 1, "ip": "192.168.33.1", "port": 502})
    );
    let enable = tcp.property("temperature-enable").expect("property");
    assert_eq!(enable.desired.as_ref().map(|d| d.value.as_str()), Some("0"));
    let visitor = enable.visitors.as_ref().and_then(|v| v.config_data.clone());
    assert_eq!(
        serde_json::to_value(visitor).expect("json"),
        json!({"register": "CoilRegister", "offset": 3, "limit": 1, "scale": 1.0,
               "isSwap": true, "isRegisterSwap": true})
    );

    let light = device("v1alpha2__traffic-light__instance.yaml");
    assert_eq!(light.node_name(), Some("raspberrypi"));
    let desired: Vec<(&str, &str)> = light
        .spec
        .properties
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.desired.as_ref().map_or("", |d| d.value.as_str()),
            )
        })
        .collect();
    assert_eq!(
        desired,
        [("red", "OFF"), ("yellow", "OFF"), ("green", "OFF")]
    );

    let random = device("v1alpha2__virtual__random-device-instance.yaml");
    assert_eq!(random.protocol_name(), Some("virtualProtocol"));
    let config = random
        .spec
        .protocol
        .as_ref()
        .and_then(|p| p.config_data.clone());
    assert_eq!(
        serde_json::to_value(config).expect("json"),
        json!({"deviceID": 1, "protocolID": 1})
    );

    let Manifest::DeviceModel(model) = convert_one(&read(
        &dir.join("v1alpha2__ble-demo__cc2650-device-model.yaml"),
    ))
    .0
    else {
        panic!("a DeviceModel");
    };
    assert_eq!(model.spec.protocol.as_deref(), Some("bluetooth"));
    let temperature = model.property("temperature").expect("temperature");
    assert_eq!(temperature.property_type, PropertyType::Int);
    assert_eq!(temperature.maximum.as_deref(), Some("100"));
    assert!(temperature.visitors.is_some());
}

/// The BLE mapper's tests load the CC2650 samples as `edgetwin convert` writes them
/// (`mappers/ble/tests/fixtures/cc2650/`); this keeps those files equal to the conversion.
#[test]
fn the_cc2650_samples_convert_to_the_ble_mappers_fixtures() {
    let Some(dir) = kubeedge_dir(
        "samples",
        "the_cc2650_samples_convert_to_the_ble_mappers_fixtures",
    ) else {
        return;
    };
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappers/ble/tests/fixtures/cc2650");
    for name in [
        "ble__cc2650-device-model",
        "ble__cc2650-device-instance",
        "ble-demo__cc2650-device-model",
        "ble-demo__cc2650-device-instance",
    ] {
        let conversion = from_file(&dir.join(format!("v1alpha2__{name}.yaml"))).expect("converts");
        let yaml = conversion.to_yaml().expect("serializes");
        assert_eq!(
            yaml,
            read(&fixtures.join(format!("{name}.yaml"))),
            "{name}: the fixture differs from the conversion; write it again with \
             `edgetwin convert -f SAMPLE`"
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("fixture is readable")
}
