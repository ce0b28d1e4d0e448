//! A child process of the stack: its stderr appended to a log file, SIGKILLed by pid and reaped
//! when dropped (also when a scenario panics), and the signals the scenarios send it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// One running child.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `command` as `name`: stdin closed, stdout to `stdout` (or nowhere), stderr
    /// appended to `log`.
    ///
    /// # Panics
    /// When the log file cannot be opened or the process cannot start.
    pub fn spawn(name: &str, command: &mut Command, log: &Path, stdout: Option<&Path>) -> Proc {
        let append = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let out = stdout.map_or_else(Stdio::null, |path| Stdio::from(append(path)));
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(append(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start ({command:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, SIGTERM, SIGKILL) to the process.
    ///
    /// # Panics
    /// When the signal cannot be sent (the process is gone).
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .unwrap_or_else(|| panic!("{}: pid {} out of range", self.name, self.child.id()));
        kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("{}: sending {signal:?} failed: {e}", self.name));
    }

    /// SIGKILL, then reaps it: nothing of it runs when this returns.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `within` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Prints the tail of each log, for a failed scenario.
pub fn print_logs(logs: &[PathBuf]) {
    for log in logs {
        eprintln!("==== {} (last lines) ====", log.display());
        for line in tail(log, 80) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_stopped_continued_and_killed_by_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("sleep.log");
        let mut proc = Proc::spawn("sleep", Command::new("sleep").arg("30"), &log, None);
        assert!(proc.is_running());
        proc.signal(Signal::STOP);
        proc.signal(Signal::CONT);
        assert!(proc.is_running());
        proc.kill();
        assert!(!proc.is_running());
    }

    #[test]
    fn stderr_is_appended_across_starts_and_tailed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("sh.log");
        for n in 0..2 {
            let mut proc = Proc::spawn(
                "sh",
                Command::new("sh").args(["-c", &format!("echo start {n} >&2")]),
                &log,
                None,
            );
            assert!(proc.wait_exit(Duration::from_secs(10)).is_some());
        }
        assert_eq!(tail(&log, 1), ["start 1"]);
        assert_eq!(tail(&log, 5), ["start 0", "start 1"]);
    }
}
