//! `--sim-http ADDR`: the simulated chips over HTTP/JSON, so that tests, the demo and a
//! browser can see what the pins do (desired → pin → reported) and press simulated buttons.
//!
//! | request | answer |
//! |---|---|
//! | `GET /sim` | `{"chips": [chip…]}`, every chip with its lines and transition log |
//! | `GET /sim/{chip}?since=SEQ` | one chip; only the transitions after `SEQ` |
//! | `GET /sim/{chip}/events` | a stream: every later transition of the chip as one JSON line (`{"seq":…,"line":17,"level":"high",…}`), written as it happens, until the client closes |
//! | `GET /sim/{chip}/{line}` | one line: `{"line":17,"level":"high","direction":"out","active":true,…}` |
//! | `PUT /sim/{chip}/{line}` with body `high`, `low` or `float` | drives the line from outside (like a button or a sensor) and answers with the line |
//!
//! Chips are named as in the device configuration (`gpiochip0`). Every answer carries
//! `Access-Control-Allow-Origin: *`, so a page on another port can read it. It is meant for
//! loopback: anyone who reaches it can move the simulated inputs. HTTP/1.1, one request per
//! connection, no framework (the mapper stays small). The event stream is what a latency
//! measurement or a live view should use: the transition is written the moment the pin moves
//! (`TCP_NODELAY`), where polling would add up to its period.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::chip::sim::{Level, SimGpio};
use tokio::sync::broadcast;

/// Longest request head or body read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long one exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// An answer: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// JSON text.
    pub body: String,
}

impl Response {
    fn json(value: &impl Serialize) -> Response {
        match serde_json::to_string_pretty(value) {
            Ok(body) => Response { status: 200, body },
            Err(err) => Response::error(500, &format!("cannot encode the answer: {err}")),
        }
    }

    fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            body: serde_json::json!({ "error": message }).to_string(),
        }
    }
}

#[derive(Serialize)]
struct AllChips {
    chips: Vec<crate::chip::sim::ChipSnapshot>,
}

/// Answers one request. `target` is the request target (`/sim/gpiochip0?since=3`).
pub fn handle(sim: &SimGpio, method: &str, target: &str, body: &[u8]) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["sim"]) => Response::json(&AllChips {
            chips: sim.snapshot(),
        }),
        ("GET", ["sim", chip]) => {
            let Some(chip) = sim.get(chip) else {
                return Response::error(404, &format!("no simulated chip {chip:?}"));
            };
            let since = match query_since(query) {
                Ok(since) => since,
                Err(message) => return Response::error(400, &message),
            };
            Response::json(&chip.snapshot_since(since))
        }
        ("GET", ["sim", chip, line]) => {
            let Some(chip) = sim.get(chip) else {
                return Response::error(404, &format!("no simulated chip {chip:?}"));
            };
            match line
                .parse::<u32>()
                .map_err(|_| format!("{line:?} is not a line number"))
            {
                Ok(line) => match chip.line(line) {
                    Ok(snapshot) => Response::json(&snapshot),
                    Err(err) => Response::error(404, &err.to_string()),
                },
                Err(message) => Response::error(404, &message),
            }
        }
        ("PUT" | "POST", ["sim", chip, line]) => {
            let Ok(line) = line.parse::<u32>() else {
                return Response::error(404, &format!("{line:?} is not a line number"));
            };
            let chip = sim.chip(chip);
            let text = String::from_utf8_lossy(body);
            let driven = match text.trim().to_ascii_lowercase().as_str() {
                "high" | "1" => chip.drive(line, Level::High),
                "low" | "0" => chip.drive(line, Level::Low),
                "float" | "" => chip.undrive(line),
                other => {
                    return Response::error(
                        400,
                        &format!("body {other:?}: send high, low or float"),
                    );
                }
            };
            match driven.and_then(|()| chip.line(line)) {
                Ok(snapshot) => Response::json(&snapshot),
                Err(err) => Response::error(404, &err.to_string()),
            }
        }
        (_, ["sim", ..]) => Response::error(405, "use GET, or PUT on /sim/{chip}/{line}"),
        _ => Response::error(404, "try GET /sim"),
    }
}

fn query_since(query: &str) -> Result<u64, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(value) = pair.strip_prefix("since=") {
            return value
                .parse()
                .map_err(|_| format!("since={value:?} is not a sequence number"));
        }
    }
    Ok(0)
}

/// Serves [`handle`] (and the event streams) on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, sim: SimGpio) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "sim HTTP: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sim = sim.clone();
        tokio::spawn(async move {
            match connection(stream, &sim).await {
                Ok(()) => {}
                Err(err) => tracing::debug!(%peer, error = %err, "sim HTTP request failed"),
            }
        });
    }
}

/// One request: read within [`EXCHANGE_TIMEOUT`]; an event stream then runs until the client
/// leaves, any other answer is written within the timeout.
async fn connection(mut stream: TcpStream, sim: &SimGpio) -> std::io::Result<()> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out");
    let request = tokio::time::timeout(EXCHANGE_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| timed_out())??;
    if let Some(request) = &request
        && request.method == "GET"
        && let Some(chip) = events_chip(&request.target)
    {
        let Some(chip) = sim.get(chip) else {
            let response = Response::error(404, &format!("no simulated chip {chip:?}"));
            return write_response(&mut stream, &response).await;
        };
        // Subscribed before the head goes out: a client that has the head sees every later
        // transition.
        return stream_events(stream, chip.subscribe()).await;
    }
    let response = match &request {
        None => Response::error(400, "incomplete or oversized request head"),
        // A browser's CORS preflight before a PUT.
        Some(request) if request.method == "OPTIONS" => Response {
            status: 204,
            body: String::new(),
        },
        Some(request) => handle(sim, &request.method, &request.target, &request.body),
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, write_response(&mut stream, &response))
        .await
        .map_err(|_| timed_out())?
}

/// A parsed request.
struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// The chip of an event-stream target (`/sim/{chip}/events`).
fn events_chip(target: &str) -> Option<&str> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    match path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sim", chip, "events"] => Some(chip),
        _ => None,
    }
}

/// Reads one request head and body; `None` for an incomplete or oversized head.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if request.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        request.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    while request.len() < head_end + length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body_end = request.len().min(head_end + length);
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        body: request[head_end..body_end].to_vec(),
    }))
}

/// The response head every answer shares, with its status line and framing.
fn head(status: u16, framing: &str) -> String {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\n{framing}\
         Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, PUT, POST, OPTIONS\r\n\
         Access-Control-Allow-Headers: Content-Type\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n"
    )
}

/// Writes one answer and closes the connection.
async fn write_response(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    let framing = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        response.body.len()
    );
    let mut bytes = head(response.status, &framing).into_bytes();
    bytes.extend_from_slice(response.body.as_bytes());
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

/// Writes every transition from `transitions` as one JSON line until the client leaves (the
/// body ends with the connection). A client too slow to keep up gets an `{"missed": N}` line.
async fn stream_events(
    mut stream: TcpStream,
    mut transitions: broadcast::Receiver<crate::chip::sim::Transition>,
) -> std::io::Result<()> {
    stream
        .write_all(head(200, "Content-Type: application/x-ndjson\r\n").as_bytes())
        .await?;
    let (mut reader, mut writer) = stream.split();
    let mut ignored = [0u8; 256];
    loop {
        let line = tokio::select! {
            // The client sends nothing more; end of input or an error means it left.
            read = reader.read(&mut ignored) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
            received = transitions.recv() => match received {
                Ok(transition) => serde_json::to_string(&transition)
                    .unwrap_or_else(|err| serde_json::json!({ "error": err.to_string() }).to_string()),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    serde_json::json!({ "missed": missed }).to_string()
                }
                // The chip is gone (the mapper stops).
                Err(broadcast::error::RecvError::Closed) => return writer.shutdown().await,
            },
        };
        writer.write_all(format!("{line}\n").as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::*;
    use crate::chip::{GpioChip, LineOptions, OutputRequest};

    fn json(response: &Response) -> Json {
        serde_json::from_str(&response.body).expect("JSON body")
    }

    fn sim_with_a_lamp() -> (SimGpio, Box<dyn crate::chip::OutputLine>) {
        let sim = SimGpio::new();
        let mut lamp = sim
            .chip("gpiochip0")
            .request_output(&OutputRequest {
                options: LineOptions {
                    line: 17,
                    active_low: false,
                    bias: None,
                    consumer: "default/traffic-light:red".into(),
                },
                initial: false,
            })
            .expect("free line");
        lamp.set(true).expect("set");
        (sim, lamp)
    }

    #[test]
    fn get_shows_chips_lines_and_transitions() {
        let (sim, _lamp) = sim_with_a_lamp();
        let all = handle(&sim, "GET", "/sim", b"");
        assert_eq!(all.status, 200);
        assert_eq!(json(&all)["chips"][0]["chip"], "gpiochip0");
        let line = json(&handle(&sim, "GET", "/sim/gpiochip0/17", b""));
        assert_eq!(line["level"], "high");
        assert_eq!(line["active"], true);
        assert_eq!(line["consumer"], "default/traffic-light:red");
        let chip = json(&handle(&sim, "GET", "/sim/gpiochip0?since=0", b""));
        assert_eq!(chip["transitions"][0]["line"], 17);
        assert_eq!(chip["transitions"][0]["cause"], "write");
        let seq = chip["transitions"][0]["seq"].as_u64().expect("seq");
        let later = json(&handle(
            &sim,
            "GET",
            &format!("/sim/gpiochip0?since={seq}"),
            b"",
        ));
        assert_eq!(later["transitions"], Json::Array(Vec::new()));
    }

    #[test]
    fn put_drives_a_line_like_a_button() {
        let sim = SimGpio::new();
        let pressed = handle(&sim, "PUT", "/sim/gpiochip0/4", b"high\n");
        assert_eq!(pressed.status, 200);
        assert_eq!(json(&pressed)["driven"], "high");
        assert_eq!(sim.chip("gpiochip0").level(4), Ok(Level::High));
        let released = handle(&sim, "PUT", "/sim/gpiochip0/4", b"float");
        assert_eq!(json(&released)["driven"], Json::Null);
        assert_eq!(sim.chip("gpiochip0").level(4), Ok(Level::Low));
    }

    #[test]
    fn mistakes_get_clear_errors() {
        let (sim, _lamp) = sim_with_a_lamp();
        let cases = [
            (
                "GET",
                "/sim/nochip",
                &b""[..],
                404,
                "no simulated chip \"nochip\"",
            ),
            ("GET", "/sim/gpiochip0/99", b"", 404, "has no line 99"),
            ("GET", "/sim/gpiochip0/x", b"", 404, "not a line number"),
            (
                "GET",
                "/sim/gpiochip0?since=x",
                b"",
                400,
                "not a sequence number",
            ),
            (
                "PUT",
                "/sim/gpiochip0/4",
                b"on",
                400,
                "send high, low or float",
            ),
            ("DELETE", "/sim/gpiochip0/4", b"", 405, "use GET"),
            ("GET", "/", b"", 404, "try GET /sim"),
        ];
        for (method, target, body, status, message) in cases {
            let response = handle(&sim, method, target, body);
            assert_eq!(response.status, status, "{method} {target}");
            let error = json(&response)["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(error.contains(message), "{method} {target}: {error}");
        }
    }

    async fn request(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(raw.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn streams_each_transition_as_a_json_line() {
        use tokio::io::AsyncBufReadExt;

        let (sim, mut lamp) = sim_with_a_lamp();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, sim.clone()));
        let missing = request(addr, "GET /sim/nochip/events HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");

        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /sim/gpiochip0/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let mut reader = tokio::io::BufReader::new(stream);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert_ne!(
                reader.read_line(&mut head).await.expect("head"),
                0,
                "{head}"
            );
        }
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("application/x-ndjson"), "{head}");
        // The head is out, so the stream is subscribed: what happens now is streamed.
        lamp.set(false).expect("set");
        lamp.set(true).expect("set");
        for expected in ["low", "high"] {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("event");
            let event: Json = serde_json::from_str(&line).expect("one JSON object per line");
            assert_eq!(event["line"], 17, "{line}");
            assert_eq!(event["level"], expected, "{line}");
            assert_eq!(event["cause"], "write", "{line}");
        }
        server.abort();
    }

    #[tokio::test]
    async fn serves_over_tcp_with_cors() {
        let (sim, _lamp) = sim_with_a_lamp();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, sim.clone()));
        let answer = request(addr, "GET /sim/gpiochip0/17 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(answer.contains("\"level\": \"high\""), "{answer}");
        let answer = request(
            addr,
            "PUT /sim/gpiochip0/5 HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n\r\nhigh",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert_eq!(sim.chip("gpiochip0").level(5), Ok(Level::High));
        let preflight = request(addr, "OPTIONS /sim/gpiochip0/5 HTTP/1.1\r\n\r\n").await;
        assert!(
            preflight.starts_with("HTTP/1.1 204 No Content\r\n"),
            "{preflight}"
        );
        assert!(preflight.contains("Access-Control-Allow-Methods: GET, PUT"));
        server.abort();
    }
}
