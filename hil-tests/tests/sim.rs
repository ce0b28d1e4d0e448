//! The scenarios on the simulated chip with this machine's binaries (every CI run).

use edgetwin_hil_tests::rig::Rig;
use edgetwin_hil_tests::scenarios;

#[test]
fn sim_desired_reaches_the_jumpered_input() {
    scenarios::desired_reaches_the_jumpered_input(&Rig::simulated());
}

#[test]
fn sim_interlock_refusal_leaves_every_pin_unchanged() {
    scenarios::interlock_refusal_leaves_every_pin_unchanged(&Rig::simulated());
}

#[test]
fn sim_an_input_driven_by_an_output_is_reported_on_change() {
    scenarios::an_input_driven_by_an_output_is_reported_on_change(&Rig::simulated());
}

#[test]
fn sim_edge_sigkill_keeps_the_pins_and_loses_no_accepted_change() {
    scenarios::edge_killed_keeps_the_pins_and_loses_no_accepted_change(&Rig::simulated());
}

#[test]
fn sim_mapper_restart_reads_the_pins_without_writing_them() {
    scenarios::mapper_restarted_reads_the_pins_without_writing_them(&Rig::simulated());
}
