//! `edgetwin-mapper-gpio`: the GPIO mapper (see `mappers/gpio/README.md`).
//!
//! The SDK's common command line plus the GPIO options of [`edgetwin_mapper_gpio::cli`]; runs
//! on a current-thread tokio runtime until SIGTERM or SIGINT.

use std::process::ExitCode;

use edgetwin_mapper_gpio::cli::{GpioArgs, USAGE};
use edgetwin_mapper_gpio::{GpioDriver, sim_http};
use edgetwin_sdk::Mapper;
use edgetwin_sdk::cli::{self, Parsed};
use tokio::net::TcpListener;

/// Shown by `--help` before the GPIO options.
const COMMON: &str = "\
edgetwin mapper for GPIO lines (Raspberry Pi, Linux GPIO character device, simulated chip)

USAGE: edgetwin-mapper-gpio [OPTIONS]

Common mapper options: --node NAME, --broker ADDR, --devices DIR, --device-profile FILE,
--selector KEY=VALUE, --device NAME, --id-form namespaced|name, --heartbeat SECONDS,
--metrics ADDR, --client-id ID (see docs/writing-a-mapper.md).

";

fn main() -> ExitCode {
    cli::init_logging();
    let args: Vec<String> = std::env::args().collect();
    let (gpio, rest) = match GpioArgs::split(args.get(1..).unwrap_or_default()) {
        Ok(split) => split,
        Err(message) => return bad_arguments(&message),
    };
    let driver = match gpio.backend {
        Some(backend) => GpioDriver::new(backend),
        None => GpioDriver::detect(),
    };
    for wire in &gpio.wires {
        if let Err(err) = driver.sim().chip(&wire.chip).wire(wire.output, wire.input) {
            return bad_arguments(&format!("--sim-wire: {err}"));
        }
    }
    let sim = driver.sim().clone();
    let mut builder = Mapper::builder().driver(driver);
    if let Ok(node) = std::env::var("EDGETWIN_NODE") {
        builder = builder.node(node);
    }
    if let Ok(broker) = std::env::var("EDGETWIN_BROKER") {
        builder = builder.broker(broker);
    }
    let mapper = match cli::parse(builder, &rest) {
        Ok(Parsed::Run(builder)) => match builder.build() {
            Ok(mapper) => mapper,
            Err(err) => return bad_arguments(&err.to_string()),
        },
        Ok(Parsed::Help) => {
            print!("{COMMON}{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => return bad_arguments(&message),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edgetwin-mapper-gpio: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let server = match gpio.sim_http {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|err| format!("--sim-http {addr}: {err}"))?;
                let bound = listener.local_addr().unwrap_or(addr);
                if !bound.ip().is_loopback() {
                    tracing::warn!(%bound, "the simulated pins can be driven by anyone who reaches this address");
                }
                // Tests and scripts read the bound address (port 0 picks a free one) from here.
                println!("sim-http listening on http://{bound}");
                Some(tokio::spawn(sim_http::serve(listener, sim)))
            }
            None => None,
        };
        let outcome = mapper.run().await.map_err(|err| err.to_string());
        if let Some(server) = server {
            server.abort();
        }
        outcome
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "mapper failed");
            eprintln!("edgetwin-mapper-gpio: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bad_arguments(message: &str) -> ExitCode {
    eprintln!("edgetwin-mapper-gpio: {message}\n\n{COMMON}{USAGE}");
    ExitCode::from(2)
}
