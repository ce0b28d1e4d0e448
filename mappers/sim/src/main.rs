//! A mapper for the simulated `sim` protocol: the same binary a real protocol gets, with the
//! simulated driver. Used by the benchmark and handy for demos.
//!
//! `cargo run -p edgetwin-mapper-sim -- --node NODE`
//!
//! Devices come from the edge agent's spec topic (or `--device-profile FILE`). Built without YAML
//! by default, as a mapper next to the agent is; for `--devices DIR` build it with
//! `--features yaml`.
//!
//! With `EDGETWIN_SIM_WRITE_LOG=FILE`, the simulated devices' write log is written to FILE at
//! exit, one write per line: `device<TAB>register<TAB>value<TAB>unix nanoseconds`.

use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use edgetwin_sdk::sim::SimDriver;

fn main() -> ExitCode {
    let sim = SimDriver::new();
    let status = edgetwin_sdk::cli::main(sim.clone());
    let Some(path) = std::env::var_os("EDGETWIN_SIM_WRITE_LOG") else {
        return status;
    };
    let mut log = String::new();
    for (device, writes) in sim.all_writes() {
        for write in writes {
            let nanos = write
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            log.push_str(&format!(
                "{device}\t{}\t{}\t{nanos}\n",
                write.register, write.value
            ));
        }
    }
    if let Err(err) = std::fs::write(&path, log) {
        eprintln!(
            "edgetwin-mapper-sim: cannot write {}: {err}",
            path.to_string_lossy()
        );
        return ExitCode::FAILURE;
    }
    status
}
