//! The scenarios on a Raspberry Pi's real pins, with the jumpers of `hil-tests/README.md`:
//! `HIL=1` (rppal), `HIL=1 HIL_BACKEND=cdev` (the GPIO character device). Without `HIL=1` each
//! test says it skips. One set of pins: these tests run one at a time (nextest's `hil-pins`
//! group; under `cargo test` the lock below).

use std::sync::Mutex;

use edgetwin_hil_tests::rig::Rig;
use edgetwin_hil_tests::scenarios;

/// One scenario on the pins at a time within this process (`cargo test` runs tests on threads).
static PINS: Mutex<()> = Mutex::new(());

fn on_the_pins(test: &str, scenario: fn(&Rig)) {
    let Some(rig) = Rig::real_pins(test) else {
        return;
    };
    let _pins = PINS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    scenario(&rig);
}

#[test]
fn pins_desired_reaches_the_jumpered_input() {
    on_the_pins(
        "pins_desired_reaches_the_jumpered_input",
        scenarios::desired_reaches_the_jumpered_input,
    );
}

#[test]
fn pins_interlock_refusal_leaves_every_pin_unchanged() {
    on_the_pins(
        "pins_interlock_refusal_leaves_every_pin_unchanged",
        scenarios::interlock_refusal_leaves_every_pin_unchanged,
    );
}

#[test]
fn pins_an_input_driven_by_an_output_is_reported_on_change() {
    on_the_pins(
        "pins_an_input_driven_by_an_output_is_reported_on_change",
        scenarios::an_input_driven_by_an_output_is_reported_on_change,
    );
}

#[test]
fn pins_edge_sigkill_keeps_the_pins_and_loses_no_accepted_change() {
    on_the_pins(
        "pins_edge_sigkill_keeps_the_pins_and_loses_no_accepted_change",
        scenarios::edge_killed_keeps_the_pins_and_loses_no_accepted_change,
    );
}

#[test]
fn pins_mapper_restart_reads_the_pins_without_writing_them() {
    on_the_pins(
        "pins_mapper_restart_reads_the_pins_without_writing_them",
        scenarios::mapper_restarted_reads_the_pins_without_writing_them,
    );
}
