//! The `file` mapper of `docs/writing-a-mapper.md`:
//! `cargo run -p edgetwin-sdk --example file_mapper -- --node NODE --devices DIR`.

mod driver;

fn main() -> std::process::ExitCode {
    edgetwin_sdk::cli::main(driver::FileDriver)
}
