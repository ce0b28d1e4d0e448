//! `edgetwin-mapper-ble`: the BLE mapper (see `mappers/ble/README.md`).
//!
//! The SDK's common command line plus the BLE options of [`edgetwin_mapper_ble::cli`]; runs on
//! the SDK's current-thread runtime until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use edgetwin_mapper_ble::BleDriver;
use edgetwin_mapper_ble::cli::{self as ble_cli, USAGE};
use edgetwin_sdk::Mapper;
use edgetwin_sdk::cli::{self, Parsed};

/// Finding a device may take a scan and a wait for a free slot: more than the SDK's default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    cli::init_logging();
    let args: Vec<String> = std::env::args().collect();
    let bin = args.first().map_or("edgetwin-mapper-ble", String::as_str);
    let bad_arguments = |message: &str| {
        eprintln!(
            "{bin}: {message}\n\n{}{USAGE}",
            cli::usage::<BleDriver>(bin)
        );
        ExitCode::from(2)
    };
    let (options, rest) =
        match ble_cli::split(args.get(1..).unwrap_or_default(), |k| std::env::var(k).ok()) {
            Ok(split) => split,
            Err(message) => return bad_arguments(&message),
        };
    let builder = cli::from_env(
        Mapper::builder()
            .driver(BleDriver::new(options))
            .options(|o| o.connect_timeout = CONNECT_TIMEOUT),
    );
    match cli::parse(builder, &rest) {
        Ok(Parsed::Run(builder)) => match builder.build() {
            Ok(mapper) => cli::run_with(mapper, bin, async {}),
            Err(err) => bad_arguments(&err.to_string()),
        },
        Ok(Parsed::Help) => {
            print!("{}{USAGE}", cli::usage::<BleDriver>(bin));
            ExitCode::SUCCESS
        }
        Err(message) => bad_arguments(&message),
    }
}
