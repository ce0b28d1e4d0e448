//! The Modbus mapper: `edgetwin-mapper-modbus --node NODE` serves the node's Modbus TCP and RTU
//! devices (see `--help`; the options are the SDK's, shared by every mapper).

fn main() -> std::process::ExitCode {
    edgetwin_sdk::cli::main(edgetwin_mapper_modbus::ModbusDriver::default())
}
