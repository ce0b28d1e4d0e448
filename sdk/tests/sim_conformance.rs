//! The simulated driver passes the conformance suite, and its write log shows what the suite
//! can only infer: one write per change of the desired value, the last one being final.

use std::sync::{Arc, Mutex};

use edgetwin_sdk::testkit::{SimDriver, conformance};

const DEVICE: &str = include_str!("fixtures/sim-device.yaml");

#[tokio::test]
async fn the_sim_driver_passes_the_conformance_suite() {
    let drivers: Arc<Mutex<Vec<SimDriver>>> = Arc::default();
    let factory = {
        let drivers = Arc::clone(&drivers);
        move || {
            let driver = SimDriver::new();
            drivers.lock().expect("not poisoned").push(driver.clone());
            driver
        }
    };
    let report = conformance::run(factory, DEVICE)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    assert_eq!(report.passed.len(), conformance::SCENARIOS.len());

    let drivers = drivers.lock().expect("not poisoned");
    assert_eq!(
        drivers.len(),
        conformance::SCENARIOS.len(),
        "a fresh driver per scenario"
    );
    let storm = drivers.last().expect("the storm's driver");
    let writes = storm.writes("default/meter");
    assert!(!writes.is_empty());
    assert!(
        writes.len() <= 1 + conformance::STORM,
        "{} writes for a storm of {}",
        writes.len(),
        conformance::STORM
    );
    for pair in writes.windows(2) {
        assert_ne!(
            pair[0].value, pair[1].value,
            "the same value written twice in a row"
        );
    }
    let last = writes.last().expect("a write");
    assert_eq!(
        storm.value("default/meter", &last.register),
        Some(last.value.clone())
    );
}

#[tokio::test]
async fn a_device_yaml_without_a_writable_property_is_refused_clearly() {
    let read_only = DEVICE
        .replace(
            "type: INT\n      accessMode: ReadWrite",
            "type: INT\n      accessMode: ReadOnly",
        )
        .replace(
            "type: BOOLEAN\n      accessMode: ReadWrite",
            "type: BOOLEAN\n      accessMode: ReadOnly",
        );
    let failure = conformance::run(SimDriver::new, &read_only)
        .await
        .expect_err("nothing to write");
    assert_eq!(failure.scenario, "setup");
    assert!(failure.message.contains("ReadWrite property"), "{failure}");
}

/// The simulated device misbehaving as the suite asks: refused points, no answers, a lost link.
struct SimFaults {
    driver: SimDriver,
}

const METER: &str = "default/meter";

impl conformance::Faults for SimFaults {
    fn refuse(&self, property: &str) -> bool {
        // The fixture's registers are named after their properties.
        let reason = Some("simulated refusal");
        self.driver.refuse_reads(METER, property, reason);
        self.driver.refuse_writes(METER, property, reason);
        true
    }

    fn hang(&self) -> bool {
        self.driver.set_hung(METER, true);
        true
    }

    fn drop_link(&self) -> bool {
        self.driver.set_reachable(METER, false);
        true
    }

    fn heal(&self) {
        for register in ["level", "enabled", "count"] {
            self.driver.refuse_reads(METER, register, None);
            self.driver.refuse_writes(METER, register, None);
        }
        self.driver.set_hung(METER, false);
        self.driver.set_reachable(METER, true);
    }
}

#[tokio::test]
async fn the_sim_driver_passes_the_fault_scenarios() {
    // One simulated world for every scenario, so that the faults reach the device the
    // scenario's driver talks to.
    let driver = SimDriver::new();
    let faults = SimFaults {
        driver: driver.clone(),
    };
    let report = conformance::run_with(|| driver.clone(), DEVICE, &faults)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("{report}");
    assert_eq!(
        report.passed.len(),
        conformance::SCENARIOS.len() + conformance::FAULT_SCENARIOS.len(),
        "{report}"
    );
}
