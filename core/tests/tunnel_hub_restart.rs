//! The hub as its own process, SIGKILLed at random moments while messages stream both ways and
//! restarted on the same port and files: afterwards every message was applied exactly once, in
//! order, on both sides. Both applications record in sqlite, in the same transaction as the
//! resume point, as the `Inbox` contract asks.
//!
//! The hub process is this test binary re-run with `--ignored --exact hub_process` and the
//! environment variable below; it prints `READY <port>` once it listens.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgetwin_core::tunnel::auth::TokenStore;
use edgetwin_core::tunnel::backoff::BackoffConfig;
use edgetwin_core::tunnel::client::{HubClient, HubClientConfig};
use edgetwin_core::tunnel::hub_outbox::{HubOutbox, HubOutboxOptions};
use edgetwin_core::tunnel::inbox::{ApplyError, Delivery, Inbox};
use edgetwin_core::tunnel::isolation::Membership;
use edgetwin_core::tunnel::outbox::{MemoryOutbox, Outbox};
use edgetwin_core::tunnel::server::{Hub, HubConfig, HubParts};
use edgetwin_core::tunnel::session::SessionConfig;
use edgetwin_core::tunnel::tls::{self, ClientTlsFiles, ServerTlsFiles};
use edgetwin_core::tunnel::{NodeName, ResumePoint, StreamId};
use edgetwin_model::wire::Envelope;
use edgetwin_model::wire::topic::DeviceId;
use edgetwin_testkit::pki::TestCa;
use futures::future::BoxFuture;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OptionalExtension, params};

const HUB_DIR_ENV: &str = "EDGETWIN_TEST_HUB_DIR";
const HUB_PORT_ENV: &str = "EDGETWIN_TEST_HUB_PORT";
/// Messages the hub queues for the edge (once, before the first kill).
const DESIRED: usize = 1000;
/// Messages the edge reports while the hub is killed and restarted.
const REPORTS: usize = 300;
const KILLS: usize = 5;

fn node() -> NodeName {
    NodeName::new("edge-1").expect("node")
}

fn session() -> SessionConfig {
    SessionConfig {
        retransmit_initial: Duration::from_millis(500),
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    }
}

fn message(resource: String, n: usize) -> Envelope {
    let mut envelope = Envelope::default();
    envelope.header.msg_id = uuid::Uuid::new_v4().to_string();
    envelope.route.resource = Some(resource);
    envelope.content = serde_json::json!({ "n": n });
    envelope
}

/// An application that records each message and the resume point in one sqlite transaction.
struct SqliteApp {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteApp {
    fn open(path: &Path) -> SqliteApp {
        let conn = Connection::open(path).expect("open app db");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS applied (msg_id TEXT NOT NULL, n INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS resume (
                 node TEXT PRIMARY KEY, stream INTEGER NOT NULL, seq INTEGER NOT NULL);",
        )
        .expect("schema");
        SqliteApp {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// `n` of every applied message, in application order, and how many distinct ids.
    fn applied(path: &Path) -> (Vec<u64>, usize) {
        let conn = Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT n FROM applied ORDER BY rowid")
            .expect("query");
        let numbers = stmt
            .query_map([], |row| row.get::<_, i64>(0))
            .expect("rows")
            .map(|n| n.expect("n") as u64)
            .collect();
        let distinct: i64 = conn
            .query_row("SELECT COUNT(DISTINCT msg_id) FROM applied", [], |row| {
                row.get(0)
            })
            .expect("count");
        (numbers, distinct as usize)
    }
}

impl Inbox for SqliteApp {
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>> {
        let conn = Arc::clone(&self.conn);
        let node = node.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = conn.lock().expect("lock");
                conn.query_row(
                    "SELECT stream, seq FROM resume WHERE node = ?1",
                    [node],
                    |row| {
                        Ok(ResumePoint {
                            stream: StreamId(row.get::<_, i64>(0)? as u64),
                            seq: row.get::<_, i64>(1)? as u64,
                        })
                    },
                )
                .optional()
                .map_err(|e| ApplyError(e.to_string()))
            })
            .await
            .map_err(|e| ApplyError(e.to_string()))?
        })
    }

    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>> {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().expect("lock");
                let tx = conn.transaction()?;
                let n = delivery.message.content["n"].as_i64().unwrap_or(-1);
                tx.execute(
                    "INSERT INTO applied (msg_id, n) VALUES (?1, ?2)",
                    params![delivery.message.header.msg_id, n],
                )?;
                let point = delivery.resume_point();
                tx.execute(
                    "INSERT INTO resume (node, stream, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (node) DO UPDATE SET stream = ?2, seq = ?3",
                    params![
                        delivery.node.as_str(),
                        point.stream.0 as i64,
                        point.seq as i64
                    ],
                )?;
                tx.commit()
            })
            .await
            .map_err(|e| ApplyError(e.to_string()))?
            .map_err(|e| ApplyError(e.to_string()))
        })
    }
}

struct Everyone;

impl Membership for Everyone {
    fn is_assigned(&self, _: &NodeName, _: &DeviceId) -> bool {
        true
    }
}

/// The hub process: runs until killed or until its stdin closes.
#[test]
#[ignore = "the hub child process of hub_survives_sigkill_mid_stream; not a test on its own"]
fn hub_process() {
    let Some(dir) = std::env::var_os(HUB_DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let port: u16 = std::env::var(HUB_PORT_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let db = dir.join("cloud.db");
        let store = HubOutbox::open(&db, HubOutboxOptions::default()).expect("store");
        let seeded = dir.join("seeded");
        if !seeded.exists() {
            for n in 0..DESIRED {
                let resource = "node/edge-1/device/default/lamp/twin/cloud_updated".to_owned();
                store
                    .append(&node(), &message(resource, n))
                    .await
                    .expect("seed");
            }
            std::fs::write(&seeded, b"").expect("marker");
        }
        let tls = tls::server_config(&ServerTlsFiles {
            cert_chain: dir.join("localhost.pem"),
            key: dir.join("localhost-key.pem"),
            client_ca: None,
        })
        .expect("tls");
        let mut config = HubConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), Some(tls));
        config.session = session();
        let hub = Hub::start(
            config,
            HubParts {
                tokens: Arc::new(TokenStore::open(&db).expect("tokens")),
                store,
                inbox: Arc::new(SqliteApp::open(&dir.join("hub-app.db"))),
                membership: Arc::new(Everyone),
            },
        )
        .await
        .expect("hub");
        println!("READY {}", hub.local_addr().port());
        // Until the parent closes stdin (or kills us).
        tokio::task::spawn_blocking(|| std::io::stdin().lines().count())
            .await
            .expect("stdin");
        hub.shutdown().await;
    });
}

struct HubProcess {
    child: Child,
    port: u16,
}

fn spawn_hub(dir: &Path, port: u16) -> HubProcess {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "hub_process", "--nocapture"])
        .env(HUB_DIR_ENV, dir)
        .env(HUB_PORT_ENV, port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn hub");
    let stdout: ChildStdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("hub exited before READY")
            .expect("read");
        if let Some(port) = line.strip_prefix("READY ") {
            break port.parse().expect("port");
        }
    };
    // Keep reading so the child never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    HubProcess { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_survives_sigkill_mid_stream() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "cloud").expect("ca");
    ca.issue(&["localhost"]).expect("server cert");
    let token = TokenStore::open(&dir.path().join("cloud.db"))
        .expect("tokens")
        .create(&node())
        .expect("token");

    let mut hub = spawn_hub(dir.path(), 0);
    let port = hub.port;
    let mut config = HubClientConfig::new(
        format!("wss://localhost:{port}"),
        node(),
        Some(token.expose().to_owned()),
        Some(
            tls::client_config(&ClientTlsFiles {
                ca: ca.ca_file().to_owned(),
                client_cert: None,
            })
            .expect("client tls"),
        ),
    );
    config.session = session();
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
    };
    let outbox = Arc::new(MemoryOutbox::new(REPORTS));
    let edge_db = dir.path().join("edge-app.db");
    let client = HubClient::start(config, outbox.clone(), Arc::new(SqliteApp::open(&edge_db)))
        .expect("client");

    let reporter = {
        let outbox = Arc::clone(&outbox);
        let wake = client.waker();
        tokio::spawn(async move {
            for n in 0..REPORTS {
                let resource = "device/default/lamp/twin/edge_updated".to_owned();
                outbox.append(message(resource, n)).await.expect("append");
                wake.notify();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    for kill in 0..KILLS {
        let pause = rng.random_range(100..700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        hub.child.kill().expect("SIGKILL");
        hub.child.wait().expect("reap");
        println!("kill {kill} after {pause} ms");
        let dir = dir.path().to_owned();
        hub = tokio::task::spawn_blocking(move || spawn_hub(&dir, port))
            .await
            .expect("respawn");
    }
    reporter.await.expect("reporter");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let edge_done = SqliteApp::applied(&edge_db).0.len() >= DESIRED;
        if edge_done && outbox.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained: edge applied {}, edge outbox {} (seed {seed})",
            SqliteApp::applied(&edge_db).0.len(),
            outbox.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = client.stats();
    assert!(
        stats.links_established >= 2,
        "the kills broke live links: {stats:?}"
    );
    client.shutdown().await;
    drop(hub.child.stdin.take());
    hub.child.wait().expect("hub exits when stdin closes");

    let (edge, edge_ids) = SqliteApp::applied(&edge_db);
    assert_eq!(edge, (0..DESIRED as u64).collect::<Vec<_>>(), "seed {seed}");
    assert_eq!(edge_ids, DESIRED);
    let (cloud, cloud_ids) = SqliteApp::applied(&dir.path().join("hub-app.db"));
    assert_eq!(
        cloud,
        (0..REPORTS as u64).collect::<Vec<_>>(),
        "seed {seed}"
    );
    assert_eq!(cloud_ids, REPORTS);
}
