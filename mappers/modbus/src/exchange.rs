//! One request and its answer on a tokio-modbus context, under a timeout, and why it failed
//! ([`TransportError`]); shared by TCP links and RTU lines.

use std::fmt;
use std::io;
use std::time::Duration;

use edgetwin_sdk::DriverError;
use tokio::time::timeout;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

/// Why one request failed.
#[derive(Debug)]
pub enum TransportError {
    /// No (complete) answer within the timeout.
    Timeout(Duration),
    /// The connection or serial line failed.
    Io(io::Error),
    /// The answer did not match the request (wrong unit, function or transaction).
    Protocol(String),
    /// The device answered with a Modbus exception.
    Exception(ExceptionCode),
}

impl TransportError {
    /// Whether sending the request again may succeed right away (a broken connection is
    /// reopened, a busy device may have finished). A timeout is not: a silent unit is retried
    /// at its next cycle, so that a dead slave costs one timeout per cycle, not several.
    pub fn retryable(&self) -> bool {
        match self {
            TransportError::Io(_) | TransportError::Protocol(_) => true,
            TransportError::Exception(code) => matches!(
                code,
                ExceptionCode::ServerDeviceBusy | ExceptionCode::Acknowledge
            ),
            TransportError::Timeout(_) => false,
        }
    }

    /// The SDK error for this failure of `request` to `unit` on `link`.
    pub fn into_driver_error(self, link: &str, unit: u8, request: &Request<'_>) -> DriverError {
        let what = describe(request);
        match self {
            TransportError::Timeout(after) => DriverError::Timeout(after),
            TransportError::Io(err) => {
                let message = format!("{link}: {what} for unit {unit}: {err}");
                match DriverError::from(err) {
                    DriverError::Disconnected(_) => DriverError::Disconnected(message),
                    _ => DriverError::Io(message),
                }
            }
            TransportError::Protocol(message) => DriverError::Io(format!(
                "{link}: unexpected answer to {what} for unit {unit}: {message}"
            )),
            TransportError::Exception(code) => {
                let message = format!(
                    "Modbus exception {:#04x} ({}) from unit {unit} for {what}",
                    u8::from(code),
                    exception_text(code)
                );
                match code {
                    // The unit behind a gateway is unreachable or busy: like a timeout, this
                    // counts toward the device's circuit breaker.
                    ExceptionCode::GatewayPathUnavailable
                    | ExceptionCode::GatewayTargetDevice
                    | ExceptionCode::ServerDeviceBusy
                    | ExceptionCode::Acknowledge => DriverError::Io(message),
                    _ => DriverError::Rejected(message),
                }
            }
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Timeout(after) => write!(f, "no answer within {after:?}"),
            TransportError::Io(err) => write!(f, "{err}"),
            TransportError::Protocol(message) => write!(f, "{message}"),
            TransportError::Exception(code) => {
                write!(
                    f,
                    "exception {:#04x} ({})",
                    u8::from(*code),
                    exception_text(*code)
                )
            }
        }
    }
}

/// What the Modbus spec calls each exception code, in words an operator can act on.
pub fn exception_text(code: ExceptionCode) -> &'static str {
    match code {
        ExceptionCode::IllegalFunction => "illegal function: the device does not support it",
        ExceptionCode::IllegalDataAddress => {
            "illegal data address: the device has no such register or coil"
        }
        ExceptionCode::IllegalDataValue => {
            "illegal data value: the device refused the value or quantity"
        }
        ExceptionCode::ServerDeviceFailure => "server device failure",
        ExceptionCode::Acknowledge => "acknowledge: the device is still processing",
        ExceptionCode::ServerDeviceBusy => "server device busy",
        ExceptionCode::MemoryParityError => "memory parity error",
        ExceptionCode::GatewayPathUnavailable => "gateway path unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway target device failed to respond",
        ExceptionCode::Custom(_) => "device-specific exception",
    }
}

/// Sends one request on a client context, under a timeout, and sorts out the result.
pub(crate) async fn exchange(
    ctx: &mut Context,
    request: Request<'static>,
    limit: Duration,
) -> Result<Response, TransportError> {
    match timeout(limit, ctx.call(request)).await {
        Err(_) => Err(TransportError::Timeout(limit)),
        Ok(Err(tokio_modbus::Error::Transport(err))) => Err(TransportError::Io(err)),
        Ok(Err(tokio_modbus::Error::Protocol(err))) => {
            Err(TransportError::Protocol(err.to_string()))
        }
        Ok(Ok(Err(code))) => Err(TransportError::Exception(code)),
        Ok(Ok(Ok(response))) => Ok(response),
    }
}

/// Points a context at another unit (RTU lines carry several).
pub(crate) fn select_unit(ctx: &mut Context, unit: u8) {
    ctx.set_slave(Slave(unit));
}

/// A request in words: `read holding registers 100..110`.
pub fn describe(request: &Request<'_>) -> String {
    let span =
        |address: &u16, count: usize| format!("{address}..{}", u32::from(*address) + count as u32);
    match request {
        Request::ReadCoils(a, n) => format!("read coils {}", span(a, usize::from(*n))),
        Request::ReadDiscreteInputs(a, n) => {
            format!("read discrete inputs {}", span(a, usize::from(*n)))
        }
        Request::ReadHoldingRegisters(a, n) => {
            format!("read holding registers {}", span(a, usize::from(*n)))
        }
        Request::ReadInputRegisters(a, n) => {
            format!("read input registers {}", span(a, usize::from(*n)))
        }
        Request::WriteSingleCoil(a, _) => format!("write coil {a}"),
        Request::WriteMultipleCoils(a, coils) => format!("write coils {}", span(a, coils.len())),
        Request::WriteSingleRegister(a, _) => format!("write holding register {a}"),
        Request::WriteMultipleRegisters(a, words) => {
            format!("write holding registers {}", span(a, words.len()))
        }
        other => format!("function {}", other.function_code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Table;
    use crate::transport::{read_request, write_coils, write_registers};

    #[test]
    fn exceptions_become_clear_errors_of_the_right_kind() {
        let request = read_request(Table::HoldingRegisters, 100, 10);
        let err = TransportError::Exception(ExceptionCode::IllegalDataAddress).into_driver_error(
            "tcp://plc:502",
            3,
            &request,
        );
        assert_eq!(
            err,
            DriverError::Rejected(
                "Modbus exception 0x02 (illegal data address: the device has no such register \
                 or coil) from unit 3 for read holding registers 100..110"
                    .into()
            )
        );
        let gateway = TransportError::Exception(ExceptionCode::GatewayTargetDevice)
            .into_driver_error("tcp://gw:502", 9, &request);
        assert!(gateway.is_transient(), "{gateway}");
        let busy = TransportError::Exception(ExceptionCode::ServerDeviceBusy);
        assert!(busy.retryable());
        assert!(!TransportError::Exception(ExceptionCode::IllegalFunction).retryable());
        assert!(!TransportError::Timeout(Duration::from_secs(1)).retryable());
        assert!(TransportError::Io(io::ErrorKind::ConnectionReset.into()).retryable());
    }

    #[test]
    fn io_errors_keep_the_disconnect_kind_and_name_the_link() {
        let request = Request::WriteSingleCoil(4, true);
        let err = TransportError::Io(io::ErrorKind::BrokenPipe.into()).into_driver_error(
            "/dev/ttyUSB0",
            2,
            &request,
        );
        let DriverError::Disconnected(message) = err else {
            panic!("a disconnect: {err:?}")
        };
        assert!(
            message.starts_with("/dev/ttyUSB0: write coil 4 for unit 2:"),
            "{message}"
        );
        let refused = TransportError::Io(io::ErrorKind::ConnectionRefused.into())
            .into_driver_error("tcp://plc:502", 1, &request);
        assert!(matches!(refused, DriverError::Io(_)));
        assert_eq!(
            TransportError::Timeout(Duration::from_millis(200)).into_driver_error("x", 1, &request),
            DriverError::Timeout(Duration::from_millis(200))
        );
    }

    #[test]
    fn requests_are_described_with_their_span() {
        assert_eq!(
            describe(&read_request(Table::Coils, 0, 8)),
            "read coils 0..8"
        );
        assert_eq!(
            describe(&read_request(Table::InputRegisters, 65535, 1)),
            "read input registers 65535..65536"
        );
        assert_eq!(
            describe(&write_registers(10, vec![1, 2])),
            "write holding registers 10..12"
        );
        assert_eq!(describe(&write_coils(3, vec![true; 3])), "write coils 3..6");
    }
}
