//! The scenarios, each on a fresh [`Stack`] of any [`Rig`]. Each checks the physical result
//! through a second path: the jumpered input, reported by the mapper like any property and read
//! back from the registry; and, where the pins can be seen from outside the stack
//! ([`PinView`](crate::pins::PinView)), the pins themselves.

use std::time::Duration;

use crate::observe::{self, Latencies, Latency};
use crate::pins::PinView;
use crate::rig::{Pins, Rig};
use crate::stack::{Stack, on_off};
use crate::wiring::{JUMPERS, jumper};

/// Desired ON → the output goes high → its jumpered input reads high → the lamp is reported ON
/// and Verified and the input reported ON; then OFF the same way; for each lamp. The time from
/// the request to the input's report and to Verified is printed for every change, and held to
/// the rig's bound where it has one (real pins: 50 ms).
pub fn desired_reaches_the_jumpered_input(rig: &Rig) {
    let stack = Stack::start(rig);
    let mut latencies = Latencies::default();
    for (index, j) in JUMPERS.iter().enumerate() {
        for on in [true, false] {
            let mut lamps = [false; 3];
            lamps[index] = on;
            let change = format!("{} {}", j.lamp, on_off(on));
            let sent = stack.set(&[(j.lamp, on_off(on))]);
            let device = stack.wait_lamps(&change, lamps);
            if let (Some(output), Some(input)) =
                (stack.pins().level(j.output), stack.pins().level(j.input))
            {
                assert_eq!(
                    (output, input),
                    (on, on),
                    "[{}] {change}: GPIO{} and its jumpered GPIO{}",
                    rig.name,
                    j.output,
                    j.input
                );
            }
            let input = observe::reported_at(&device, j.sense)
                .unwrap_or_else(|| panic!("{change}: {} has no report time", j.sense));
            let verified = observe::condition_since(&device, j.lamp)
                .unwrap_or_else(|| panic!("{change}: {} has no condition time", j.lamp));
            latencies.push(
                change,
                Latency {
                    input: observe::elapsed(sent, input),
                    verified: observe::elapsed(sent, verified),
                },
            );
        }
    }
    println!("{}", latencies.render(&rig.name));
    if let Some(bound) = rig.latency_bound {
        assert!(
            latencies.max() <= bound,
            "[{}] desired → input → Verified took up to {:?}, over the bound of {bound:?}:\n{}",
            rig.name,
            latencies.max(),
            latencies.render(&rig.name)
        );
    }
    leave_dark(&stack);
}

/// With red ON, green ON is refused by the interlock: the condition turns Failed with the
/// rule's reason, and no pin moves (the lamps and the inputs report what they did, the pins read
/// the same, the simulated chip logs no transition); red OFF with green ON in one request is
/// then applied, whatever the order of the properties.
pub fn interlock_refusal_leaves_every_pin_unchanged(rig: &Rig) {
    let stack = Stack::start(rig);
    stack.set(&[("red", "ON")]);
    stack.wait_lamps("red ON", [true, false, false]);
    let pins_before = stack.pins().levels();
    let seq_before = stack.pins().last_seq();
    let rejected = "edgetwin_mapper_write_errors_total";
    let rejected_before = stack.mapper_metric(rejected, ",kind=\"rejected\"");

    stack.set(&[("green", "ON")]);
    let device = stack.wait_for("green Failed by the interlock", |d| {
        observe::condition(d, "green") == Some("Failed")
    });
    let message = observe::condition_message(&device, "green").unwrap_or_default();
    assert!(
        message.contains("interlock refused green=ON")
            && message.contains("red and green are never both on"),
        "[{}] the condition names the rule: {message:?}",
        rig.name
    );
    for (property, value) in [
        ("red", "ON"),
        ("red_in", "ON"),
        ("yellow", "OFF"),
        ("yellow_in", "OFF"),
        ("green", "OFF"),
        ("green_in", "OFF"),
    ] {
        assert_eq!(
            observe::reported(&device, property),
            Some(value),
            "[{}] {property} after the refusal",
            rig.name
        );
    }
    assert_eq!(
        stack.pins().levels(),
        pins_before,
        "[{}] the pins after the refusal",
        rig.name
    );
    if let Some(seq) = seq_before {
        assert_eq!(
            stack.pins().transitions_since(seq),
            Some(Vec::new()),
            "[{}] no pin of the simulated chip moved",
            rig.name
        );
    }
    assert!(
        stack.mapper_metric(rejected, ",kind=\"rejected\"") > rejected_before,
        "[{}] the mapper counts the refusal",
        rig.name
    );

    stack.set(&[("red", "OFF"), ("green", "ON")]);
    stack.wait_lamps("red OFF and green ON in one request", [false, false, true]);
    leave_dark(&stack);
}

/// An input that an output drives through its jumper is reported each time it changes. Inputs
/// are polled only hourly (`collectCycle`), so every report here comes from the input's edge.
pub fn an_input_driven_by_an_output_is_reported_on_change(rig: &Rig) {
    const TOGGLES: usize = 3;
    let stack = Stack::start(rig);
    let yellow = jumper("yellow");
    let seq_before = stack.pins().last_seq();
    let mut last_report = None;
    for n in 0..TOGGLES {
        for on in [true, false] {
            let sent = stack.set(&[(yellow.lamp, on_off(on))]);
            let device = stack.wait_lamps(
                &format!("yellow {} ({}/{TOGGLES})", on_off(on), n + 1),
                [false, on, false],
            );
            let reported = observe::reported_at(&device, yellow.sense);
            assert!(
                reported.is_some_and(|at| at.as_millisecond() >= sent.as_millisecond()),
                "[{}] {} was reported after the change, not before: {reported:?}, set at {sent}",
                rig.name,
                yellow.sense
            );
            assert_ne!(reported, last_report, "a new report for each change");
            last_report = reported;
        }
    }
    if let Some(seq) = seq_before {
        let moves: Vec<(String, String)> = stack
            .pins()
            .transitions_since(seq)
            .unwrap_or_default()
            .iter()
            .filter(|t| t["line"] == yellow.input)
            .map(|t| {
                (
                    t["level"].as_str().unwrap_or_default().to_owned(),
                    t["cause"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = (0..TOGGLES)
            .flat_map(|_| [("high", "wire"), ("low", "wire")])
            .map(|(l, c)| (l.to_owned(), c.to_owned()))
            .collect();
        assert_eq!(
            moves, expected,
            "[{}] GPIO{} followed its jumper",
            rig.name, yellow.input
        );
    }
    leave_dark(&stack);
}

/// The edge agent is SIGKILLed while it holds a change the mapper has not applied yet (the
/// mapper is frozen with SIGSTOP until the edge accepted it), and another change is made in the
/// cloud while the agent is down. Meanwhile the pins keep their last desired state; once the
/// agent is back, both changes reach the pins.
pub fn edge_killed_keeps_the_pins_and_loses_no_accepted_change(rig: &Rig) {
    let mut stack = Stack::start(rig);
    let red = jumper("red");
    stack.set(&[("red", "ON")]);
    stack.wait_lamps("red ON", [true, false, false]);

    stack.freeze_mapper(true);
    stack.set(&[("yellow", "ON")]);
    stack.wait_for("the edge agent accepted yellow ON", |d| {
        observe::observed_desired(d, "yellow") == Some("ON")
    });
    stack.kill_edge();
    stack.freeze_mapper(false);
    stack.set(&[("red", "OFF")]);

    // The agent is down: red OFF cannot reach the mapper, so red stays ON.
    for _ in 0..10 {
        if let Some(high) = stack.pins().level(red.output) {
            assert!(
                high,
                "[{}] GPIO{} went low while the edge was down",
                rig.name, red.output
            );
            assert_eq!(stack.pins().level(red.input), Some(true));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stack.mapper_running(),
        "[{}] the mapper must outlive its broker",
        rig.name
    );

    stack.start_edge();
    stack.wait_lamps(
        "after the edge restart: red OFF (set while it was down), yellow ON (accepted before)",
        [false, true, false],
    );
    leave_dark(&stack);
}

/// The mapper is restarted, first after a SIGKILL (a crash), then after a SIGTERM (systemd's
/// restart): it reads the pins it finds, reports them, and writes nothing it does not have to.
/// A change made afterwards is its only write (which also proves it had the desired state by
/// then). With the character device, where the chip's driver may reset released lines, the
/// writes are printed instead of checked.
pub fn mapper_restarted_reads_the_pins_without_writing_them(rig: &Rig) {
    let mut stack = Stack::start(rig);
    stack.set(&[("red", "ON"), ("yellow", "ON")]);
    stack.wait_lamps("red and yellow ON", [true, true, false]);
    let keeps = rig.pins.outputs_survive_the_mapper();
    let lit: Vec<u32> = ["red", "yellow"]
        .iter()
        .flat_map(|lamp| [jumper(lamp).output, jumper(lamp).input])
        .collect();

    for how in ["SIGKILL", "SIGTERM"] {
        if how == "SIGKILL" {
            stack.kill_mapper();
        } else {
            stack.stop_mapper();
        }
        if keeps && let PinView::Rpi(_) = stack.pins() {
            // No mapper runs: the pins are what it left.
            let levels = stack.pins().levels().unwrap_or_default();
            assert!(
                levels.iter().all(|&(bcm, high)| high == lit.contains(&bcm)),
                "[{}] pins with no mapper running ({how}): {levels:?}",
                rig.name
            );
        }
        stack.start_mapper();
        stack.wait_for("the restarted mapper reported its device", |_| {
            stack.mapper_metric("edgetwin_mapper_reports_total", "") >= 1.0
        });
        stack.wait_lamps(
            &format!("red and yellow still ON after the mapper's {how} restart"),
            [true, true, false],
        );
        // A later change: the restarted mapper has its desired state once it applied it.
        stack.set(&[("yellow", "OFF")]);
        stack.wait_lamps("yellow OFF after the restart", [true, false, false]);
        let writes = stack.mapper_metric("edgetwin_mapper_writes_total", "");
        if keeps {
            assert_eq!(
                writes, 1.0,
                "[{}] after a {how} restart the mapper wrote only yellow OFF",
                rig.name
            );
            if let Some(moves) = stack.pins().transitions_since(0) {
                let moved: Vec<(u64, String, String)> = moves
                    .iter()
                    .map(|t| {
                        (
                            t["line"].as_u64().unwrap_or_default(),
                            t["level"].as_str().unwrap_or_default().to_owned(),
                            t["cause"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let yellow = jumper("yellow");
                assert_eq!(
                    moved,
                    [
                        (
                            u64::from(yellow.output),
                            "low".to_owned(),
                            "write".to_owned()
                        ),
                        (u64::from(yellow.input), "low".to_owned(), "wire".to_owned())
                    ],
                    "[{}] after the {how} restart only yellow moved, when it was set",
                    rig.name
                );
            }
        } else {
            println!(
                "[{}] after a {how} restart the mapper wrote {writes} times (1 = only yellow OFF; more = the chip's driver reset the released lines)",
                rig.name
            );
        }
        stack.set(&[("yellow", "ON")]);
        stack.wait_lamps("yellow ON again", [true, true, false]);
    }
    leave_dark(&stack);
}

/// On real pins, switches every lamp off at the end of a scenario (the outputs keep their
/// level when the mapper stops); the simulated chip goes away with its mapper.
fn leave_dark(stack: &Stack) {
    if stack.rig().pins == Pins::Simulated {
        return;
    }
    let off: Vec<(&str, &str)> = JUMPERS.iter().map(|j| (j.lamp, "OFF")).collect();
    stack.set(&off);
    stack.wait_lamps("every lamp off at the end", [false; 3]);
}
