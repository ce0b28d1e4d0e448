//! Pipelines end to end through the GPIO mapper's runtime, on the simulated chip: inputs whose
//! edges go through pipelines (labels from a map, a count window) into the twin and two sinks
//! (HTTP, MQTT); a desired label goes through the reverse map to the output pin; and
//! `edgetwin pipeline test`'s preview of the raw edges predicts the values the running mapper
//! sent. (Each input line pushes its own edges, stamped when each arrives: the values are
//! compared, not the milliseconds; the sim and Modbus mappers' tests compare both.)

use std::time::Duration;

use edgetwin_mapper_gpio::GpioDriver;
use edgetwin_mapper_gpio::chip::sim::Level;
use edgetwin_mapper_gpio::config::BackendKind;
use edgetwin_sdk::testkit::pipeline_check::{
    MqttTap, SampleTap, is_subsequence, pipeline_spec, predict, twin_values,
};
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use edgetwin_sdk::{Mapper, PropertyType};

const NODE: &str = "edge-node1";
const WAIT: Duration = Duration::from_secs(15);

/// The button's state as words.
const STATE: &str = "- map: {\"OFF\": \"released\", \"ON\": \"pressed\"}\n";
/// Presses counted per press-and-release (two edges).
const PRESSES: &str = "- window: {size: 2, aggregate: sum}\n";
/// The relay switched with words.
const RELAY: &str = "- map: {\"OFF\": \"open\", \"ON\": \"closed\"}\n";

fn yaml(tap: &SampleTap) -> String {
    let input = |name: &str, line: u32, steps: Option<&str>| {
        let mut text = format!(
            "    - name: {name}\n      visitors:\n        protocolName: gpio\n        configData: {{line: {line}, bias: pullDown}}\n      pushMethod:\n{}",
            tap.push_method_yaml(8)
        );
        if let Some(steps) = steps {
            text.push_str(&format!(
                "        mqtt: {{topic: panel/{name}, qos: 1}}\n      pipeline:\n"
            ));
            text.extend(steps.lines().map(|l| format!("        {l}\n")));
        }
        text
    };
    let relay: String = RELAY.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {{name: panel, namespace: default}}\nspec:\n  protocol: gpio\n  properties:\n\
         \x20   - {{name: raw, type: INT, accessMode: ReadOnly}}\n\
         \x20   - {{name: state, type: STRING, accessMode: ReadOnly}}\n\
         \x20   - {{name: presses, type: INT, accessMode: ReadOnly}}\n\
         \x20   - {{name: relay, type: STRING, accessMode: ReadWrite}}\n\
         ---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: panel-01, namespace: default}}\nspec:\n  deviceModelRef: {{name: panel}}\n  nodeName: {NODE}\n  protocol:\n    protocolName: gpio\n    configData: {{backend: sim, chip: gpiochip0}}\n  properties:\n{}{}{}\
         \x20   - name: relay\n      visitors:\n        protocolName: gpio\n        configData: {{line: 5, initial: \"off\"}}\n      pipeline:\n{}",
        input("raw", 6, None),
        input("state", 7, Some(STATE)),
        input("presses", 8, Some(PRESSES)),
        relay,
    )
}

/// The values a pipeline property reported, checked against the preview of `raw`'s edges
/// (converted to the property's raw form by `raw_form`).
fn check(
    tap: &SampleTap,
    mqtt: &MqttTap,
    twin: &edgetwin_sdk::testkit::EdgeDevice,
    name: &str,
    ty: PropertyType,
    steps: &str,
    raw_form: impl Fn(&str) -> String,
) -> Vec<String> {
    let raw: Vec<(i64, String)> = tap
        .series("raw")
        .into_iter()
        .map(|(at, v)| (at, raw_form(&v)))
        .collect();
    let (predicted, table) = predict(&pipeline_spec(steps), ty, &raw);
    let predicted: Vec<String> = predicted.into_iter().map(|(_, v)| v).collect();
    let actual: Vec<String> = tap.series(name).into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        actual, predicted,
        "{name}: the preview of the raw edges:\n{table}"
    );
    let published: Vec<String> = mqtt
        .series(&format!("panel/{name}"))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(published, actual, "MQTT sink of {name}");
    let reported = twin_values(&twin.reports, name);
    assert!(
        is_subsequence(&reported, &actual),
        "{name}: {reported:?} vs {actual:?}"
    );
    actual
}

#[tokio::test]
async fn pipelines_feed_twin_and_sinks_as_the_preview_predicts() {
    edgetwin_sdk::cli::init_logging();
    let broker = TestBroker::start(BrokerKind::Embedded).expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let tap = SampleTap::start().await;
    let mqtt = MqttTap::start(broker.port(), "panel/#").await;
    edge.publish_devices(&yaml(&tap)).expect("test YAML");
    let driver = GpioDriver::new(BackendKind::Sim);
    let mapper = Mapper::builder()
        .driver(driver.clone())
        .node(NODE)
        .broker(broker.addr().to_string())
        .options(|o| {
            o.default_collect_cycle = Duration::from_secs(60);
            o.default_report_cycle = Duration::from_millis(20);
        })
        .build()
        .expect("valid settings")
        .spawn();
    edge.wait_state("default/panel-01", "online", WAIT)
        .await
        .expect("online");
    let chip = driver.sim().chip("gpiochip0");

    // Three presses of a button wired to three inputs.
    for level in [
        Level::High,
        Level::Low,
        Level::High,
        Level::Low,
        Level::High,
        Level::Low,
    ] {
        for line in [6, 7, 8] {
            chip.drive(line, level).expect("drive");
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    // "closed" goes through the reverse map: the relay's pin goes high.
    edge.set_desired("default/panel-01", "relay", "closed");
    edge.wait_reported("default/panel-01", "relay", "closed", WAIT)
        .await
        .expect("switched and read back");
    assert_eq!(chip.level(5), Ok(Level::High));
    // A label the map does not know is refused before the pin.
    edge.set_desired("default/panel-01", "relay", "ajar");
    edge.wait_for("default/panel-01", WAIT, "a write error", |d| {
        d.write_errors.contains_key("relay")
    })
    .await
    .expect("refused");
    assert_eq!(chip.level(5), Ok(Level::High));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let twin = edge.device("default/panel-01");
    mapper.shutdown().await.expect("clean shutdown");

    let on_off = |v: &str| {
        if v == "1" {
            "ON".to_owned()
        } else {
            "OFF".to_owned()
        }
    };
    let state = check(
        &tap,
        &mqtt,
        &twin,
        "state",
        PropertyType::String,
        STATE,
        on_off,
    );
    assert_eq!(state.first().map(String::as_str), Some("released"));
    assert_eq!(state.iter().filter(|s| *s == "pressed").count(), 3);
    let presses = check(
        &tap,
        &mqtt,
        &twin,
        "presses",
        PropertyType::Int,
        PRESSES,
        |v| v.to_owned(),
    );
    // The initial level (pushed at subscribe and read once after the connect), then six edges:
    // windows of 2 summing to 1 for each press and release.
    assert_eq!(
        presses.iter().filter(|v| *v == "1").count(),
        3,
        "{presses:?}"
    );
}
