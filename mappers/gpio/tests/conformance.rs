//! The SDK conformance suite, run against the GPIO driver on the simulated chip.
//!
//! The device (`data/lamp.yaml`) has a BOOLEAN output and an input; the input is wired to the
//! output in the simulated chip, so every scenario also drives edge events through the runtime.

use edgetwin_mapper_gpio::GpioDriver;
use edgetwin_mapper_gpio::config::BackendKind;
use edgetwin_sdk::testkit::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpio_mapper_passes_the_sdk_conformance_suite_on_the_simulated_chip() {
    let factory = || {
        let driver = GpioDriver::new(BackendKind::Sim);
        driver
            .sim()
            .chip("gpiochip0")
            .wire(5, 6)
            .expect("lines 5 and 6 exist");
        driver
    };
    match conformance::run(factory, include_str!("data/lamp.yaml")).await {
        Ok(report) => print!("{report}"),
        Err(err) => panic!("{err}"),
    }
}
