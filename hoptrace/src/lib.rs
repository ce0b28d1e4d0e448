//! Hop timestamps for latency work: with `EDGETWIN_TRACE_HOPS=<file>` in the environment, every
//! [`mark`] appends one line `<µs since the Unix epoch> <pid> <hop>` to that file. Without the
//! variable a mark costs one load of an initialised `OnceLock`.
//!
//! The clock is the wall clock (the one clock every process on a machine shares without `unsafe`
//! code), so the lines of the bench, `edgetwin up` and the mapper line up in one file; a clock step
//! during a run would show as an outlier. Each line is one `write` on a file opened for appending,
//! so lines of concurrent writers do not interleave. Meant for benchmarks, not for production:
//! a mark is a system call.

use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming the file the marks go to.
pub const TRACE_HOPS_ENV: &str = "EDGETWIN_TRACE_HOPS";

static SINK: OnceLock<Option<Mutex<File>>> = OnceLock::new();

fn sink() -> Option<&'static Mutex<File>> {
    SINK.get_or_init(|| {
        let path = std::env::var_os(TRACE_HOPS_ENV)?;
        match File::options().create(true).append(true).open(&path) {
            Ok(file) => Some(Mutex::new(file)),
            Err(error) => {
                tracing::warn!(path = %path.to_string_lossy(), %error, "cannot open the hop trace file; hops are not traced");
                None
            }
        }
    })
    .as_ref()
}

/// Whether marks are written (the environment variable is set and its file opened).
pub fn enabled() -> bool {
    sink().is_some()
}

/// Records that `hop` happened now.
pub fn mark(hop: &str) {
    if let Some(sink) = sink() {
        write_line(sink, hop);
    }
}

/// Records that the hop `scope.hop` happened now (for code shared by several places, such as
/// both ends of the tunnel).
pub fn mark_in(scope: &str, hop: &str) {
    if let Some(sink) = sink() {
        write_line(sink, &format!("{scope}.{hop}"));
    }
}

fn write_line(sink: &Mutex<File>, hop: &str) {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    let line = format!("{micros} {} {hop}\n", std::process::id());
    let mut file = sink.lock().unwrap_or_else(PoisonError::into_inner);
    // A lost mark only makes the trace incomplete; the analysis skips flips that lack one.
    let _ = file.write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_append_one_line_each_with_time_pid_and_hop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hops");
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        let sink = Mutex::new(file);
        write_line(&sink, "a.b");
        write_line(&sink, "c");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0][2], "a.b");
        assert_eq!(lines[1][2], "c");
        assert_eq!(lines[0][1], std::process::id().to_string());
        let first: u128 = lines[0][0].parse().expect("micros");
        let second: u128 = lines[1][0].parse().expect("micros");
        assert!(first > 0 && second >= first);
    }
}
