//! `--sim-http ADDR`: the simulated chips over HTTP/JSON, so that tests, the demo and a
//! browser can see what the pins do (desired → pin → reported) and press simulated buttons.
//!
//! | request | answer |
//! |---|---|
//! | `GET /sim` | `{"chips": [chip…]}`, every chip with its lines and transition log |
//! | `GET /sim/{chip}?since=SEQ` | one chip; only the transitions after `SEQ` |
//! | `GET /sim/{chip}/{line}` | one line: `{"line":17,"level":"high","direction":"out","active":true,…}` |
//! | `PUT /sim/{chip}/{line}` with body `high`, `low` or `float` | drives the line from outside (like a button or a sensor) and answers with the line |
//!
//! Chips are named as in the device configuration (`gpiochip0`). Every answer carries
//! `Access-Control-Allow-Origin: *`, so a page on another port can read it. It is meant for
//! loopback: anyone who reaches it can move the simulated inputs. HTTP/1.1, one request per
//! connection, no framework (the mapper stays small).

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::chip::sim::{Level, SimGpio};

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

/// Serves [`handle`] on `listener` until the task is dropped or aborted.
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
        let sim = sim.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(stream, &sim)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "sim HTTP request failed"),
                Err(_) => tracing::debug!(%peer, "sim HTTP request timed out"),
            }
        });
    }
}

/// Reads one request, answers it, closes the connection.
async fn exchange(mut stream: TcpStream, sim: &SimGpio) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(end + 4);
        }
        if request.len() >= MAX_REQUEST {
            break None;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break None;
        }
        request.extend_from_slice(&buf[..n]);
    };
    let response = match head_end {
        None => Response::error(400, "incomplete or oversized request head"),
        Some(head_end) => {
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
            if method == "OPTIONS" {
                // A browser's CORS preflight before a PUT.
                Response {
                    status: 204,
                    body: String::new(),
                }
            } else {
                handle(sim, method, target, &request[head_end..body_end])
            }
        }
    };
    let reason = match response.status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, PUT, POST, OPTIONS\r\n\
         Access-Control-Allow-Headers: Content-Type\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        response.status,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
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
