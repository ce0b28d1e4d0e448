//! The OpenTelemetry and database sinks against servers we did not write, through a whole mapper
//! (real broker, in-test edge, simulated device): Debian's redis-server and MariaDB, an OTLP/HTTP
//! receiver decoding with the `opentelemetry-proto` Python package. InfluxDB v2 and TDengine are
//! not packaged by Debian: their requests are checked byte for byte against captures written from
//! their public API references (`tests/captures/`), answered as those references say.
//!
//! A server that goes away: samples wait in the sink's queue (bounded), the device turns
//! `unhealthy` with the sink's failure and `edgetwin_mapper_sink_up` drops to 0; when the server
//! returns, the waiting samples arrive in order and the device is `online` again.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use edgetwin_sdk::metrics::Metrics;
use edgetwin_sdk::model::devices::push_method::PushMethod;
use edgetwin_sdk::mqtt::Bus;
use edgetwin_sdk::sink::{Sample, SinkSettings, Sinks, sink_specs};
use edgetwin_sdk::testkit::{BrokerKind, TestBroker};
use edgetwin_sdk::{DeviceId, PropertyType, Value};
use edgetwin_testkit::servers::{MariaDb, OtlpReceiver, RedisServer, TempDir};
use serde_json::Value as Json;
use support::{MODEL, Rig, WAIT, meter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A meter whose `count` (+1 on every read, every 50 ms) goes to the sink `push` (YAML under
/// `pushMethod:`, indented by 8 spaces).
fn meter_pushing(push: &str) -> String {
    format!(
        "{MODEL}{}",
        meter(
            "meter",
            "",
            &format!("  properties:\n    - name: count\n      pushMethod:\n{push}")
        )
    )
}

/// A secrets directory holding `files` (name, content).
fn secrets(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("secrets");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), format!("{content}\n")).expect("secret written");
    }
    dir
}

/// Polls `probe` until it returns `Some`, for at most `WAIT`.
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the series `name{sink="…"}` in the mapper's metrics.
fn sink_series(metrics: &Metrics, name: &str, sink: &str) -> Option<i64> {
    let prefix = format!("edgetwin_mapper_{name}{{sink=\"{sink}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
}

/// `(count, timestamp)` of the sample JSON members or rows, checked to be consecutive counts.
fn consecutive(counts: &[(i64, i64)]) {
    for pair in counts.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "a gap or a repeat: {counts:?}");
        assert!(pair[1].1 >= pair[0].1, "out of order: {counts:?}");
    }
}

fn redis_members(redis: &RedisServer) -> Vec<(i64, i64)> {
    redis
        .cli(&["ZRANGE", "meter", "0", "-1"])
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let json: Json = serde_json::from_str(line).expect("JSON member");
            assert_eq!(json["namespace"], "default");
            assert_eq!(json["deviceName"], "meter");
            assert_eq!(json["propertyName"], "count");
            assert_eq!(json["type"], "int");
            let count = json["value"].as_str().and_then(|v| v.parse().ok());
            (
                count.expect("an int value"),
                json["timestamp"].as_i64().expect("a timestamp"),
            )
        })
        .collect()
}

#[tokio::test]
async fn redis_gets_a_sorted_set_per_device_and_waits_out_an_outage() {
    let Some(mut redis) = RedisServer::start("redis_sink") else {
        return;
    };
    let rig = Rig::start().await;
    let secrets = secrets(&[("EDGETWIN_REDIS_PASSWORD", RedisServer::PASSWORD)]);
    rig.publish(&meter_pushing(&format!(
        "        dbMethod:\n          redis:\n            redisClientConfig:\n              addr: {}\n              db: 0\n              poolsize: 10\n",
        redis.addr()
    )));
    let dir = secrets.path().to_path_buf();
    let mapper = rig.mapper(move |o| o.secrets_dir = Some(dir));
    let sink = format!("redis://{}/0", redis.addr());

    // KubeEdge's layout: ZADD {device name} {timestamp} {sample JSON}.
    eventually("three samples in Redis", || {
        (redis_members(&redis).len() >= 3).then_some(())
    })
    .await;
    let scores = redis.cli(&["ZRANGE", "meter", "0", "0", "WITHSCORES"]);
    let first = redis_members(&redis)[0];
    assert_eq!(scores.lines().nth(1), Some(first.1.to_string().as_str()));
    consecutive(&redis_members(&redis));

    // The server goes away: samples wait, the device and the metrics show it.
    redis.kill();
    let down = rig
        .edge
        .wait_state("default/meter", "unhealthy", WAIT)
        .await
        .expect("unhealthy while Redis is down");
    let reason = down.reason.unwrap_or_default();
    assert!(reason.starts_with(&format!("sink {sink}: ")), "{reason}");
    let metrics = mapper.metrics().clone();
    eventually("sink_up 0 and samples queued", || {
        (sink_series(&metrics, "sink_up", &sink) == Some(0)
            && sink_series(&metrics, "sink_queued", &sink).is_some_and(|q| q >= 5))
        .then_some(())
    })
    .await;
    let restarted_at = jiff::Timestamp::now().as_millisecond();
    redis.restart();

    // Everything read while it was down arrives, in order, without a gap.
    let members = eventually("the queued samples delivered", || {
        let members = redis_members(&redis);
        let backlog = members.iter().filter(|(_, ts)| *ts < restarted_at).count();
        (backlog >= 5 && members.iter().any(|(_, ts)| *ts > restarted_at)).then_some(members)
    })
    .await;
    consecutive(&members);
    rig.edge
        .wait_state("default/meter", "online", WAIT)
        .await
        .expect("online again");
    assert_eq!(sink_series(&metrics, "sink_up", &sink), Some(1));
    assert_eq!(sink_series(&metrics, "sink_dropped_total", &sink), Some(0));
    mapper.shutdown().await.expect("clean shutdown");
}

fn mysql_rows(db: &MariaDb) -> Vec<(i64, i64)> {
    db.query("SELECT field, UNIX_TIMESTAMP(ts) * 1000 FROM `default/meter/count` ORDER BY id")
        .lines()
        .map(|line| {
            let (value, ts) = line.split_once('\t').expect("two columns");
            let ts: f64 = ts.parse().expect("a timestamp");
            (value.parse().expect("an int"), ts.round() as i64)
        })
        .collect()
}

/// One MariaDB server for the whole scenario: its start-up is the slow part.
#[tokio::test]
async fn mysql_gets_a_table_per_property_in_batches_and_waits_out_an_outage() {
    let Some(mut db) = MariaDb::start("mysql_sink") else {
        return;
    };
    let rig = Rig::start().await;
    let secrets = secrets(&[("EDGETWIN_MYSQL_PASSWORD", MariaDb::PASSWORD)]);
    rig.publish(&meter_pushing(&format!(
        "        dbMethod:\n          mysql:\n            mysqlClientConfig:\n              addr: {}\n              database: {}\n              userName: {}\n",
        db.addr(),
        MariaDb::DATABASE,
        MariaDb::USER
    )));
    let dir = secrets.path().to_path_buf();
    let mapper = rig.mapper(move |o| o.secrets_dir = Some(dir));
    let sink = format!(
        "mysql://{}@{}/{}",
        MariaDb::USER,
        db.addr(),
        MariaDb::DATABASE
    );

    // KubeEdge's table, created by the sink, with millisecond timestamps.
    eventually("rows in MySQL", || {
        let exists = db.query("SHOW TABLES LIKE 'default/meter/count'");
        (!exists.trim().is_empty() && mysql_rows(&db).len() >= 3).then_some(())
    })
    .await;
    let columns = db.query("SHOW COLUMNS FROM `default/meter/count`");
    let names: Vec<&str> = columns
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(names, ["id", "ts", "field"]);
    consecutive(&mysql_rows(&db));

    db.kill();
    let down = rig
        .edge
        .wait_state("default/meter", "unhealthy", WAIT)
        .await
        .expect("unhealthy while MySQL is down");
    assert!(
        down.reason
            .unwrap_or_default()
            .starts_with(&format!("sink {sink}: ")),
        "the reason names the sink"
    );
    let metrics = mapper.metrics().clone();
    eventually("samples queued", || {
        sink_series(&metrics, "sink_queued", &sink)
            .is_some_and(|q| q >= 5)
            .then_some(())
    })
    .await;
    let restarted_at = jiff::Timestamp::now().as_millisecond();
    db.restart();
    // The backlog goes as a few large batches: far fewer transactions than rows.
    let rows = eventually("the queued rows inserted", || {
        let rows = mysql_rows(&db);
        let backlog = rows.iter().filter(|(_, ts)| *ts < restarted_at).count();
        (backlog >= 8 && rows.iter().any(|(_, ts)| *ts > restarted_at + 100)).then_some(rows)
    })
    .await;
    consecutive(&rows);
    rig.edge
        .wait_state("default/meter", "online", WAIT)
        .await
        .expect("online again");
    mapper.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn otel_exports_gauges_with_the_device_and_property_as_attributes() {
    let Some(receiver) = OtlpReceiver::start("otel_sink") else {
        return;
    };
    let rig = Rig::start().await;
    rig.publish(&meter_pushing(&format!(
        "        otel:\n          endpointURL: {}\n",
        receiver.endpoint()
    )));
    let mapper = rig.mapper(|_| {});
    let mut points = Vec::new();
    while points.len() < 3 {
        let line = eventually("a data point", || receiver.try_next_point()).await;
        let point: Json = serde_json::from_str(&line).expect("JSON");
        points.push(point);
    }
    for point in &points {
        assert_eq!(point["metric"], "count");
        assert_eq!(point["kind"], "gauge");
        assert_eq!(point["device_id"], "default/meter");
        assert_eq!(point["service"], "edgetwin-mapper");
        assert_eq!(point["scope"], "edgetwin-mapper");
        assert_eq!(point["attributes"]["device"], "default/meter");
        assert_eq!(point["attributes"]["property"], "count");
        assert!(point["as_int"].is_i64(), "INT goes as an integer: {point}");
        let nanos = point["time_unix_nano"].as_u64().expect("a time");
        assert_eq!(nanos % 1_000_000, 0, "stamped with the read time in ms");
    }
    let counts: Vec<i64> = points.iter().filter_map(|p| p["as_int"].as_i64()).collect();
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "{counts:?}");
    mapper.shutdown().await.expect("clean shutdown");
}

/// A server that records each request (head and body, exactly) and answers with the next of
/// `answers` (the last one repeats).
async fn capture_server(answers: Vec<String>) -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let answer = &answers[next.min(answers.len() - 1)];
            next += 1;
            let _ = tx.send(request);
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (port, rx)
}

/// A capture file with `{port}` replaced; lines end with CRLF in the head as HTTP wants.
fn capture(name: &str, port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("capture file");
    let text = text.replace("{port}", &port.to_string());
    let (head, body) = text
        .split_once("\n\n")
        .expect("a blank line after the head");
    let body = body.strip_suffix('\n').unwrap_or(body);
    let head = head.replace('\n', "\r\n");
    let length = body.len();
    format!("{head}\r\n").replace("{length}", &length.to_string()) + "\r\n" + body
}

/// A sink registry without MQTT sinks of its own (the bus is a real, idle connection).
async fn sinks_with(secrets: &TempDir) -> (std::sync::Arc<Sinks>, TestBroker) {
    let broker = TestBroker::start(BrokerKind::Embedded).expect("broker");
    let metrics = Metrics::new();
    let (bus, _inbound, _task) =
        Bus::start(&broker.addr().into(), None, "sink-test", metrics.clone());
    let sinks = Sinks::new(
        bus,
        metrics,
        "sink-test",
        SinkSettings {
            secrets_dir: Some(secrets.path().to_path_buf()),
            ..SinkSettings::default()
        },
    );
    (sinks, broker)
}

fn sample(device: &str, property: &str, ty: PropertyType, value: Value, ms: i64) -> Sample {
    Sample {
        device: DeviceId::new("plant", device),
        property: property.into(),
        ty,
        value,
        timestamp_ms: ms,
    }
}

fn push_method(yaml: &str) -> PushMethod {
    serde_saphyr::from_str(yaml).expect("pushMethod YAML")
}

async fn next_request(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> String {
    let bytes = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a request in time")
        .expect("a request");
    String::from_utf8(bytes).expect("UTF-8 request")
}

#[tokio::test]
async fn influxdb2_writes_match_the_v2_write_api_byte_for_byte() {
    // The write API reference: 204 on success; 503 with Retry-After when unavailable; 400 with a
    // JSON error for a malformed point.
    let no_content = "HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
    let unavailable =
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
    let (port, mut requests) = capture_server(vec![unavailable.into(), no_content.into()]).await;
    let secrets = secrets(&[("EDGETWIN_INFLUXDB2_TOKEN", "edgetwin-test-token")]);
    let (sinks, _broker) = sinks_with(&secrets).await;
    let push = push_method(&format!(
        "dbMethod:\n  influxdb2:\n    influxdb2ClientConfig: {{url: \"http://127.0.0.1:{port}\", org: edgetwin, bucket: plant}}\n    influxdb2DataConfig: {{measurement: temperature_stats, tag: {{unit: celsius, site: north}}, fieldKey: temperature_value}}\n"
    ));
    let specs = sink_specs(&push).expect("influxdb2");
    let sink = sinks.handle(&specs[0]);
    // Pushed before the worker first runs: one batch.
    sink.push(sample(
        "boiler-1",
        "temperature",
        PropertyType::Float,
        Value::Float(21.5),
        1_700_000_000_000,
    ));
    sink.push(sample(
        "boiler-1",
        "temperature",
        PropertyType::Float,
        Value::Float(21.75),
        1_700_000_000_100,
    ));
    sink.push(sample(
        "boiler-2",
        "temperature",
        PropertyType::Float,
        Value::Int(19),
        1_700_000_000_200,
    ));
    let expected = capture("influxdb2-write.http", port);
    // Refused with 503 first, then the same request again (after the backoff).
    assert_eq!(next_request(&mut requests).await, expected);
    assert_eq!(next_request(&mut requests).await, expected);
    sinks.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn tdengine_sql_matches_the_rest_api_byte_for_byte() {
    // The REST API reference: 200 with {"code":0,…} on success (here for CREATE STABLE and the
    // INSERT's affected rows), {"code":N,"desc":…} on failure.
    let answer = |rows: u32| {
        let body = format!(
            "{{\"code\":0,\"column_meta\":[[\"affected_rows\",\"INT\",4]],\"data\":[[{rows}]],\"rows\":1}}"
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (port, mut requests) = capture_server(vec![answer(0), answer(3)]).await;
    let secrets = secrets(&[
        ("EDGETWIN_TDENGINE_USERNAME", "root"),
        ("EDGETWIN_TDENGINE_PASSWORD", "taosdata"),
    ]);
    let (sinks, _broker) = sinks_with(&secrets).await;
    let push = push_method(&format!(
        "dbMethod:\n  TDEngine:\n    TDEngineClientConfig: {{addr: \"127.0.0.1:{port}\", dbName: plant}}\n"
    ));
    let specs = sink_specs(&push).expect("TDEngine");
    let sink = sinks.handle(&specs[0]);
    sink.push(sample(
        "boiler-1",
        "temperature",
        PropertyType::Float,
        Value::Float(21.5),
        1_700_000_000_000,
    ));
    sink.push(sample(
        "boiler-1",
        "temperature",
        PropertyType::Float,
        Value::Float(21.75),
        1_700_000_000_100,
    ));
    sink.push(sample(
        "boiler-1",
        "state",
        PropertyType::String,
        Value::String("it's on".into()),
        1_700_000_000_100,
    ));
    assert_eq!(
        next_request(&mut requests).await,
        capture("tdengine-create-stable.http", port)
    );
    assert_eq!(
        next_request(&mut requests).await,
        capture("tdengine-insert.http", port)
    );
    sinks.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_point_influxdb_refuses_is_dropped_alone() {
    let no_content = "HTTP/1.1 204 No Content\r\n\r\n";
    let error = r#"{"code":"invalid","message":"partial write: field type conflict"}"#;
    let bad = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{error}",
        error.len()
    );
    // The batch of two is refused, then each point goes alone: the first is refused again, the
    // second is written.
    let (port, mut requests) = capture_server(vec![bad.clone(), bad, no_content.into()]).await;
    let secrets = secrets(&[("EDGETWIN_INFLUXDB2_TOKEN", "t")]);
    let (sinks, _broker) = sinks_with(&secrets).await;
    let push = push_method(&format!(
        "dbMethod:\n  influxdb2:\n    influxdb2ClientConfig: {{url: \"http://127.0.0.1:{port}\", org: o, bucket: b}}\n"
    ));
    let specs = sink_specs(&push).expect("influxdb2");
    let sink = sinks.handle(&specs[0]);
    sink.push(sample("a", "t", PropertyType::Int, Value::Int(1), 1));
    sink.push(sample("a", "t", PropertyType::Int, Value::Int(2), 2));
    let bodies: Vec<String> = [
        next_request(&mut requests).await,
        next_request(&mut requests).await,
        next_request(&mut requests).await,
    ]
    .iter()
    .map(|r| r.split_once("\r\n\r\n").expect("body").1.to_owned())
    .collect();
    assert_eq!(bodies, ["a t=1i 1\na t=2i 2\n", "a t=1i 1\n", "a t=2i 2\n"]);
    sinks.shutdown(Duration::from_secs(1)).await;
}
