//! RTU lines shared by several devices (an RS-485 bus with many slaves).
//!
//! All devices on one serial port share one [`Line`]: the port is opened once, and the SDK's
//! [`SharedBus`] lets one request at a time onto the wire, first come first served, with the
//! Modbus inter-frame gap (3.5 character times) between requests. A unit that does not answer
//! holds the line for at most its timeout; other devices' requests queue behind that one
//! request only, never behind the dead unit's whole cycle (the driver stops a cycle at its
//! first timeout and the runtime's circuit breaker keeps a dead device off the line).
//!
//! After a timeout (or a request abandoned midway) the port's input buffer is flushed before
//! the next request, so that a late answer is never taken for the next request's.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use edgetwin_sdk::{BusGuard, DriverError, SharedBus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::client::Context;
use tokio_modbus::{Request, Response, Slave};
use tokio_serial::{ClearBuffer, SerialPort, SerialStream};

use crate::config::{Parity, SerialSettings};
use crate::exchange::{TransportError, exchange, select_unit};

/// The serial lines in use, by device path. Devices attach to a line; it closes when the last
/// one leaves.
#[derive(Debug, Default)]
pub struct Lines {
    open: Mutex<HashMap<String, Weak<Line>>>,
}

impl Lines {
    /// The line for `settings.path`, opened lazily on its first request. Devices on one line
    /// must agree on its settings.
    pub fn attach(&self, settings: &SerialSettings) -> Result<Arc<Line>, DriverError> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|_, line| line.strong_count() > 0);
        if let Some(line) = open.get(&settings.path).and_then(Weak::upgrade) {
            if line.settings != *settings {
                return Err(DriverError::Config(format!(
                    "serialPort {}: the line is in use at {} by other devices; every device on a \
                     line needs the same baudRate, dataBits, parity and stopBits (this one asks \
                     for {})",
                    settings.path,
                    Framing(&line.settings),
                    Framing(settings)
                )));
            }
            return Ok(line);
        }
        let line = Arc::new(Line::new(settings.clone()));
        open.insert(settings.path.clone(), Arc::downgrade(&line));
        Ok(line)
    }
}

/// One serial line and the one-request-at-a-time access to it.
#[derive(Debug)]
pub struct Line {
    settings: SerialSettings,
    bus: SharedBus<Port>,
}

impl Line {
    fn new(settings: SerialSettings) -> Line {
        let gap = frame_gap(&settings);
        let port = Port {
            settings: settings.clone(),
            ctx: None,
            flush: Arc::new(AtomicBool::new(false)),
            in_flight: false,
        };
        Line {
            // The bus's own timeout is unused: each device brings its own.
            bus: SharedBus::new(port, crate::config::DEFAULT_TIMEOUT).with_gap(gap),
            settings,
        }
    }

    /// The serial device path.
    pub fn name(&self) -> &str {
        &self.settings.path
    }

    /// Waits for the line (in arrival order) and the inter-frame gap.
    pub async fn lock(&self) -> BusGuard<'_, Port> {
        self.bus.lock().await
    }
}

/// The serial port of a line, opened on first use and reopened after an I/O error.
pub struct Port {
    settings: SerialSettings,
    ctx: Option<Context>,
    /// Asks the port to drop unread input before it sends the next request.
    flush: Arc<AtomicBool>,
    in_flight: bool,
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("path", &self.settings.path)
            .field("open", &self.ctx.is_some())
            .finish()
    }
}

impl Port {
    /// Sends one request to `unit` and waits at most `limit` for the answer.
    pub async fn call(
        &mut self,
        unit: u8,
        request: Request<'static>,
        limit: Duration,
    ) -> Result<Response, TransportError> {
        if self.in_flight {
            // The previous request was abandoned midway: its answer may still come.
            self.flush.store(true, Ordering::Release);
        }
        if self.ctx.is_none() {
            let serial = open_serial(&self.settings).map_err(TransportError::Io)?;
            let port = FlushOnWrite {
                inner: serial,
                flush: Arc::clone(&self.flush),
            };
            self.ctx = Some(tokio_modbus::client::rtu::attach_slave(port, Slave(unit)));
            tracing::debug!(path = %self.settings.path, "modbus rtu line opened");
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(TransportError::Io(io::ErrorKind::NotConnected.into()));
        };
        select_unit(ctx, unit);
        self.in_flight = true;
        let result = exchange(ctx, request, limit).await;
        self.in_flight = false;
        match &result {
            Err(TransportError::Io(_)) => self.ctx = None,
            Err(TransportError::Timeout(_) | TransportError::Protocol(_)) => {
                self.flush.store(true, Ordering::Release);
            }
            _ => {}
        }
        result
    }
}

/// Opens a serial port with the line's settings.
pub fn open_serial(settings: &SerialSettings) -> io::Result<SerialStream> {
    let data_bits = match settings.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let builder = tokio_serial::new(&settings.path, settings.baud_rate)
        .data_bits(data_bits)
        .parity(match settings.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(if settings.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        });
    SerialStream::open(&builder).map_err(|err| {
        let err = io::Error::from(err);
        io::Error::new(err.kind(), format!("cannot open {}: {err}", settings.path))
    })
}

/// The silent interval the Modbus RTU spec requires between frames: 3.5 character times, or
/// a fixed 1.75 ms above 19200 baud.
pub fn frame_gap(settings: &SerialSettings) -> Duration {
    if settings.baud_rate > 19_200 {
        return Duration::from_micros(1750);
    }
    let parity = u32::from(settings.parity != Parity::None);
    let bits_per_char = 1 + u32::from(settings.data_bits) + parity + u32::from(settings.stop_bits);
    Duration::from_secs_f64(3.5 * f64::from(bits_per_char) / f64::from(settings.baud_rate))
}

/// `9600 8N1` style.
struct Framing<'a>(&'a SerialSettings);

impl fmt::Display for Framing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parity = match self.0.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        write!(
            f,
            "{} {}{parity}{}",
            self.0.baud_rate, self.0.data_bits, self.0.stop_bits
        )
    }
}

/// A serial stream that drops unread input before writing, when asked to: a request is always
/// a write, so stale bytes never reach the next answer's decoder.
struct FlushOnWrite {
    inner: SerialStream,
    flush: Arc<AtomicBool>,
}

impl AsyncRead for FlushOnWrite {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlushOnWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.flush.swap(false, Ordering::AcqRel)
            && let Err(err) = self.inner.clear(ClearBuffer::Input)
        {
            tracing::debug!(error = %err, "cannot flush the serial input buffer");
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(path: &str, baud_rate: u32) -> SerialSettings {
        SerialSettings {
            path: path.into(),
            baud_rate,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        }
    }

    #[test]
    fn devices_on_one_port_share_one_line_with_one_framing() {
        let lines = Lines::default();
        let a = lines.attach(&serial("/dev/ttyX", 9600)).expect("first");
        let b = lines
            .attach(&serial("/dev/ttyX", 9600))
            .expect("same settings");
        assert!(Arc::ptr_eq(&a, &b));
        let other = lines
            .attach(&serial("/dev/ttyY", 19200))
            .expect("other port");
        assert!(!Arc::ptr_eq(&a, &other));
        let err = lines
            .attach(&serial("/dev/ttyX", 19200))
            .expect_err("different speed");
        assert_eq!(
            err.to_string(),
            "configuration error: serialPort /dev/ttyX: the line is in use at 9600 8N1 by \
             other devices; every device on a line needs the same baudRate, dataBits, parity \
             and stopBits (this one asks for 19200 8N1)"
        );
        // Once every device has left, the port may be reopened with other settings.
        drop((a, b));
        assert!(lines.attach(&serial("/dev/ttyX", 19200)).is_ok());
    }

    #[test]
    fn the_frame_gap_is_three_and_a_half_characters() {
        // 9600 8N1: 10 bits per character, 3.5 characters = 3.646 ms.
        let gap = frame_gap(&serial("/dev/x", 9600));
        assert!((gap.as_secs_f64() - 0.003_645_8).abs() < 1e-6, "{gap:?}");
        let mut even = serial("/dev/x", 9600);
        even.parity = Parity::Even;
        assert!(frame_gap(&even) > gap);
        assert_eq!(
            frame_gap(&serial("/dev/x", 115_200)),
            Duration::from_micros(1750)
        );
    }

    #[tokio::test]
    async fn a_missing_port_is_an_io_error_naming_it() {
        let lines = Lines::default();
        let line = lines
            .attach(&serial("/nonexistent/ttyZ", 9600))
            .expect("attached lazily");
        let err = line
            .lock()
            .await
            .call(1, Request::ReadCoils(0, 1), Duration::from_millis(100))
            .await
            .expect_err("no such port");
        assert!(
            matches!(&err, TransportError::Io(e) if e.to_string().contains("/nonexistent/ttyZ")),
            "{err}"
        );
    }
}
