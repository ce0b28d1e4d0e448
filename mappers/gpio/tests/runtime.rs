//! The GPIO driver inside the real SDK runtime: an in-process MQTT broker, the SDK's test edge
//! sending desired values and recording reports, devices read from a directory of YAML, and
//! the simulated chip as the hardware. What is checked is what a user sees: the pin level and
//! the reported value.

use std::time::Duration;

use edgetwin_mapper_gpio::GpioDriver;
use edgetwin_mapper_gpio::chip::sim::{Level, SimChip};
use edgetwin_mapper_gpio::config::BackendKind;
use edgetwin_sdk::metrics::ErrorLabels;
use edgetwin_sdk::testkit::{BrokerKind, TestBroker, TestEdge};
use edgetwin_sdk::{Mapper, MapperHandle};

const NODE: &str = "edge-node1";
const TRAFFIC_LIGHT: &str = "default/traffic-light-01";
const LAMP: &str = "default/lamp-01";
/// Generous: the outcomes come within milliseconds.
const WAIT: Duration = Duration::from_secs(15);

/// A broker, a test edge and the mapper serving the devices of one YAML file.
struct Setup {
    mapper: MapperHandle,
    edge: TestEdge,
    driver: GpioDriver,
    _broker: TestBroker,
    _devices: tempfile::TempDir,
}

impl Setup {
    /// Inputs are never polled (collect cycle one minute): their changes must come as edges.
    async fn start(yaml: &str, driver: GpioDriver) -> Setup {
        let devices = tempfile::tempdir().expect("temp dir");
        std::fs::write(devices.path().join("devices.yaml"), yaml).expect("write devices");
        let broker = TestBroker::start_restartable(BrokerKind::Embedded)
            .await
            .expect("broker");
        let edge = TestEdge::start(broker.addr(), NODE).await;
        let mapper = Mapper::builder()
            .driver(driver.clone())
            .node(NODE)
            .broker(broker.addr().to_string())
            .devices_dir(devices.path())
            .options(|o| {
                o.default_collect_cycle = Duration::from_secs(60);
                o.default_report_cycle = Duration::from_millis(20);
                o.backoff_initial = Duration::from_millis(20);
            })
            .build()
            .expect("valid mapper settings")
            .spawn();
        Setup {
            mapper,
            edge,
            driver,
            _broker: broker,
            _devices: devices,
        }
    }

    fn chip(&self) -> SimChip {
        self.driver.sim().chip("gpiochip0")
    }

    async fn reported(&self, device: &str, property: &str, value: &str) {
        if let Err(err) = self.edge.wait_reported(device, property, value, WAIT).await {
            panic!("{err}");
        }
    }

    /// Waits until the runtime has counted a write of `device` refused by the device.
    async fn refused_writes(&self, device: &str, at_least: u64) {
        let labels = ErrorLabels {
            device: device.to_owned(),
            kind: "rejected".to_owned(),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let count = self
                .mapper
                .metrics()
                .write_errors
                .get(&labels)
                .map_or(0, |c| c.get());
            if count >= at_least {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no refused write of {device} after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        self.mapper.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_values_reach_the_pins_and_come_back_as_reported() {
    let setup = Setup::start(
        include_str!("data/traffic-light.yaml"),
        GpioDriver::new(BackendKind::Sim),
    )
    .await;
    setup.reported(TRAFFIC_LIGHT, "red", "OFF").await;
    setup.edge.set_desired(TRAFFIC_LIGHT, "red", "ON");
    setup.reported(TRAFFIC_LIGHT, "red", "ON").await;
    assert_eq!(setup.chip().level(17), Ok(Level::High));
    setup.edge.set_desired(TRAFFIC_LIGHT, "yellow", "on");
    setup.reported(TRAFFIC_LIGHT, "yellow", "ON").await;
    assert_eq!(setup.chip().level(27), Ok(Level::High));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interlock_refuses_green_while_red_is_on_and_the_pin_never_moves() {
    let setup = Setup::start(
        include_str!("data/traffic-light.yaml"),
        GpioDriver::new(BackendKind::Sim),
    )
    .await;
    setup.edge.set_desired(TRAFFIC_LIGHT, "red", "ON");
    setup.reported(TRAFFIC_LIGHT, "red", "ON").await;

    setup.edge.set_desired(TRAFFIC_LIGHT, "green", "ON");
    setup.refused_writes(TRAFFIC_LIGHT, 1).await;
    assert_eq!(setup.chip().level(22), Ok(Level::Low));
    assert!(
        setup.chip().transitions().iter().all(|t| t.line != 22),
        "the green pin never moved"
    );
    let device = setup.edge.device(TRAFFIC_LIGHT);
    assert_eq!(
        device.reported.get("green").map(String::as_str),
        Some("OFF")
    );

    // Once red is off, the pending green is applied with the next desired change.
    setup.edge.set_desired(TRAFFIC_LIGHT, "red", "OFF");
    setup.reported(TRAFFIC_LIGHT, "green", "ON").await;
    assert_eq!(setup.chip().level(17), Ok(Level::Low));
    assert_eq!(setup.chip().level(22), Ok(Level::High));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_is_retried_once_the_rest_of_its_batch_makes_it_safe() {
    let setup = Setup::start(
        include_str!("data/traffic-light.yaml"),
        GpioDriver::new(BackendKind::Sim),
    )
    .await;
    setup.edge.set_desired(TRAFFIC_LIGHT, "green", "ON");
    setup.reported(TRAFFIC_LIGHT, "green", "ON").await;
    // Red comes before green in the spec: red ON is refused until green OFF is written.
    setup.edge.set_desired(TRAFFIC_LIGHT, "red", "ON");
    setup.edge.set_desired(TRAFFIC_LIGHT, "green", "OFF");
    setup.reported(TRAFFIC_LIGHT, "red", "ON").await;
    setup.reported(TRAFFIC_LIGHT, "green", "OFF").await;
    assert_eq!(setup.chip().level(17), Ok(Level::High));
    assert_eq!(setup.chip().level(22), Ok(Level::Low));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_wired_to_an_output_is_reported_from_its_edges() {
    let driver = GpioDriver::new(BackendKind::Sim);
    driver
        .sim()
        .chip("gpiochip0")
        .wire(5, 6)
        .expect("lines exist");
    let setup = Setup::start(include_str!("data/lamp.yaml"), driver).await;
    setup.reported(LAMP, "contact", "false").await;
    for value in ["true", "false", "true"] {
        setup.edge.set_desired(LAMP, "power", value);
        // The contact is never polled (one-minute cycle): only its edge can report it.
        setup.reported(LAMP, "contact", value).await;
        setup.reported(LAMP, "power", value).await;
    }
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounced_button_is_reported_when_pressed_and_released() {
    let setup = Setup::start(
        include_str!("data/traffic-light.yaml"),
        GpioDriver::new(BackendKind::Sim),
    )
    .await;
    // Pulled up and active low: released reads OFF.
    setup.reported(TRAFFIC_LIGHT, "button", "false").await;
    let chip = setup.chip();
    // A bouncing press ending low.
    for level in [Level::Low, Level::High, Level::Low] {
        chip.drive(4, level).expect("drive");
    }
    setup.reported(TRAFFIC_LIGHT, "button", "true").await;
    chip.undrive(4).expect("release");
    setup.reported(TRAFFIC_LIGHT, "button", "false").await;
    let reports: Vec<String> = setup
        .edge
        .device(TRAFFIC_LIGHT)
        .reports
        .iter()
        .filter_map(|r| r.values.get("button").cloned())
        .collect();
    assert_eq!(
        reports,
        ["false", "true", "false"],
        "the bounces were not reported"
    );
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_visitor_config_marks_only_that_device_unhealthy_with_a_clear_reason() {
    let broken = include_str!("data/traffic-light.yaml").replace(
        "configData: {pin: 27}",
        "configData: {pin: 27, direction: in}",
    );
    let yaml = format!("{broken}\n---\n{}", include_str!("data/lamp.yaml"));
    let setup = Setup::start(&yaml, GpioDriver::new(BackendKind::Sim)).await;
    let state = setup
        .edge
        .wait_state(TRAFFIC_LIGHT, "unhealthy", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        state.reason.as_deref(),
        Some(
            "configuration error: device default/traffic-light-01, property yellow: visitors.configData.direction: an input cannot be written: make the property ReadOnly (accessMode) or use direction out"
        )
    );
    setup.edge.set_desired(LAMP, "power", "true");
    setup.reported(LAMP, "power", "true").await;
    setup.stop().await;
}
