//! What the mapper benchmarks share: running a bench on tokio, finding the mapper binary, reading a process's CPU time and resident memory from
//! `/proc`, stopping it with SIGTERM, and a guard that kills it by pid if a bench fails half-way.

#![allow(dead_code)] // Each bench uses part of it.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A number from the environment, or `default`.
pub fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| "bad stat field".to_owned())
    };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 (after pid, comm, state).
    Ok((ticks(11)? + ticks(12)?) / ticks_per_second)
}

/// Resident memory of a process, in KiB, from `/proc/PID/status`.
pub struct Memory {
    /// VmRSS: all resident pages.
    pub rss: u64,
    /// VmHWM: the peak of VmRSS.
    pub hwm: u64,
    /// RssAnon: heap and stacks, the process's own memory.
    pub anon: u64,
    /// RssFile: resident pages of the binary and libraries (shared with other processes).
    pub file: u64,
}

/// One figure of a [`Memory`].
pub type MemoryField = fn(&Memory) -> u64;

pub fn memory_kib(pid: u32) -> Result<Memory, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Kills the child by pid when the bench fails half-way.
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn terminate(child: &mut Child) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("kill -TERM failed".into());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().map_err(|e| e.to_string())? {
            return if exit.success() {
                Ok(())
            } else {
                Err(format!("the mapper exited with {exit}"))
            };
        }
        if Instant::now() > deadline {
            return Err("the mapper did not exit within 15 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `bench` on a multi-threaded tokio runtime; its error is printed and fails the process.
pub fn run<F>(bench: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    use std::process::ExitCode;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The mapper to measure: `EDGETWIN_BENCH_MAPPER`, or `edgetwin-mapper-sim` next to this bench
/// (`target/release/`); `build` is the command that makes it, for the error.
pub fn mapper_binary(build: &str) -> Result<std::path::PathBuf, String> {
    if let Some(path) = std::env::var_os("EDGETWIN_BENCH_MAPPER") {
        return Ok(std::path::PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or("the bench is not in target/release/deps")?
        .join("edgetwin-mapper-sim");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build it first with `{build}`",
            binary.display()
        ))
    }
}
