//! `line_mapper`: the mapper of the line protocol (`--help` lists its options).

mod driver;

fn main() -> std::process::ExitCode {
    edgetwin_sdk::cli::main(driver::LineDriver)
}
