//! The scenarios with the edge agent and the mapper built for `aarch64` and run under qemu-user
//! (the cloud runs natively): alignment, byte order and word size bugs show up without a Pi.
//! `cargo xtask hil` builds the binaries and points `EDGETWIN_HIL_AARCH64_DIR` at them.

use edgetwin_hil_tests::rig::Rig;
use edgetwin_hil_tests::scenarios;

#[test]
fn aarch64_desired_reaches_the_jumpered_input() {
    let Some(rig) = Rig::simulated_aarch64("aarch64_desired_reaches_the_jumpered_input") else {
        return;
    };
    scenarios::desired_reaches_the_jumpered_input(&rig);
}

#[test]
fn aarch64_interlock_refusal_leaves_every_pin_unchanged() {
    let Some(rig) = Rig::simulated_aarch64("aarch64_interlock_refusal_leaves_every_pin_unchanged")
    else {
        return;
    };
    scenarios::interlock_refusal_leaves_every_pin_unchanged(&rig);
}

#[test]
fn aarch64_an_input_driven_by_an_output_is_reported_on_change() {
    let Some(rig) =
        Rig::simulated_aarch64("aarch64_an_input_driven_by_an_output_is_reported_on_change")
    else {
        return;
    };
    scenarios::an_input_driven_by_an_output_is_reported_on_change(&rig);
}

#[test]
fn aarch64_edge_sigkill_keeps_the_pins_and_loses_no_accepted_change() {
    let Some(rig) =
        Rig::simulated_aarch64("aarch64_edge_sigkill_keeps_the_pins_and_loses_no_accepted_change")
    else {
        return;
    };
    scenarios::edge_killed_keeps_the_pins_and_loses_no_accepted_change(&rig);
}

#[test]
fn aarch64_mapper_restart_reads_the_pins_without_writing_them() {
    let Some(rig) =
        Rig::simulated_aarch64("aarch64_mapper_restart_reads_the_pins_without_writing_them")
    else {
        return;
    };
    scenarios::mapper_restarted_reads_the_pins_without_writing_them(&rig);
}
