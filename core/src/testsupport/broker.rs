//! Brokers for tests: the embedded rumqttd or a `mosquitto` child process, on a free port.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::edge::broker::{BrokerError, EmbeddedBroker, wait_until_listening};

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
    /// The embedded broker failed.
    #[error(transparent)]
    Embedded(#[from] BrokerError),
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
    #[error("only a mosquitto test broker can be stopped and restarted")]
    NotMosquitto,
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

/// A running test broker. mosquitto is killed (by pid) when this is dropped.
pub struct TestBroker {
    kind: BrokerKind,
    addr: SocketAddr,
    mosquitto: Option<Mosquitto>,
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
    /// Starts a broker of `kind` on a free loopback port.
    pub fn start(kind: BrokerKind) -> Result<TestBroker, TestBrokerError> {
        match kind {
            BrokerKind::Embedded => {
                let broker = EmbeddedBroker::start(loopback(0), MAX_PACKET_BYTES)?;
                Ok(TestBroker {
                    kind,
                    addr: broker.addr(),
                    mosquitto: None,
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
            mosquitto: Some(mosquitto),
        })
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGKILLs mosquitto (to test reconnects); [`TestBroker::restart`] brings it back.
    pub fn kill(&mut self) -> Result<(), TestBrokerError> {
        let mosquitto = self
            .mosquitto
            .as_mut()
            .ok_or(TestBrokerError::NotMosquitto)?;
        mosquitto.kill();
        Ok(())
    }

    /// Starts mosquitto again on the same port with the same configuration.
    pub fn restart(&mut self) -> Result<(), TestBrokerError> {
        let addr = self.addr;
        let mosquitto = self
            .mosquitto
            .as_mut()
            .ok_or(TestBrokerError::NotMosquitto)?;
        mosquitto.kill();
        mosquitto.spawn(addr)
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
        if wait_until_listening(addr, Duration::from_secs(10)).is_err() {
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
        if let Some(mosquitto) = self.mosquitto.as_mut() {
            mosquitto.kill();
        }
    }
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
