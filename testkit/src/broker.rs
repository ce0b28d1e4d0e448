//! Brokers for tests: rumqttd in this process (the broker the edge agent embeds, vendored with
//! its `$`-topic fix) or a `mosquitto` child process, on a free loopback port.
//!
//! [`TestBroker::start`] serves clients directly. [`TestBroker::start_restartable`] can also be
//! restarted mid-test ([`TestBroker::restart`]): mosquitto is killed and started again on the
//! same port; rumqttd cannot be stopped, so clients reach it through a [`TcpProxy`] that cuts
//! every connection, refuses new ones while a **fresh** broker (no sessions, subscriptions or
//! retained messages, as after a real restart) starts, and then forwards to it on the same
//! port. A replaced rumqttd keeps its thread until the test process ends.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::peers;
use crate::proxy::TcpProxy;

/// Where Debian installs mosquitto; `EDGETWIN_MOSQUITTO` overrides it.
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// Largest packet the test brokers accept.
const MAX_PACKET_BYTES: usize = 4 << 20;

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// rumqttd in this process (what the agent embeds by default).
    Embedded,
    /// A mosquitto child process.
    Mosquitto,
}

impl BrokerKind {
    /// Both kinds, for tests parametrised over brokers.
    pub const ALL: [BrokerKind; 2] = [BrokerKind::Embedded, BrokerKind::Mosquitto];
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokerKind::Embedded => "embedded rumqttd",
            BrokerKind::Mosquitto => "mosquitto",
        })
    }
}

/// Why a test broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum TestBrokerError {
    /// The embedded broker did not accept connections in time.
    #[error("the embedded test broker did not listen on {0} within 10 s")]
    EmbeddedNotListening(SocketAddr),
    /// mosquitto could not be run (not installed? `cargo xtask test` installs it).
    #[error(
        "cannot run {program}: {source} (install mosquitto, e.g. with `cargo xtask provision`)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// File or process handling failed.
    #[error("test broker: {0}")]
    Io(#[from] std::io::Error),
    /// mosquitto started but did not listen; its log is attached.
    #[error("mosquitto did not start listening on {addr}; its log:\n{log}")]
    NotListening {
        /// The address.
        addr: SocketAddr,
        /// mosquitto's log file.
        log: String,
    },
    /// The operation needs a mosquitto broker.
    #[error("only a mosquitto test broker can be killed")]
    NotMosquitto,
    /// An embedded broker started with [`TestBroker::start`] has no proxy to restart behind.
    #[error(
        "this embedded test broker was not started restartable (TestBroker::start_restartable)"
    )]
    NotRestartable,
}

/// TLS files for a mosquitto listener.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// CA certificate that signed the server (and client) certificates.
    pub ca_file: PathBuf,
    /// The server certificate (for `127.0.0.1` / `localhost`).
    pub cert_file: PathBuf,
    /// The server key.
    pub key_file: PathBuf,
    /// Whether clients must present a certificate signed by the CA.
    pub require_client_cert: bool,
}

/// Options for a mosquitto test broker.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// Serve TLS instead of plain TCP.
    pub tls: Option<TlsMaterial>,
    /// Require this username and password (anonymous clients are refused).
    pub user: Option<(String, String)>,
}

/// A running test broker. mosquitto is killed (by pid) when this is dropped; the proxy of a
/// restartable embedded broker stops.
pub struct TestBroker {
    kind: BrokerKind,
    addr: SocketAddr,
    inner: Mutex<Inner>,
}

enum Inner {
    /// rumqttd, reached directly or (restartable) through a proxy.
    Embedded {
        proxy: Option<TcpProxy>,
    },
    Mosquitto(Mosquitto),
}

impl fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBroker")
            .field("kind", &self.kind)
            .field("addr", &self.addr)
            .finish()
    }
}

struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker of `kind` on a free loopback port; clients connect to it directly.
    pub fn start(kind: BrokerKind) -> Result<TestBroker, TestBrokerError> {
        match kind {
            BrokerKind::Embedded => Ok(TestBroker {
                kind,
                addr: start_rumqttd()?,
                inner: Mutex::new(Inner::Embedded { proxy: None }),
            }),
            BrokerKind::Mosquitto => TestBroker::mosquitto(MosquittoOptions::default()),
        }
    }

    /// Starts a broker of `kind` that [`TestBroker::restart`] can restart (an embedded one
    /// behind a proxy on the port clients use). Needs a tokio runtime.
    pub async fn start_restartable(kind: BrokerKind) -> Result<TestBroker, TestBrokerError> {
        match kind {
            BrokerKind::Embedded => {
                let proxy = TcpProxy::start(start_rumqttd()?).await?;
                Ok(TestBroker {
                    kind,
                    addr: proxy.addr(),
                    inner: Mutex::new(Inner::Embedded { proxy: Some(proxy) }),
                })
            }
            BrokerKind::Mosquitto => TestBroker::mosquitto(MosquittoOptions::default()),
        }
    }

    /// Starts mosquitto with `options` on a free loopback port.
    pub fn mosquitto(options: MosquittoOptions) -> Result<TestBroker, TestBrokerError> {
        let dir = tempfile::tempdir()?;
        let addr = loopback(free_port()?);
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        std::fs::write(&conf, mosquitto_conf(addr, &log, dir.path(), &options)?)?;
        let mut mosquitto = Mosquitto {
            child: None,
            conf,
            log,
            _dir: dir,
        };
        mosquitto.spawn(addr)?;
        Ok(TestBroker {
            kind: BrokerKind::Mosquitto,
            addr,
            inner: Mutex::new(Inner::Mosquitto(mosquitto)),
        })
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The address clients connect to (stable across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGKILLs mosquitto (to test reconnects); [`TestBroker::restart`] brings it back.
    pub fn kill(&self) -> Result<(), TestBrokerError> {
        match &mut *self.inner() {
            Inner::Mosquitto(mosquitto) => {
                mosquitto.kill();
                Ok(())
            }
            Inner::Embedded { .. } => Err(TestBrokerError::NotMosquitto),
        }
    }

    /// Restarts the broker: every client is disconnected, none is let in for `down`, then a
    /// fresh broker serves the same port (mosquitto with the same configuration; embedded: a new
    /// rumqttd behind the proxy, for a broker from [`TestBroker::start_restartable`]).
    pub async fn restart(&self, down: Duration) -> Result<(), TestBrokerError> {
        match &mut *self.inner() {
            Inner::Mosquitto(mosquitto) => mosquitto.kill(),
            Inner::Embedded { proxy: Some(proxy) } => proxy.cut(),
            Inner::Embedded { proxy: None } => return Err(TestBrokerError::NotRestartable),
        }
        tokio::time::sleep(down).await;
        match &mut *self.inner() {
            Inner::Mosquitto(mosquitto) => mosquitto.spawn(self.addr),
            Inner::Embedded { proxy } => {
                let proxy = proxy.as_ref().ok_or(TestBrokerError::NotRestartable)?;
                proxy.set_upstream(start_rumqttd()?);
                proxy.heal();
                Ok(())
            }
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Mosquitto {
    fn spawn(&mut self, addr: SocketAddr) -> Result<(), TestBrokerError> {
        let program = std::env::var("EDGETWIN_MOSQUITTO").unwrap_or_else(|_| MOSQUITTO.into());
        let child = Command::new(&program)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| TestBrokerError::Spawn { program, source })?;
        self.child = Some(child);
        if !listening_within(addr, Duration::from_secs(10)) {
            self.kill();
            return Err(TestBrokerError::NotListening {
                addr,
                log: std::fs::read_to_string(&self.log).unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL by pid, then reap it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Inner::Mosquitto(mosquitto) = &mut *self.inner() {
            mosquitto.kill();
        }
    }
}

/// Whether a broker of `kind` can run here: rumqttd always can; mosquitto when it is installed.
/// `false` after reporting mosquitto missing through [`peers::missing`] (which fails the test
/// when peers are required), so a test can `return` early.
#[track_caller]
pub fn available(kind: BrokerKind, test: &str) -> bool {
    match kind {
        BrokerKind::Embedded => true,
        BrokerKind::Mosquitto => match std::env::var_os("EDGETWIN_MOSQUITTO") {
            Some(program) => Path::new(&program).is_file(),
            None => peers::program(test, "mosquitto").is_some(),
        },
    }
}

/// Starts rumqttd (in a thread of its own) on a free loopback port and waits until it accepts
/// connections.
fn start_rumqttd() -> Result<SocketAddr, TestBrokerError> {
    // rumqttd binds by itself: find a free port, release it and hand it over.
    let addr = loopback(free_port()?);
    let config = rumqttd_config(addr);
    std::thread::Builder::new()
        .name(format!("test-broker-{}", addr.port()))
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(err) = broker.start() {
                tracing::error!(error = %err, "test broker stopped");
            }
        })?;
    if listening_within(addr, Duration::from_secs(10)) {
        Ok(addr)
    } else {
        Err(TestBrokerError::EmbeddedNotListening(addr))
    }
}

fn rumqttd_config(listen: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "test-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PACKET_BYTES,
            // Retained messages beyond the free inflight slots are dropped by rumqttd: keep
            // room for every device spec of a test node.
            max_inflight_count: 2000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 5000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("test-v4".to_owned(), server)])),
        ..Config::default()
    }
}

/// Whether something accepts TCP connections on `addr` within `timeout`.
fn listening_within(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TCP port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(loopback(0))?.local_addr()?.port())
}

fn mosquitto_conf(
    addr: SocketAddr,
    log: &Path,
    dir: &Path,
    options: &MosquittoOptions,
) -> Result<String, TestBrokerError> {
    let mut conf = format!(
        "per_listener_settings false\n\
         persistence false\n\
         log_dest file {log}\n\
         log_type error\nlog_type warning\nlog_type notice\n\
         max_queued_messages 100000\n\
         max_packet_size {MAX_PACKET_BYTES}\n\
         set_tcp_nodelay true\n\
         listener {port} {ip}\n",
        log = log.display(),
        port = addr.port(),
        ip = addr.ip(),
    );
    if let Some(tls) = &options.tls {
        conf.push_str(&format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
            tls.ca_file.display(),
            tls.cert_file.display(),
            tls.key_file.display(),
            tls.require_client_cert
        ));
    }
    match &options.user {
        Some((user, password)) => {
            let file = dir.join("passwords");
            let status = Command::new("mosquitto_passwd")
                .arg("-b")
                .arg("-c")
                .arg(&file)
                .arg(user)
                .arg(password)
                .stdout(Stdio::null())
                .status()
                .map_err(|source| TestBrokerError::Spawn {
                    program: "mosquitto_passwd".into(),
                    source,
                })?;
            if !status.success() {
                return Err(std::io::Error::other(format!("mosquitto_passwd: {status}")).into());
            }
            conf.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                file.display()
            ));
        }
        None => conf.push_str("allow_anonymous true\n"),
    }
    Ok(conf)
}
