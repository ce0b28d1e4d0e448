//! Shared pieces of the runtime tests: a broker, an in-test edge, a simulated driver and a
//! mapper with short cycles, all real (MQTT over loopback TCP).

#![allow(dead_code)]

use std::time::Duration;

use edgetwin_sdk::runtime::Options;
use edgetwin_sdk::testkit::{BrokerKind, SimDriver, TestBroker, TestEdge};
use edgetwin_sdk::{Driver, Mapper, MapperHandle};

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
        let broker = TestBroker::start_restartable(BrokerKind::Embedded)
            .await
            .expect("test broker");
        let edge = TestEdge::start(broker.addr(), NODE).await;
        Rig {
            broker,
            edge,
            sim: SimDriver::new(),
        }
    }

    /// Starts a mapper over the rig's driver with fast settings, changed by `tweak`.
    pub fn mapper(&self, tweak: impl FnOnce(&mut Options)) -> MapperHandle {
        self.mapper_with(self.sim.clone(), tweak)
    }

    /// Starts a mapper over `driver` with fast settings, changed by `tweak`.
    pub fn mapper_with<D: Driver>(
        &self,
        driver: D,
        tweak: impl FnOnce(&mut Options),
    ) -> MapperHandle {
        Mapper::builder()
            .driver(driver)
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

    /// Publishes the device `default/meter` (see [`meter`]), starts a mapper with `tweak` and
    /// waits until the device is online.
    pub async fn online_meter(&self, tweak: impl FnOnce(&mut Options)) -> MapperHandle {
        self.publish(&format!("{MODEL}{}", meter("meter", "", "")));
        let mapper = self.mapper(tweak);
        self.edge
            .wait_state("default/meter", "online", WAIT)
            .await
            .expect("online");
        mapper
    }

    /// Publishes every Device of `yaml` (with its DeviceModel from the same text) as the edge
    /// agent would.
    pub fn publish(&self, yaml: &str) {
        self.edge.publish_devices(yaml).expect("test YAML parses");
    }
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
