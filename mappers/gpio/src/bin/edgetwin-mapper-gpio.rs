//! `edgetwin-mapper-gpio`: the GPIO mapper (see `mappers/gpio/README.md`).
//!
//! The SDK's common command line plus the GPIO options of [`edgetwin_mapper_gpio::cli`]; runs
//! on the SDK's current-thread runtime until SIGTERM or SIGINT.

use std::process::ExitCode;

use edgetwin_mapper_gpio::chip::sim::SimGpio;
use edgetwin_mapper_gpio::cli::{GpioArgs, USAGE};
use edgetwin_mapper_gpio::{GpioDriver, platform, sim_http};
use edgetwin_sdk::Mapper;
use edgetwin_sdk::cli::{self, Parsed};

fn main() -> ExitCode {
    cli::init_logging();
    let args: Vec<String> = std::env::args().collect();
    let bin = args.first().map_or("edgetwin-mapper-gpio", String::as_str);
    let bad_arguments = |message: &str| {
        eprintln!(
            "{bin}: {message}\n\n{}{USAGE}",
            cli::usage::<GpioDriver>(bin)
        );
        ExitCode::from(2)
    };
    let (gpio, rest) = match GpioArgs::split(args.get(1..).unwrap_or_default()) {
        Ok(split) => split,
        Err(message) => return bad_arguments(&message),
    };
    // Detected now, logged once the arguments are known to ask for a run (`--help` prints
    // the usage alone).
    let (mut driver, detected) = match gpio.backend {
        Some(backend) => (GpioDriver::new(backend), None),
        None => {
            let (backend, why) = platform::default_backend();
            (GpioDriver::new(backend), Some((backend, why)))
        }
    };
    if let Some(dir) = &gpio.sim_state {
        match SimGpio::persistent(dir) {
            Ok(sim) => driver = driver.with_sim(sim),
            Err(err) => {
                eprintln!("{bin}: --sim-state: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    // All wires of a chip at once: a chip restored from --sim-state gets its jumpers back
    // without an input moving.
    let mut wires: Vec<(&str, Vec<(u32, u32)>)> = Vec::new();
    for wire in &gpio.wires {
        match wires.iter_mut().find(|(chip, _)| *chip == wire.chip) {
            Some((_, pairs)) => pairs.push((wire.output, wire.input)),
            None => wires.push((&wire.chip, vec![(wire.output, wire.input)])),
        }
    }
    for (chip, pairs) in &wires {
        if let Err(err) = driver.sim().chip(chip).wire_all(pairs) {
            return bad_arguments(&format!("--sim-wire: {err}"));
        }
    }
    let sim = driver.sim().clone();
    let builder = cli::from_env(Mapper::builder().driver(driver));
    let mapper = match cli::parse(builder, &rest) {
        Ok(Parsed::Run(builder)) => match builder.build() {
            Ok(mapper) => {
                if let Some((backend, why)) = detected {
                    tracing::info!(%backend, reason = %why, "default GPIO backend");
                }
                mapper
            }
            Err(err) => return bad_arguments(&err.to_string()),
        },
        Ok(Parsed::Help) => {
            print!("{}{USAGE}", cli::usage::<GpioDriver>(bin));
            return ExitCode::SUCCESS;
        }
        Err(message) => return bad_arguments(&message),
    };
    let Some(addr) = gpio.sim_http else {
        return cli::run_with(mapper, bin, async {});
    };
    // Bound before the runtime starts, so that a taken port is a startup error.
    let listener = match std::net::TcpListener::bind(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("{bin}: --sim-http {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the simulated pins can be driven by anyone who reaches this address");
    }
    // Tests and scripts read the bound address (port 0 picks a free one) from this line.
    println!("sim-http listening on http://{bound}");
    cli::run_with(mapper, bin, async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => sim_http::serve(listener, sim).await,
            Err(err) => tracing::error!(error = %err, "sim-http cannot serve"),
        }
    })
}
