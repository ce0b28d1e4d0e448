//! KubeEdge's v1alpha2 CC2650 SensorTag samples, converted by `edgetwin convert`
//! (`tests/fixtures/cc2650/`, kept equal to the conversion by the test below), load in the mapper and map to the right
//! characteristics of a SensorTag on BlueZ's D-Bus API (python-dbusmock, private bus): the IR
//! temperature through KubeEdge's `dataConverter`, the switch through `dataWrite` both ways, and
//! the IO characteristics two properties share. The `ble` sample writes the converter's and
//! `dataWrite`'s keys one level too high; it maps the same as the `ble-demo` one.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgetwin_mapper_ble::BleDriver;
use edgetwin_sdk::Mapper;
use edgetwin_sdk::model::devices::convert;
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use serde_json::json;
use support::{BluezPeer, on_private_bus, run_on_private_bus};

const WAIT: Duration = Duration::from_secs(15);
const TAG: &str = "BC:6A:29:AE:CC:96";
const ID: &str = "default/sensor-tag-instance-01";
const IR_DATA: &str = "f000aa01-0451-4000-b000-000000000000";
const IR_CONFIG: &str = "f000aa02-0451-4000-b000-000000000000";
const IO_DATA: &str = "f000aa65-0451-4000-b000-000000000000";
const IO_CONFIG: &str = "f000aa66-0451-4000-b000-000000000000";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cc2650")
}

#[test]
fn the_fixtures_are_what_edgetwin_convert_writes() {
    let Some(samples) =
        edgetwin_sdk::testkit::kit::fixtures::kubeedge_dir("samples", "ble cc2650 fixtures")
    else {
        return;
    };
    for name in [
        "ble__cc2650-device-model",
        "ble__cc2650-device-instance",
        "ble-demo__cc2650-device-model",
        "ble-demo__cc2650-device-instance",
    ] {
        let sample = samples.join(format!("v1alpha2__{name}.yaml"));
        let text = std::fs::read_to_string(&sample).expect("sample");
        let conversion = convert::from_str(&text, &sample.display().to_string())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let fixture =
            std::fs::read_to_string(fixtures().join(format!("{name}.yaml"))).expect("fixture");
        assert_eq!(
            conversion.to_yaml().expect("serializes"),
            fixture,
            "{name}: the fixture differs from the conversion; write it again with \
             `edgetwin convert -f SAMPLE`"
        );
    }
}

/// A SensorTag with the characteristics the samples use.
async fn sensor_tag(peer: &mut BluezPeer) {
    let char = |uuid: &str, flags: &[&str], value: &[u8]| json!({"uuid": uuid, "flags": flags, "value": value});
    peer.command(json!({
    "cmd": "device", "adapter": "hci0", "address": TAG, "name": "CC2650 SensorTag",
    "services": [
        {"uuid": "f000aa00-0451-4000-b000-000000000000", "characteristics": [
            // 24.0 °C: 768 / 0.03125, shifted left by 2 = 0x0C00, little-endian.
            char(IR_DATA, &["read", "notify"], &[0x00, 0x0C, 0x00, 0x00]),
            char(IR_CONFIG, &["read", "write"], &[1]),
        ]},
        {"uuid": "f000aa64-0451-4000-b000-000000000000", "characteristics": [
            char(IO_DATA, &["read", "write"], &[0]),
            char(IO_CONFIG, &["read", "write"], &[1]),
        ]},
    ]}))
    .await;
}

/// Runs the mapper on one converted sample (model and instance) for `node`.
async fn serve_sample(variant: &str, node: &str, expected: &[(&str, &str)]) {
    let mut peer = BluezPeer::start().await;
    sensor_tag(&mut peer).await;
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in ["model", "instance"] {
        let name = format!("{variant}__cc2650-device-{kind}.yaml");
        std::fs::copy(fixtures().join(&name), dir.path().join(&name)).expect("copy");
    }
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), node).await;
    let mapper = Mapper::builder()
        .driver(BleDriver::default())
        .node(node)
        .broker(broker.addr().to_string())
        .devices_dir(dir.path())
        .options(|o| o.default_collect_cycle = Duration::from_millis(100))
        .build()
        .expect("valid settings")
        .spawn();
    edge.wait_state(ID, "online", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (property, value) in expected {
        edge.wait_reported(ID, property, value, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
    }
    // temperature-enable "OFF" is dataWrite's [0], written with response.
    edge.set_desired(ID, "temperature-enable", "OFF");
    edge.wait_reported(ID, "temperature-enable", "OFF", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{variant}: {e}"));
    let config = peer.get(TAG, IR_CONFIG).await;
    assert_eq!(
        config["writes"],
        json!([{"value": [0], "type": "request", "offset": 0}])
    );
    // io-data's dataWrite keys (Red, Green, …) are no INT values, so its dataWrite is left out:
    // an INT is written in the characteristic's width (one byte).
    edge.set_desired(ID, "io-data", "3");
    edge.wait_reported(ID, "io-data", "3", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{variant}: {e}"));
    assert_eq!(peer.get(TAG, IO_DATA).await["value"], json!([3]));
    mapper.shutdown().await.expect("clean shutdown");
    peer.kill().await;
}

#[test]
fn the_converted_cc2650_sample_maps_to_the_sensor_tags_characteristics() {
    run_on_private_bus("inner_the_converted_cc2650_sample_maps_to_the_sensor_tags_characteristics");
}

#[tokio::test]
#[ignore = "run on a private bus by the_converted_cc2650_sample_maps_to_the_sensor_tags_characteristics"]
async fn inner_the_converted_cc2650_sample_maps_to_the_sensor_tags_characteristics() {
    if !on_private_bus() {
        return;
    }
    serve_sample(
        "ble",
        "edge-node1",
        &[
            ("temperature", "24"),
            ("temperature-enable", "ON"),
            ("io-config-initialize", "1"),
            ("io-config", "1"),
            ("io-data-initialize", "0"),
            ("io-data", "0"),
        ],
    )
    .await;
}

#[test]
fn the_converted_cc2650_demo_sample_maps_to_the_sensor_tags_characteristics() {
    run_on_private_bus(
        "inner_the_converted_cc2650_demo_sample_maps_to_the_sensor_tags_characteristics",
    );
}

#[tokio::test]
#[ignore = "run on a private bus by the_converted_cc2650_demo_sample_maps_to_the_sensor_tags_characteristics"]
async fn inner_the_converted_cc2650_demo_sample_maps_to_the_sensor_tags_characteristics() {
    if !on_private_bus() {
        return;
    }
    // The demo instance lists only the two properties it twins; the model holds every visitor.
    serve_sample(
        "ble-demo",
        "edge-node",
        &[
            ("temperature", "24"),
            ("temperature-enable", "ON"),
            ("io-config-initialize", "1"),
            ("io-config", "1"),
            ("io-data-initialize", "0"),
            ("io-data", "0"),
        ],
    )
    .await;
}
