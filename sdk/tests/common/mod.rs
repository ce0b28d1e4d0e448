//! Shared pieces of the runtime tests: a broker, an in-test edge, a simulated driver and a
//! mapper with short cycles, all real (MQTT over loopback TCP).

#![allow(dead_code)]

use std::time::Duration;

use edgetwin_core::model::load;
use edgetwin_core::wire;
use edgetwin_core::wire::payload::DeviceSpecMessage;
use edgetwin_sdk::runtime::Options;
use edgetwin_sdk::testkit::{SimDriver, TestBroker, TestEdge};
use edgetwin_sdk::{Mapper, MapperHandle};

/// The node of every runtime test.
pub const NODE: &str = "edge-1";
/// A generous wait for any expected outcome.
pub const WAIT: Duration = Duration::from_secs(15);

/// A broker, an edge and a simulated driver (the test keeps a handle on it).
pub struct Rig {
    pub broker: TestBroker,
    pub edge: TestEdge,
    pub sim: SimDriver,
}

impl Rig {
    pub async fn start() -> Rig {
        edgetwin_sdk::cli::init_logging();
        let broker = TestBroker::start().await.expect("test broker");
        let edge = TestEdge::start(&broker.addr(), NODE).await;
        Rig {
            broker,
            edge,
            sim: SimDriver::new(),
        }
    }

    /// Starts a mapper over the rig's driver with fast settings, changed by `tweak`.
    pub fn mapper(&self, tweak: impl FnOnce(&mut Options)) -> MapperHandle {
        Mapper::builder()
            .driver(self.sim.clone())
            .node(NODE)
            .broker(self.broker.addr().to_string())
            .options(|o| {
                o.default_collect_cycle = Duration::from_millis(50);
                o.default_report_cycle = Duration::from_millis(50);
                o.backoff_initial = Duration::from_millis(50);
                o.backoff_max = Duration::from_millis(300);
                o.read_timeout = Duration::from_millis(500);
                o.health_interval = Duration::from_millis(200);
                tweak(o);
            })
            .build()
            .expect("valid mapper settings")
            .spawn()
    }

    /// Publishes every Device of `yaml` (with its DeviceModel from the same text) as the edge
    /// agent would.
    pub fn publish(&self, yaml: &str) {
        for (device, model) in devices(yaml) {
            let payload = wire::encode(&DeviceSpecMessage {
                device: device.clone(),
                model,
            })
            .expect("encodes");
            self.edge
                .publish_spec(device.namespace(), device.name(), payload);
        }
    }
}

/// The Devices of a YAML text, each with its model.
pub fn devices(
    yaml: &str,
) -> Vec<(
    edgetwin_core::model::Device,
    Option<edgetwin_core::model::DeviceModel>,
)> {
    let docs = load::from_str(yaml, "<test>").expect("test YAML parses");
    let mut models = Vec::new();
    let mut devices = Vec::new();
    for doc in docs {
        match doc.manifest {
            load::Manifest::Device(d) => devices.push(d),
            load::Manifest::DeviceModel(m) => models.push(m),
        }
    }
    devices
        .into_iter()
        .map(|d| {
            let model = models
                .iter()
                .find(|m| Some(m.name()) == d.model_name())
                .cloned();
            (d, model)
        })
        .collect()
}

/// A model with an INT `level` (ReadWrite), a BOOLEAN `enabled` (ReadWrite) and an INT `count`
/// (ReadOnly), all on the sim protocol.
pub const MODEL: &str = r#"
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: meter-model
  namespace: default
spec:
  protocol: sim
  properties:
    - name: level
      type: INT
      accessMode: ReadWrite
      visitors:
        protocolName: sim
        configData:
          register: level
    - name: enabled
      type: BOOLEAN
      accessMode: ReadWrite
      visitors:
        protocolName: sim
        configData:
          register: enabled
    - name: count
      type: INT
      accessMode: ReadOnly
      visitors:
        protocolName: sim
        configData:
          register: count
          step: 1
"#;

/// A meter device of [`MODEL`]; `extra` is appended to its `spec` (indented by two spaces).
pub fn meter(name: &str, labels: &str, extra: &str) -> String {
    format!(
        r#"
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: {name}
  namespace: default
  labels: {{{labels}}}
spec:
  deviceModelRef:
    name: meter-model
  nodeName: edge-1
  protocol:
    protocolName: sim
{extra}"#
    )
}
