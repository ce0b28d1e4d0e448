//! The mapper against a real adapter and a real peripheral (hardware in the loop): skipped
//! unless `HIL=1`. It talks to the machine's own BlueZ (bluetoothd on the system bus), so run it
//! on the device with the radio, e.g. a Raspberry Pi with its built-in Bluetooth:
//!
//! ```sh
//! HIL=1 BLE_HIL_ADDRESS=A4:C1:38:12:34:56 BLE_HIL_READ=2a19 BLE_HIL_NOTIFY=2a6e \
//!     cargo test -p edgetwin-mapper-ble --test hil -- --nocapture
//! ```
//!
//! - `BLE_HIL_ADDRESS` (or `BLE_HIL_NAME`, the advertised name): the peripheral;
//! - `BLE_HIL_READ`: a readable characteristic (default `2a19`, Battery Level), read as bytes;
//! - `BLE_HIL_NOTIFY` (optional): a characteristic that notifies; the test waits for two
//!   notified values (polling is off for it, so they can only come by notification);
//! - `BLE_HIL_WRITE` (optional): `UUID=HEX`, bytes written with response and read back;
//! - `BLE_HIL_ADAPTER` (optional): the adapter (default hci0, else BlueZ's first).
//!
//! The steps are those of the mock tests (`tests/mapper.rs`); the README lists what only this
//! test can confirm (radio, MTU, pairing, connection limits, timing).

use std::time::{Duration, Instant};

use edgetwin_mapper_ble::{BleDriver, RadioOptions};
use edgetwin_sdk::Mapper;
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};

const NODE: &str = "hil";
const ID: &str = "default/hil-peripheral";
const WAIT: Duration = Duration::from_secs(60);

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::test]
async fn a_real_peripheral_is_read_written_and_notifies_hil() {
    if var("HIL").as_deref() != Some("1") {
        eprintln!(
            "skipping: set HIL=1 (and BLE_HIL_ADDRESS or BLE_HIL_NAME) to run against real hardware"
        );
        return;
    }
    let target = match (var("BLE_HIL_ADDRESS"), var("BLE_HIL_NAME")) {
        (Some(address), _) => format!("macAddress: \"{address}\""),
        (None, Some(name)) => format!("name: \"{name}\""),
        (None, None) => panic!("HIL=1 needs BLE_HIL_ADDRESS or BLE_HIL_NAME"),
    };
    let read = var("BLE_HIL_READ").unwrap_or_else(|| "2a19".into());
    let notify = var("BLE_HIL_NOTIFY");
    let write = var("BLE_HIL_WRITE").map(|w| {
        let (uuid, hex) = w.split_once('=').expect("BLE_HIL_WRITE is UUID=HEX");
        (uuid.to_owned(), hex.to_ascii_lowercase())
    });
    let mut properties = String::from("    - {name: read, type: BYTES, accessMode: ReadOnly}\n");
    let mut visitors = format!(
        "    - name: read\n      visitors: {{protocolName: bluetooth, configData: {{characteristicUUID: \"{read}\", notify: false}}}}\n"
    );
    if let Some(uuid) = &notify {
        properties.push_str("    - {name: notified, type: BYTES, accessMode: ReadOnly}\n");
        visitors.push_str(&format!(
            "    - name: notified\n      collectCycle: 3600000\n      reportCycle: 10\n      visitors: {{protocolName: bluetooth, configData: {{characteristicUUID: \"{uuid}\", notify: true}}}}\n"
        ));
    }
    if let Some((uuid, _)) = &write {
        properties.push_str("    - {name: written, type: BYTES, accessMode: ReadWrite}\n");
        visitors.push_str(&format!(
            "    - name: written\n      visitors: {{protocolName: bluetooth, configData: {{characteristicUUID: \"{uuid}\", dataType: bytes}}}}\n"
        ));
    }
    let yaml = format!(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {{name: hil-model, namespace: default}}\nspec:\n  protocol: bluetooth\n  properties:\n{properties}---\n\
         apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {{name: hil-peripheral, namespace: default}}\nspec:\n  deviceModelRef: {{name: hil-model}}\n  nodeName: {NODE}\n  protocol:\n    protocolName: bluetooth\n    configData: {{{target}, connectTimeout: 20000}}\n  properties:\n{visitors}"
    );
    eprintln!("HIL device:\n{yaml}");
    let broker = TestBroker::start_restartable(BrokerKind::Embedded)
        .await
        .expect("broker");
    let edge = TestEdge::start(broker.addr(), NODE).await;
    edge.publish_devices(&yaml).expect("valid YAML");
    let started = Instant::now();
    let mapper = Mapper::builder()
        .driver(BleDriver::new(RadioOptions {
            default_adapter: var("BLE_HIL_ADAPTER"),
            ..RadioOptions::default()
        }))
        .node(NODE)
        .broker(broker.addr().to_string())
        .options(|o| o.connect_timeout = Duration::from_secs(30))
        .build()
        .expect("valid settings")
        .spawn();
    edge.wait_state(ID, "online", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("online after {:?}", started.elapsed());
    let device = edge
        .wait_for(ID, WAIT, "a read value", |d| {
            d.reported.contains_key("read")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("read {read}: {:?}", device.reported["read"]);
    if notify.is_some() {
        let device = edge
            .wait_for(ID, WAIT, "two notified values", |d| {
                d.reports
                    .iter()
                    .filter(|r| r.values.contains_key("notified"))
                    .count()
                    >= 2
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let times: Vec<_> = device
            .reports
            .iter()
            .filter(|r| r.values.contains_key("notified"))
            .map(|r| r.at)
            .collect();
        eprintln!("notified values arrived at {times:?}");
    }
    if let Some((uuid, hex)) = &write {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("BLE_HIL_WRITE hex"))
            .collect();
        let wire = String::from_utf8(bytes.clone()).expect("BLE_HIL_WRITE bytes as UTF-8 text");
        let sent = Instant::now();
        edge.set_desired(ID, "written", &wire);
        edge.wait_reported(ID, "written", &wire, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{uuid}: {e}"));
        eprintln!(
            "wrote {hex} to {uuid} and read it back in {:?}",
            sent.elapsed()
        );
    }
    mapper.shutdown().await.expect("clean shutdown");
}
