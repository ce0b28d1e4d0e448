//! `edgetwin-mapper-opcua`: the OPC-UA mapper (see `mappers/opcua/README.md`).
//!
//! The SDK's common command line plus `--data-dir` (the client certificate and trust list);
//! runs on the SDK's current-thread runtime until SIGTERM or SIGINT.

use std::process::ExitCode;

use edgetwin_mapper_opcua::OpcUaDriver;
use edgetwin_mapper_opcua::cli::{self as opcua_cli, DATA_DIR_ENV, USAGE};
use edgetwin_sdk::Mapper;
use edgetwin_sdk::cli::{self, Parsed};

fn main() -> ExitCode {
    cli::init_logging();
    let args: Vec<String> = std::env::args().collect();
    let bin = args.first().map_or("edgetwin-mapper-opcua", String::as_str);
    let bad_arguments = |message: &str| {
        eprintln!(
            "{bin}: {message}\n\n{}{USAGE}",
            cli::usage::<OpcUaDriver>(bin)
        );
        ExitCode::from(2)
    };
    let env = std::env::var_os(DATA_DIR_ENV).map(Into::into);
    let (data_dir, rest) = match opcua_cli::split(args.get(1..).unwrap_or_default(), env) {
        Ok(split) => split,
        Err(message) => return bad_arguments(&message),
    };
    let builder = cli::from_env(Mapper::builder().driver(OpcUaDriver::new(data_dir)));
    let mapper = match cli::parse(builder, &rest) {
        Ok(Parsed::Run(builder)) => match builder.build() {
            Ok(mapper) => mapper,
            Err(err) => return bad_arguments(&err.to_string()),
        },
        Ok(Parsed::Help) => {
            print!("{}{USAGE}", cli::usage::<OpcUaDriver>(bin));
            return ExitCode::SUCCESS;
        }
        Err(message) => return bad_arguments(&message),
    };
    cli::run_with(mapper, bin, async {})
}
