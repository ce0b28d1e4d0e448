//! SIGKILL durability: the real `edgetwin edge` binary runs as a child process on an external
//! mosquitto (which outlives it), a publisher streams QoS 1 reports, and the test SIGKILLs the
//! agent at random moments (≥ 20 times, seeded; the seed is printed) and restarts it. Afterwards
//! every report whose `update/result` arrived is in the store, every report was answered in the
//! end (the broker redelivers what the agent never acknowledged), and the outbox holds the latest
//! change of every property (nothing lost on the way to the cloud).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgetwin_core::edge::store::Store;
use edgetwin_model::twin::PropertyTwin;
use edgetwin_testkit::{BrokerKind, TestBroker, TestClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

const KILLS: usize = 24;
/// Reports published but not answered yet, at most.
const WINDOW: u64 = 32;
const PROPERTIES: [&str; 4] = ["red", "yellow", "green", "count"];
/// The whole test gives up after this long (it normally takes a few seconds).
const DEADLINE: Duration = Duration::from_secs(90);

fn spawn_agent(dir: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_edgetwin"))
        .arg("edge")
        .arg("--config")
        .arg(dir.join("edge.yaml"))
        .arg("--devices")
        .arg(fixture("edge-traffic-light.yaml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("edgetwin starts")
}

/// Every property's stored reported value is at least the highest one acknowledged so far
/// (values only grow, so a lost commit shows as a smaller stored value).
fn assert_acknowledged_are_stored(db: &Path, acked: &BTreeMap<&str, u64>, kills: usize) {
    if acked.is_empty() {
        return;
    }
    let store = Store::open_read_only(db).expect("the store opens after a SIGKILL");
    for (property, acknowledged) in acked {
        let twin: Option<PropertyTwin> = store.twin(&light(), property).expect("reads");
        let stored: u64 = twin
            .and_then(|t| t.reported)
            .and_then(|half| half.value.parse().ok())
            .unwrap_or(0);
        assert!(
            stored >= *acknowledged,
            "after kill {kills}: {property} stored {stored} < acknowledged {acknowledged}"
        );
    }
}

/// SIGKILL by pid, then reap.
fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_reports_survive_sigkill_and_the_outbox_loses_nothing() {
    let seed = std::env::var("EDGETWIN_DURABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("durability seed: {seed} (EDGETWIN_DURABILITY_SEED={seed} replays the kill moments)");
    let mut rng = StdRng::seed_from_u64(seed);

    if !edgetwin_testkit::broker::available(BrokerKind::Mosquitto, "edge_durability") {
        return;
    }
    let broker = TestBroker::start(BrokerKind::Mosquitto).expect("mosquitto");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("agent.log");
    std::fs::write(
        dir.path().join("edge.yaml"),
        format!(
            "nodeName: {NODE}\ndataDir: {}\nbroker:\n  external:\n    url: mqtt://127.0.0.1:{}\n  \
             reconnectMinMs: 20\n  reconnectMaxMs: 200\nhttp:\n  listen: null\n",
            dir.path().join("data").display(),
            broker.port()
        ),
    )
    .expect("config written");

    let mut publisher = TestClient::connect(broker.addr(), "publisher")
        .await
        .expect("connects");
    publisher
        .subscribe(&device_topic(LIGHT, "twin/update/result"))
        .await
        .expect("subscribes");

    let started = Instant::now();
    let mut agent = spawn_agent(dir.path(), &log);
    // Until the agent has subscribed once, the broker has no session to queue reports in.
    publisher
        .subscribe(&device_topic(LIGHT, "twin/get/result"))
        .await
        .expect("subscribes");
    loop {
        publisher
            .publish(&device_topic(LIGHT, "twin/get"), r#"{"event_id":"ready"}"#)
            .await
            .expect("publishes");
        if publisher
            .recv_within(Duration::from_millis(200))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the agent never answered; log {}",
            log.display()
        );
    }
    let mut kill_at = Instant::now() + Duration::from_millis(rng.random_range(20..400));
    let mut kills = 0;
    let mut sent: u64 = 0;
    // Highest acknowledged report per property, and every answered report.
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    let mut answered = std::collections::BTreeSet::new();
    let mut last_sent: BTreeMap<&str, u64> = BTreeMap::new();

    while kills < KILLS || answered.len() < sent as usize {
        if started.elapsed() > DEADLINE {
            let missing: Vec<u64> = (1..=sent).filter(|id| !answered.contains(id)).collect();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "gave up: {} of {sent} answered after {kills} kills; unanswered {missing:?}\nagent log (last lines, newest first):\n{}",
                answered.len(),
                tail.join("\n")
            );
        }
        if kills < KILLS && Instant::now() >= kill_at {
            kill(&mut agent);
            kills += 1;
            // With the agent dead, every answered report must already be in the file.
            assert_acknowledged_are_stored(&dir.path().join("data/edge.db"), &acked, kills);
            agent = spawn_agent(dir.path(), &log);
            kill_at = Instant::now() + Duration::from_millis(rng.random_range(20..400));
        }
        let in_flight = sent - answered.len() as u64;
        if kills < KILLS && in_flight < WINDOW {
            sent += 1;
            let property = PROPERTIES[(sent % PROPERTIES.len() as u64) as usize];
            let report = format!(
                r#"{{"event_id":"{sent}","twin":{{"{property}":{{"actual":{{"value":"{sent}"}}}}}}}}"#
            );
            publisher
                .publish(&device_topic(LIGHT, "twin/update"), report)
                .await
                .expect("the broker takes the report");
            last_sent.insert(property, sent);
        }
        let wait = if in_flight < WINDOW && kills < KILLS {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        while let Ok(result) = publisher.recv_within(wait).await {
            if result.topic != device_topic(LIGHT, "twin/update/result") {
                continue; // a late answer to the readiness probe
            }
            let result = result.json();
            assert!(
                result.get("code").is_none(),
                "a report was refused: {result}"
            );
            let id: u64 = result["event_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("our event id");
            let twin = result["twin"].as_object().expect("a twin map");
            // An unchanged report (a redelivery) has an empty twin map.
            for (property, entry) in twin {
                let value: u64 = entry["actual"]["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("a number");
                let property = PROPERTIES.iter().find(|p| **p == property).expect("ours");
                let best = acked.entry(property).or_default();
                *best = (*best).max(value);
            }
            answered.insert(id);
            if wait.is_zero() {
                continue;
            }
            break;
        }
    }
    kill(&mut agent);
    println!(
        "{kills} kills, {sent} reports, all answered, in {:.1?}",
        started.elapsed()
    );

    let store = Store::open_read_only(&dir.path().join("data/edge.db")).expect("the store opens");
    let outbox = store.outbox_peek(0, 1000).expect("outbox");
    for property in PROPERTIES {
        let twin: PropertyTwin = store
            .twin(&light(), property)
            .expect("reads")
            .unwrap_or_else(|| panic!("{property} was never stored"));
        let reported = twin.reported.as_ref().expect("a reported value");
        let stored: u64 = reported.value.parse().expect("a number");
        let acknowledged = acked.get(property).copied().unwrap_or_default();
        assert!(
            stored >= acknowledged,
            "{property}: stored {stored} < acknowledged {acknowledged}"
        );
        assert_eq!(
            Some(&stored),
            last_sent.get(property),
            "{property}: every report was processed in the end"
        );
        let entry = outbox
            .iter()
            .find(|e| e.property.as_deref() == Some(property))
            .unwrap_or_else(|| panic!("{property}: no outbox entry"));
        let queued: serde_json::Value = serde_json::from_str(&entry.payload).expect("JSON");
        assert_eq!(
            queued["actual"]["value"],
            reported.value.as_str(),
            "{property}: the outbox has the latest value"
        );
        assert_eq!(
            queued["actual_version"]["edge"].as_u64(),
            Some(twin.reported_version.edge),
            "{property}: and its version"
        );
    }
}
