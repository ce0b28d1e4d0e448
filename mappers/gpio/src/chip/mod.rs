//! The seam between the mapper and a GPIO controller: request a line as an output or an input
//! (with its options), set and get its level, and watch an input's edges.
//!
//! Levels on this seam are *logical*: `true` means active. A line requested `active_low` is
//! active when its pin is low; every backend applies the inversion, so the rest of the mapper
//! never sees a physical level. Edge events follow the Linux GPIO uAPI: they are logical too (a
//! "rising" edge of an active-low line is its pin going low).
//!
//! Three backends implement the seam: [`sim::SimChip`] (in memory, always built),
//! `cdev::CdevChip` (the Linux GPIO character device, feature `cdev`) and `rpi::RpiChip`
//! (a Raspberry Pi through rppal with BCM numbering, feature `rpi`). A line is released when its
//! handle is dropped.

#[cfg(feature = "cdev")]
pub mod cdev;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod sim;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A line's internal pull resistor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Bias {
    /// Pulled up: an undriven input reads high.
    PullUp,
    /// Pulled down: an undriven input reads low.
    PullDown,
    /// No pull resistor.
    Disabled,
}

impl fmt::Display for Bias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bias::PullUp => "pullUp",
            Bias::PullDown => "pullDown",
            Bias::Disabled => "disabled",
        })
    }
}

/// What every line request says, whatever its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOptions {
    /// The line offset on the chip (on a Raspberry Pi: the BCM GPIO number).
    pub line: u32,
    /// Active when the pin is low.
    pub active_low: bool,
    /// The pull resistor; `None` leaves it as it is.
    pub bias: Option<Bias>,
    /// Who holds the line, shown by `gpioinfo` (e.g. `edgetwin:default/traffic-light:red`).
    pub consumer: String,
}

/// A request for an output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRequest {
    /// The line and its options.
    pub options: LineOptions,
    /// The logical level the line is driven to as soon as it is requested.
    pub initial: bool,
}

/// A request for an input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRequest {
    /// The line and its options.
    pub options: LineOptions,
    /// Report an edge only once the line has been stable this long (and read the stable level).
    pub debounce: Option<Duration>,
    /// Watch both edges ([`InputLine::edges`]).
    pub edges: bool,
}

/// An edge on a watched input: the line's logical level after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeEvent {
    /// `true` after a rising edge (the line became active), `false` after a falling one.
    pub active: bool,
}

/// How many edge events may wait for the reader; more are dropped like the kernel drops them
/// when its event buffer overflows. Readers should re-read the level when they need it exact.
pub const EDGE_BUFFER: usize = 64;

/// The edge events of one input line; ends when the line is released or its watcher fails.
#[derive(Debug)]
pub struct EdgeStream {
    rx: mpsc::Receiver<Result<EdgeEvent, GpioError>>,
}

/// The sending half of an [`EdgeStream`], held by a backend's watcher.
#[derive(Debug, Clone)]
pub struct EdgeSender {
    tx: mpsc::Sender<Result<EdgeEvent, GpioError>>,
}

impl EdgeStream {
    /// A stream and the sender a backend feeds it from.
    pub fn channel() -> (EdgeSender, EdgeStream) {
        let (tx, rx) = mpsc::channel(EDGE_BUFFER);
        (EdgeSender { tx }, EdgeStream { rx })
    }

    /// The next event, or `None` once the line is gone.
    pub async fn next(&mut self) -> Option<Result<EdgeEvent, GpioError>> {
        self.rx.recv().await
    }
}

impl EdgeSender {
    /// Queues an event without waiting; returns `false` when the reader is gone. An event that
    /// finds the buffer full is dropped (the reader still has older events to wake it).
    pub fn send(&self, event: Result<EdgeEvent, GpioError>) -> bool {
        match self.tx.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the reader has gone away (a watcher stops then).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// A GPIO controller: hands out lines. Shared by every device a backend serves.
pub trait GpioChip: Send + Sync {
    /// The chip's name in logs and errors (`/dev/gpiochip0`, `rpi (BCM)`, `sim:gpiochip0`).
    fn name(&self) -> &str;

    /// Requests a line as an output, driven to `request.initial` at once.
    fn request_output(&self, request: &OutputRequest) -> Result<Box<dyn OutputLine>, GpioError>;

    /// Requests a line as an input.
    fn request_input(&self, request: &InputRequest) -> Result<Box<dyn InputLine>, GpioError>;
}

/// A requested output line; dropping it releases the line.
pub trait OutputLine: Send {
    /// Drives the line to a logical level.
    fn set(&mut self, active: bool) -> Result<(), GpioError>;

    /// The logical level the line is driven to.
    fn get(&self) -> Result<bool, GpioError>;
}

/// A requested input line; dropping it releases the line and ends its edge stream.
pub trait InputLine: Send {
    /// The line's logical level (the debounced one when a debounce period is set).
    fn get(&self) -> Result<bool, GpioError>;

    /// The line's edge events. `Some` once, for a line requested with `edges: true`.
    fn edges(&mut self) -> Option<EdgeStream>;
}

/// Why a GPIO operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpioError {
    /// The backend cannot work on this machine (not a Raspberry Pi, no GPIO subsystem).
    #[error("{0}")]
    Unavailable(String),
    /// The chip does not exist (yet).
    #[error("GPIO chip {chip} not found: {detail}")]
    NoSuchChip {
        /// The chip as configured.
        chip: String,
        /// What the system said.
        detail: String,
    },
    /// The chip has no such line.
    #[error("GPIO chip {chip} has no line {line}{}", lines.map(|n| format!(" (it has {n}: 0–{})", n.saturating_sub(1))).unwrap_or_default())]
    NoSuchLine {
        /// The chip.
        chip: String,
        /// The requested line.
        line: u32,
        /// How many lines the chip has, when known.
        lines: Option<u32>,
    },
    /// Someone else holds the line (another device, another process).
    #[error("line {line} of GPIO chip {chip} is busy{}", holder.as_ref().map(|h| format!(" (held by {h})")).unwrap_or_default())]
    Busy {
        /// The chip.
        chip: String,
        /// The line.
        line: u32,
        /// Who holds it, when known.
        holder: Option<String>,
    },
    /// The backend or chip does not support an option of the request.
    #[error("{0}")]
    Unsupported(String),
    /// The operating system refused an operation.
    #[error("GPIO chip {chip}: {detail}")]
    Io {
        /// The chip.
        chip: String,
        /// What failed.
        detail: String,
    },
}

impl GpioError {
    /// Whether the failure may go away by itself (a busy line, a chip not there yet, an I/O
    /// error), as opposed to a configuration that can never work.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GpioError::NoSuchChip { .. } | GpioError::Busy { .. } | GpioError::Io { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_chip_and_line() {
        let no_line = GpioError::NoSuchLine {
            chip: "sim:gpiochip0".into(),
            line: 70,
            lines: Some(64),
        };
        assert_eq!(
            no_line.to_string(),
            "GPIO chip sim:gpiochip0 has no line 70 (it has 64: 0–63)"
        );
        let busy = GpioError::Busy {
            chip: "/dev/gpiochip0".into(),
            line: 17,
            holder: Some("edgetwin:default/lamp:power".into()),
        };
        assert_eq!(
            busy.to_string(),
            "line 17 of GPIO chip /dev/gpiochip0 is busy (held by edgetwin:default/lamp:power)"
        );
        assert!(busy.is_transient());
        assert!(!no_line.is_transient());
        assert!(!GpioError::Unavailable("not a Raspberry Pi".into()).is_transient());
    }

    #[tokio::test]
    async fn edge_stream_drops_events_when_full_and_ends_when_the_sender_goes() {
        let (tx, mut rx) = EdgeStream::channel();
        for i in 0..EDGE_BUFFER + 10 {
            assert!(tx.send(Ok(EdgeEvent { active: i % 2 == 0 })));
        }
        let mut received = 0;
        drop(tx);
        while let Some(event) = rx.next().await {
            assert!(event.is_ok());
            received += 1;
        }
        assert_eq!(received, EDGE_BUFFER, "overflowing events are dropped");
    }

    #[test]
    fn sender_notices_a_closed_stream() {
        let (tx, rx) = EdgeStream::channel();
        drop(rx);
        assert!(tx.is_closed());
        assert!(!tx.send(Ok(EdgeEvent { active: true })));
    }
}
