//! Database servers and receivers written by others, started by a test as real processes on free
//! loopback ports with their data under a temporary directory: Debian's `redis-server` and
//! `mariadbd`, and an OTLP/HTTP receiver in Python that decodes with the `opentelemetry-proto`
//! package (`peers/otlp_receiver.py`, run in the peers venv).
//!
//! Each is killed by pid (SIGKILL) and its directory removed when dropped, also on panic. A
//! missing program fails the test when peers are required and skips it otherwise
//! ([`crate::peers::missing`]): the `start` functions then return `None`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::peers;

/// How long a server gets to accept connections.
const STARTUP: Duration = Duration::from_secs(60);

/// A directory under the system's temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named after `what`, this process and a counter.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("edgetwin-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    crate::broker::free_port().unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Waits until `port` on 127.0.0.1 accepts a connection or `child` exits.
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < STARTUP {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} exited ({status}) before listening:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "{what} did not listen on port {port} within {STARTUP:?}"
    ))
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Debian's `redis-server` with a password, no persistence, on a free port.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    server: PathBuf,
    cli: PathBuf,
}

impl RedisServer {
    /// The password every client must give.
    pub const PASSWORD: &'static str = "edgetwin-test-secret";

    /// Starts a server; `None` when `redis-server` is missing and peers are not required.
    ///
    /// # Panics
    /// When the program is missing and peers are required, or the server does not start.
    pub fn start(test: &str) -> Option<RedisServer> {
        // Both from Debian's redis-server package (redis-cli through redis-tools).
        let server = peers::program(test, "redis-server")?;
        let cli = peers::program(test, "redis-cli")?;
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: TempDir::new("redis"),
            server,
            cli,
        };
        server.restart();
        Some(server)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): clients see the connection drop.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        let log = self.dir.path().join("redis.log");
        let mut child = Command::new(&self.server)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--requirepass",
                Self::PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let ready = wait_listening(&mut child, self.port, "redis-server", &log);
        self.child = Some(child);
        if let Err(err) = ready {
            panic!("{err}");
        }
    }

    /// Runs `redis-cli` (the server's own client) with `args`; its standard output.
    ///
    /// # Panics
    /// When `redis-cli` cannot run.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
            ])
            .args(["-a", Self::PASSWORD])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Debian's MariaDB server (`mariadb-install-db`, then `mariadbd`) with a database `edgetwin`
/// and a user with a password, on a free port and a socket in its directory.
#[derive(Debug)]
pub struct MariaDb {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    server: PathBuf,
    client: PathBuf,
}

impl MariaDb {
    /// The database the test user may use.
    pub const DATABASE: &'static str = "edgetwin";
    /// The test user.
    pub const USER: &'static str = "mapper";
    /// The test user's password.
    pub const PASSWORD: &'static str = "edgetwin-test-secret";

    /// Initialises a data directory and starts a server; `None` when MariaDB is missing and
    /// peers are not required.
    ///
    /// # Panics
    /// When it is missing and peers are required, or the server does not start.
    pub fn start(test: &str) -> Option<MariaDb> {
        // All three from Debian's mariadb-server package (the client through its dependencies).
        let server = peers::program(test, "mariadbd")?;
        let install = peers::program(test, "mariadb-install-db")?;
        let client = peers::program(test, "mariadb")?;
        let dir = TempDir::new("mariadb");
        let data = dir.path().join("data");
        let out = Command::new(install)
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let init = dir.path().join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE DATABASE IF NOT EXISTS {db};\n\
                 CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{pw}';\n\
                 CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{pw}';\n\
                 GRANT ALL ON {db}.* TO '{user}'@'127.0.0.1';\n\
                 GRANT ALL ON {db}.* TO '{user}'@'localhost';\n",
                db = Self::DATABASE,
                user = Self::USER,
                pw = Self::PASSWORD
            ),
        )
        .expect("init file written");
        let mut server = MariaDb {
            child: None,
            port: free_port(),
            dir,
            server,
            client,
        };
        server.restart();
        Some(server)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts the server again on the same port and data (after [`MariaDb::kill`]).
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        let dir = self.dir.path();
        let log = dir.join("mariadb.err");
        let mut child = Command::new(&self.server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("mysql.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--init-file={}", dir.join("init.sql").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
            ])
            .args([
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--skip-log-bin",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let ready = wait_listening(&mut child, self.port, "mariadbd", &log);
        self.child = Some(child);
        if let Err(err) = ready {
            panic!("{err}");
        }
    }

    /// Runs one query with the `mariadb` client (as root over the socket) in the test
    /// database; the rows, tab-separated, one per line.
    ///
    /// # Panics
    /// When the client cannot run or the query fails.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new(&self.client)
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mysql.sock").display()
            ))
            .args([
                "--user=root",
                "--batch",
                "--skip-column-names",
                Self::DATABASE,
                "-e",
                sql,
            ])
            .output()
            .expect("mariadb runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The OTLP/HTTP receiver: `peers/otlp_receiver.py` in the peers venv, which decodes each
/// export with the `opentelemetry-proto` package and prints one JSON line per data point.
#[derive(Debug)]
pub struct OtlpReceiver {
    child: Option<Child>,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl OtlpReceiver {
    /// Starts the receiver; `None` when the venv (or its package) is missing and peers are not
    /// required.
    ///
    /// # Panics
    /// When it is missing and peers are required, or the receiver does not start.
    pub fn start(test: &str) -> Option<OtlpReceiver> {
        let python = peers::python_with(test, "opentelemetry.proto.collector.metrics.v1")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/otlp_receiver.py");
        let port = free_port();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the OTLP receiver starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut receiver = OtlpReceiver {
            child: Some(child),
            port,
            lines,
        };
        match receiver.lines.recv_timeout(STARTUP) {
            Ok(line) if line.starts_with("READY") => Some(receiver),
            Ok(line) if line.starts_with("MISSING") => {
                kill(&mut receiver.child);
                peers::missing(test, "the opentelemetry-proto Python package", &line);
                None
            }
            other => panic!("the OTLP receiver did not start: {other:?}"),
        }
    }

    /// `http://127.0.0.1:{port}/v1/metrics`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next data point (one JSON object per line), waiting up to `timeout` (blocks the
    /// thread: async tests poll [`OtlpReceiver::try_next_point`] instead).
    pub fn next_point(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next data point received so far, if any (never blocks).
    pub fn try_next_point(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
