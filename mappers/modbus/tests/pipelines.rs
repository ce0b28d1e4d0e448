//! Pipelines end to end through the Modbus mapper's runtime, against the Modbus simulator over
//! TCP: a Device whose properties read one holding register through pipelines (unit conversion
//! with a deadband, a time window, a rate limit) into the twin and two sinks (HTTP, MQTT); a
//! desired setpoint goes through the reverse pipeline into its register; and
//! `edgetwin pipeline test`'s preview of the raw register values predicts exactly what the
//! running mapper sent.

use std::time::Duration;

use edgetwin_mapper_modbus::ModbusDriver;
use edgetwin_mapper_modbus::sim::{SimConfig, Simulator, serve_tcp};
use edgetwin_mapper_modbus::table::Table;
use edgetwin_sdk::testkit::pipeline_check::{
    MqttTap, SampleTap, assert_predicted, is_subsequence, twin_values,
};
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use edgetwin_sdk::{Mapper, PropertyType};

const NODE: &str = "edge-1";
const WAIT: Duration = Duration::from_secs(15);

/// Register in 0.1 °C offset by 40 °C, reported to 0.1 °C when it moves by more than 0.5 °C.
const TEMPERATURE: &str =
    "- scale: {factor: 0.1, offset: -40}\n- round: {decimals: 1}\n- deadband: {absolute: 0.5}\n";
/// The mean of each 400 ms.
const AVERAGE: &str = "- window: {period: 400ms, aggregate: mean}\n";
/// At most one value every 250 ms.
const LIMITED: &str = "- rateLimit: {minInterval: 250ms}\n";
/// Register in 0.1 units; desired values outside 5..90 are refused.
const SETPOINT: &str =
    "- scale: {factor: 0.1}\n- round: {decimals: 1}\n- clamp: {min: 5, max: 90}\n";

fn yaml(port: u16, tap: &SampleTap) -> String {
    let model_prop = |name: &str, ty: &str, access: &str| {
        format!("    - name: {name}\n      type: {ty}\n      accessMode: {access}\n")
    };
    let prop = |name: &str, offset: u16, steps: Option<&str>| {
        let mut text = format!(
            "    - name: {name}\n      visitors:\n        protocolName: modbus\n        configData: {{register: HoldingRegister, offset: {offset}, dataType: int16}}\n      pushMethod:\n{}",
            tap.push_method_yaml(8)
        );
        if let Some(steps) = steps {
            text.push_str(&format!(
                "        mqtt: {{topic: plant/{name}, qos: 1}}\n      pipeline:\n"
            ));
            text.extend(steps.lines().map(|l| format!("        {l}\n")));
        }
        text
    };
    format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {{name: boiler-model, namespace: default}}\nspec:\n  protocol: modbus\n  properties:\n{}{}{}{}{}\
         ---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: boiler, namespace: default}}\nspec:\n  deviceModelRef: {{name: boiler-model}}\n  nodeName: {NODE}\n  protocol:\n    protocolName: modbus\n    configData: {{communicateMode: TCP, ip: 127.0.0.1, port: \"{port}\", slaveID: 1}}\n  properties:\n{}{}{}{}{}",
        model_prop("raw", "INT", "ReadOnly"),
        model_prop("temperature", "FLOAT", "ReadOnly"),
        model_prop("average", "FLOAT", "ReadOnly"),
        model_prop("limited", "INT", "ReadOnly"),
        model_prop("setpoint", "FLOAT", "ReadWrite"),
        prop("raw", 1, None),
        prop("temperature", 1, Some(TEMPERATURE)),
        prop("average", 1, Some(AVERAGE)),
        prop("limited", 1, Some(LIMITED)),
        prop("setpoint", 0, Some(SETPOINT)),
    )
}

#[tokio::test]
async fn pipelines_feed_twin_and_sinks_as_the_preview_predicts() {
    edgetwin_sdk::cli::init_logging();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sim = Simulator::new(&SimConfig::uniform([1], 16)).expect("simulator");
    let server = tokio::spawn(serve_tcp(listener, sim.clone()));
    sim.set(1, Table::HoldingRegisters, 0, &[200, 600])
        .expect("initial registers");

    let broker = TestBroker::start(BrokerKind::Embedded).expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    let tap = SampleTap::start().await;
    let mqtt = MqttTap::start(broker.port(), "plant/#").await;
    edge.publish_devices(&yaml(port, &tap)).expect("test YAML");
    let mapper = Mapper::builder()
        .driver(ModbusDriver::new())
        .node(NODE)
        .broker(broker.addr().to_string())
        .options(|o| {
            o.default_collect_cycle = Duration::from_millis(50);
            o.default_report_cycle = Duration::from_millis(50);
        })
        .build()
        .expect("valid settings")
        .spawn();
    edge.wait_state("default/boiler", "online", WAIT)
        .await
        .expect("online");

    // The boiler heats up, wobbles, cools down (register in 0.1 °C + 40 °C).
    for register in [
        600, 601, 603, 610, 612, 611, 640, 646, 650, 650, 651, 700, 702, 680, 600,
    ] {
        sim.set(1, Table::HoldingRegisters, 1, &[register])
            .expect("set");
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    // The desired setpoint 42.5 reaches the register as 425; 95 is refused by the clamp.
    edge.set_desired("default/boiler", "setpoint", "42.5");
    edge.wait_reported("default/boiler", "setpoint", "42.5", WAIT)
        .await
        .expect("written and read back");
    assert_eq!(sim.get(1, Table::HoldingRegisters, 0, 1), Ok(vec![425]));
    edge.set_desired("default/boiler", "setpoint", "95");
    let refused = edge
        .wait_for("default/boiler", WAIT, "a write error", |d| {
            d.write_errors.contains_key("setpoint")
        })
        .await
        .expect("refused");
    assert!(refused.write_errors["setpoint"].reason.contains("clamp"));
    assert_eq!(sim.get(1, Table::HoldingRegisters, 0, 1), Ok(vec![425]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let twin = edge.device("default/boiler");
    mapper.shutdown().await.expect("clean shutdown");
    server.abort();

    let raw = tap.series("raw");
    let temperature =
        assert_predicted(&tap, "raw", "temperature", PropertyType::Float, TEMPERATURE);
    let average = assert_predicted(&tap, "raw", "average", PropertyType::Float, AVERAGE);
    let limited = assert_predicted(&tap, "raw", "limited", PropertyType::Int, LIMITED);
    assert!(temperature.len() < raw.len() / 2, "the deadband suppressed");
    assert!(
        temperature.iter().any(|(_, v)| v == "21"),
        "600 → 21 °C: {temperature:?}"
    );
    assert!(
        average.len() < raw.len() / 4,
        "400 ms windows of 50 ms reads"
    );
    assert!(limited.len() < raw.len() / 3, "the rate limit dropped");
    for (name, expected) in [
        ("temperature", &temperature),
        ("average", &average),
        ("limited", &limited),
    ] {
        assert_eq!(
            &mqtt.series(&format!("plant/{name}")),
            expected,
            "MQTT sink of {name}"
        );
        let values: Vec<String> = expected.iter().map(|(_, v)| v.clone()).collect();
        let reported = twin_values(&twin.reports, name);
        assert!(!reported.is_empty(), "{name} reported");
        assert!(
            is_subsequence(&reported, &values),
            "{name}: {reported:?} vs {values:?}"
        );
    }
}
