//! `edgetwin cloud` under `ulimit -n 256` with 300 idle dashboard event streams open: the
//! registry API still answers `edgetwin ctl`, the log stays small, and once the streams close a
//! new one is served. Without connection caps the streams took every descriptor and `ctl`
//! hung.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgetwin_testkit::free_port;

/// The descriptor limit the cloud runs under.
const DESCRIPTORS: u32 = 256;
/// Idle event streams opened against it (more than it has descriptors).
const STREAMS: usize = 300;
/// How long a step may take (generous: CI shares 2 cores).
const WAIT: Duration = Duration::from_secs(30);
/// The most log the cloud may write during the flood (an accept loop logging every failed
/// accept wrote hundreds of megabytes).
const MAX_LOG_BYTES: u64 = 256 * 1024;

/// A child process, SIGKILLed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn edgetwin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgetwin"));
    for var in ["EDGETWIN_SERVER", "EDGETWIN_TOKEN", "EDGETWIN_DATA_DIR"] {
        command.env_remove(var);
    }
    command
}

/// `edgetwin cloud` under `ulimit -n DESCRIPTORS` (soft and hard), logging to `log`.
fn start_cloud(root: &Path, log: &Path) -> (Proc, PathBuf) {
    let dir = root.join("cloud");
    std::fs::create_dir_all(&dir).expect("cloud dir");
    let tunnel = format!("127.0.0.1:{}", free_port().expect("port"));
    let config = root.join("cloud.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {tunnel}\ninsecure: true\ndataDir: {}\nregistry:\n  embedded:\n    apiListen: 127.0.0.1:0\n",
            dir.display()
        ),
    )
    .expect("config");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {DESCRIPTORS} && exec \"$0\" cloud -c \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_edgetwin"))
        .arg(&config)
        .env_remove("EDGETWIN_DATA_DIR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawns sh");
    let proc = Proc(child);
    let url_file = dir.join("registry.url");
    let deadline = Instant::now() + WAIT;
    while !url_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the cloud did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, dir)
}

fn api_addr(dir: &Path) -> SocketAddr {
    let url = std::fs::read_to_string(dir.join("registry.url")).expect("registry.url");
    url.trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("host:port in registry.url")
}

/// `edgetwin ctl get devices`, killed when it takes longer than [`WAIT`]; `Err` says why.
fn ctl_get_devices(dir: &Path) -> Result<(), String> {
    let mut child = Proc(
        edgetwin()
            .arg("ctl")
            .arg("--data-dir")
            .arg(dir)
            .args(["get", "devices"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs edgetwin ctl"),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.0.try_wait().expect("wait for ctl") {
            if status.success() {
                return Ok(());
            }
            let mut stderr = String::new();
            if let Some(mut pipe) = child.0.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(format!("ctl failed ({status}): {stderr}"));
        }
        if Instant::now() > deadline {
            return Err(format!("ctl did not answer within {WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens an event stream and sends its request, never reading the answer.
fn idle_stream(api: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(5)).ok()?;
    stream
        .write_all(b"GET /dashboard/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .ok()?;
    Some(stream)
}

/// The status code of the first response on `stream`.
fn status_of(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("a response");
    String::from_utf8_lossy(&head[9..12]).into_owned()
}

#[test]
fn idle_event_streams_under_a_low_descriptor_limit_starve_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let log = root.path().join("cloud.log");
    let (_cloud, dir) = start_cloud(root.path(), &log);
    let api = api_addr(&dir);
    ctl_get_devices(&dir).expect("ctl answers before the flood");

    let streams: Vec<TcpStream> = (0..STREAMS).filter_map(|_| idle_stream(api)).collect();
    let log_before = std::fs::metadata(&log).map_or(0, |m| m.len());
    let answered = ctl_get_devices(&dir);
    let log_during = std::fs::metadata(&log).map_or(0, |m| m.len()) - log_before;
    answered.unwrap_or_else(|why| {
        panic!(
            "with {} idle event streams open: {why}\n{}",
            streams.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(
        log_during <= MAX_LOG_BYTES,
        "the flood wrote {log_during} bytes of log"
    );

    drop(streams);
    // The streams' slots come back: a new stream is served.
    let deadline = Instant::now() + WAIT;
    loop {
        let stream = idle_stream(api).expect("connects");
        let status = status_of(stream);
        if status == "200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a new event stream is still refused ({status}) after the others closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
