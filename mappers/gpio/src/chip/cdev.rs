//! The Linux GPIO character device (uAPI v2) through gpiocdev: any Linux board with
//! `/dev/gpiochipN`, addressed by chip and line offset.
//!
//! Active-low, bias, debounce and edge detection are the kernel's own. Before a line is
//! requested the chip is asked whether the line exists and who holds it, so that the common
//! mistakes get a clear message (`gpiochip0 has no line 70 (it has 54: 0–53)`, `line 17 of
//! /dev/gpiochip0 is busy (held by sysfs)`).
//!
//! A line the kernel still reports as an output when it is requested (left so by the previous
//! holder, e.g. a mapper that was restarted) is requested as it is, read, and only then made an
//! output at the level it had, so that a restart does not reset the pin. Whether a released
//! line keeps driving is up to the chip's driver: many do, some turn the pin into an input on
//! release, and then the restarted mapper finds it off and writes the desired value again.
//!
//! Not exercised in CI: this machine has no GPIO subsystem. The hardware tests at the end of
//! this file are `#[ignore]`d and run against a real chip with
//! `EDGETWIN_GPIO_CHIP=/dev/gpiochipN cargo nextest run -p edgetwin-mapper-gpio --run-ignored only`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpiocdev::line::{Bias as CdevBias, EdgeDetection, Value};
use gpiocdev::request::Builder;
use gpiocdev::tokio::AsyncRequest;
use gpiocdev::{Chip, Request};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::{
    Bias, EdgeEvent, EdgeSender, EdgeStream, GpioChip, GpioError, InputLine, InputRequest,
    LineOptions, OutputLine, OutputRequest,
};

/// `ENOENT`: the chip device does not exist.
const ENOENT: i32 = 2;
/// `EACCES`: no permission on the chip device.
const EACCES: i32 = 13;

/// A GPIO chip character device.
#[derive(Debug, Clone)]
pub struct CdevChip {
    path: PathBuf,
    display: String,
}

impl CdevChip {
    /// The chip `chip`: a name (`gpiochip0`, looked up in `/dev`) or a path.
    pub fn new(chip: &str) -> Self {
        let path = if chip.contains('/') {
            PathBuf::from(chip)
        } else {
            Path::new("/dev").join(chip)
        };
        CdevChip {
            display: path.display().to_string(),
            path,
        }
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, detail: impl std::fmt::Display) -> GpioError {
        GpioError::Io {
            chip: self.display.clone(),
            detail: detail.to_string(),
        }
    }

    fn open(&self) -> Result<Chip, GpioError> {
        Chip::from_path(&self.path).map_err(|err| match err {
            gpiocdev::Error::Os(errno) if errno.0 == ENOENT => GpioError::NoSuchChip {
                chip: self.display.clone(),
                detail: "no such device (is the GPIO character device enabled on this board?)"
                    .into(),
            },
            gpiocdev::Error::Os(errno) if errno.0 == EACCES => self.io(
                "permission denied (run as root or add the user to the group owning the device)",
            ),
            gpiocdev::Error::GpioChip(_, kind) => GpioError::NoSuchChip {
                chip: self.display.clone(),
                detail: kind.to_string(),
            },
            other => self.io(other),
        })
    }

    /// Checks that the line exists and is free, for a clear message instead of `EINVAL` or
    /// `EBUSY`; returns whether the kernel reports it as an output.
    fn check_line(&self, line: u32) -> Result<bool, GpioError> {
        let chip = self.open()?;
        let lines = chip.info().map_err(|e| self.io(e))?.num_lines;
        if line >= lines {
            return Err(GpioError::NoSuchLine {
                chip: self.display.clone(),
                line,
                lines: Some(lines),
            });
        }
        let info = chip.line_info(line).map_err(|e| self.io(e))?;
        if info.used {
            return Err(GpioError::Busy {
                chip: self.display.clone(),
                line,
                holder: (!info.consumer.is_empty()).then_some(info.consumer),
            });
        }
        Ok(info.direction == gpiocdev::line::Direction::Output)
    }

    fn builder(&self, options: &LineOptions) -> Builder {
        let mut builder = Request::builder();
        builder
            .on_chip(&self.path)
            .with_consumer(options.consumer.as_str())
            .with_line(options.line);
        if options.active_low {
            builder.as_active_low();
        }
        if let Some(bias) = options.bias {
            builder.with_bias(match bias {
                Bias::PullUp => CdevBias::PullUp,
                Bias::PullDown => CdevBias::PullDown,
                Bias::Disabled => CdevBias::Disabled,
            });
        }
        builder
    }

    fn request(&self, builder: &mut Builder, line: u32) -> Result<Request, GpioError> {
        builder
            .request()
            .map_err(|e| self.io(format!("requesting line {line}: {e}")))
    }
}

impl GpioChip for CdevChip {
    fn name(&self) -> &str {
        &self.display
    }

    fn request_output(&self, request: &OutputRequest) -> Result<Box<dyn OutputLine>, GpioError> {
        let line = request.options.line;
        let mut builder = self.builder(&request.options);
        let held = if self.check_line(line)? {
            // Still an output: take it as it is, then keep the level it drives.
            builder.as_is();
            let held = self.request(&mut builder, line)?;
            let level = held
                .value(line)
                .map_err(|e| self.io(format!("reading line {line}: {e}")))?;
            let mut config = held.config();
            config.as_output(level);
            held.reconfigure(&config)
                .map_err(|e| self.io(format!("keeping line {line} an output: {e}")))?;
            held
        } else {
            builder.as_output(Value::from(request.initial));
            self.request(&mut builder, line)?
        };
        Ok(Box::new(CdevOutput {
            chip: self.clone(),
            request: held,
            line,
        }))
    }

    fn request_input(&self, request: &InputRequest) -> Result<Box<dyn InputLine>, GpioError> {
        let line = request.options.line;
        // Edge events are read through tokio's reactor; check before gpiocdev would panic.
        let runtime = match request.edges {
            true => Some(Handle::try_current().map_err(|_| {
                GpioError::Unsupported("watching GPIO edges needs a tokio runtime".into())
            })?),
            false => None,
        };
        self.check_line(line)?;
        let mut builder = self.builder(&request.options);
        builder.as_input();
        if let Some(period) = request.debounce {
            builder.with_debounce_period(period);
        }
        if request.edges {
            builder.with_edge_detection(EdgeDetection::BothEdges);
        }
        let held = self.request(&mut builder, line)?;
        let input = match runtime {
            None => CdevInput {
                chip: self.clone(),
                line,
                held: Held::Plain(held),
                edges: None,
            },
            Some(runtime) => {
                // `try_current` succeeded: we are inside the runtime, as AsyncRequest needs.
                let held = Arc::new(AsyncRequest::new(held));
                let (tx, stream) = EdgeStream::channel();
                let watcher = runtime.spawn(watch(Arc::clone(&held), tx, self.clone(), line));
                CdevInput {
                    chip: self.clone(),
                    line,
                    held: Held::Watched(held, watcher),
                    edges: Some(stream),
                }
            }
        };
        Ok(Box::new(input))
    }
}

/// Reads edge events until the reader or the line goes; after each one, reads the level, so
/// that an event lost to a full buffer cannot leave a stale level behind.
async fn watch(request: Arc<AsyncRequest>, tx: EdgeSender, chip: CdevChip, line: u32) {
    loop {
        tokio::select! {
            () = tx.closed() => return,
            event = request.read_edge_event() => {
                let level = event
                    .and_then(|_| AsRef::<Request>::as_ref(&*request).lone_value())
                    .map(|value| EdgeEvent { active: value == Value::Active })
                    .map_err(|e| chip.io(format!("watching line {line}: {e}")));
                let failed = level.is_err();
                if !tx.send(level) || failed {
                    return;
                }
            }
        }
    }
}

#[derive(Debug)]
enum Held {
    Plain(Request),
    /// Shared with the edge watcher, which is stopped when the line is dropped.
    Watched(Arc<AsyncRequest>, JoinHandle<()>),
}

impl Held {
    fn request(&self) -> &Request {
        match self {
            Held::Plain(request) => request,
            Held::Watched(request, _) => request.as_ref().as_ref(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Held::Watched(_, watcher) = self {
            watcher.abort();
        }
    }
}

#[derive(Debug)]
struct CdevOutput {
    chip: CdevChip,
    request: Request,
    line: u32,
}

impl OutputLine for CdevOutput {
    fn set(&mut self, active: bool) -> Result<(), GpioError> {
        self.request
            .set_lone_value(Value::from(active))
            .map_err(|e| self.chip.io(format!("setting line {}: {e}", self.line)))
    }

    fn get(&self) -> Result<bool, GpioError> {
        self.request
            .lone_value()
            .map(|v| v == Value::Active)
            .map_err(|e| self.chip.io(format!("reading line {}: {e}", self.line)))
    }
}

#[derive(Debug)]
struct CdevInput {
    chip: CdevChip,
    line: u32,
    held: Held,
    edges: Option<EdgeStream>,
}

impl InputLine for CdevInput {
    fn get(&self) -> Result<bool, GpioError> {
        self.held
            .request()
            .lone_value()
            .map(|v| v == Value::Active)
            .map_err(|e| self.chip.io(format!("reading line {}: {e}", self.line)))
    }

    fn edges(&mut self) -> Option<EdgeStream> {
        self.edges.take()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn output(line: u32) -> OutputRequest {
        OutputRequest {
            options: LineOptions {
                line,
                active_low: false,
                bias: None,
                consumer: "edgetwin-test".into(),
            },
            initial: false,
        }
    }

    #[test]
    fn chip_names_resolve_under_dev_and_paths_stay() {
        assert_eq!(
            CdevChip::new("gpiochip3").path(),
            Path::new("/dev/gpiochip3")
        );
        assert_eq!(
            CdevChip::new("/dev/gpiochip4").path(),
            Path::new("/dev/gpiochip4")
        );
        assert_eq!(CdevChip::new("gpiochip0").name(), "/dev/gpiochip0");
    }

    #[test]
    fn a_missing_chip_is_a_clear_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("gpiochip9");
        let chip = CdevChip::new(missing.to_str().expect("utf-8 path"));
        let err = chip.request_output(&output(0)).err().expect("no such chip");
        assert!(matches!(err, GpioError::NoSuchChip { .. }), "{err:?}");
        assert!(err.to_string().contains("gpiochip9"), "{err}");
        assert!(
            err.is_transient(),
            "a chip may appear later (module loaded)"
        );
    }

    #[test]
    fn a_file_that_is_not_a_chip_is_refused() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let chip = CdevChip::new(file.path().to_str().expect("utf-8 path"));
        let err = chip.request_output(&output(0)).err().expect("not a chip");
        assert!(
            err.to_string().contains("is not a character device"),
            "{err}"
        );
    }

    #[test]
    fn watching_edges_outside_a_runtime_is_refused_before_touching_the_chip() {
        let chip = CdevChip::new("/nonexistent/gpiochip0");
        let request = InputRequest {
            options: output(0).options,
            debounce: None,
            edges: true,
        };
        let err = chip.request_input(&request).err().expect("no runtime");
        assert!(matches!(err, GpioError::Unsupported(m) if m.contains("tokio runtime")));
    }

    /// The chip under `EDGETWIN_GPIO_CHIP` and the line under `EDGETWIN_GPIO_LINE` (default 0),
    /// or `None` (and a note) when the variable is unset.
    fn hardware() -> Option<(CdevChip, u32)> {
        let Ok(chip) = std::env::var("EDGETWIN_GPIO_CHIP") else {
            println!("skipped: set EDGETWIN_GPIO_CHIP=/dev/gpiochipN to test a real chip");
            return None;
        };
        let line = std::env::var("EDGETWIN_GPIO_LINE")
            .ok()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        Some((CdevChip::new(&chip), line))
    }

    #[test]
    #[ignore = "needs a GPIO chip: EDGETWIN_GPIO_CHIP=/dev/gpiochipN"]
    fn hardware_output_sets_and_reads_back() {
        let Some((chip, line)) = hardware() else {
            return;
        };
        let mut out = chip.request_output(&output(line)).expect("line requested");
        for active in [true, false, true, false] {
            out.set(active).expect("set");
            assert_eq!(out.get().expect("get"), active);
        }
        let busy = chip.request_output(&output(line)).err();
        assert!(matches!(busy, Some(GpioError::Busy { .. })), "{busy:?}");
    }

    #[tokio::test]
    #[ignore = "needs a GPIO chip: EDGETWIN_GPIO_CHIP=/dev/gpiochipN"]
    async fn hardware_input_with_edges_and_debounce_is_requested() {
        let Some((chip, line)) = hardware() else {
            return;
        };
        let request = InputRequest {
            options: LineOptions {
                line,
                active_low: true,
                bias: Some(Bias::PullUp),
                consumer: "edgetwin-test".into(),
            },
            debounce: Some(Duration::from_millis(10)),
            edges: true,
        };
        let mut input = chip.request_input(&request).expect("line requested");
        assert!(input.edges().is_some());
        input.get().expect("level read");
    }
}
