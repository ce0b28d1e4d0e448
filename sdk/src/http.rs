//! Just enough HTTP/1.1 for a mapper: a `POST` for the HTTP-based sinks (JSON, OTLP, InfluxDB
//! line protocol, TDengine SQL) and a `GET /metrics` responder for Prometheus. Both use one connection per request (`Connection: close`), which
//! keeps them small and obviously correct; a mapper binary links no HTTP framework.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// Longest request or response head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Why an HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The exchange did not finish in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The server answered with something that is not HTTP/1.x.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The server answered with a non-2xx status.
    #[error("status {0}")]
    Status(u16),
}

/// Where to POST: `http://{host}:{port}{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path, starting with `/`.
    pub path: String,
}

impl std::fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Longest response body kept (the rest is read and dropped): sinks only need the status and,
/// for some servers, a short JSON answer.
const MAX_BODY: usize = 64 * 1024;

/// A server's answer to a [`post`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (at most 64 KiB of it; chunked bodies are decoded).
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of the body as text, for error messages.
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

/// POSTs `body` as JSON and waits for a 2xx status line, all within `timeout`.
pub async fn post_json(
    target: &HttpTarget,
    body: &[u8],
    timeout: Duration,
) -> Result<(), HttpError> {
    let response = post(target, "application/json", &[], body, timeout).await?;
    if response.is_success() {
        Ok(())
    } else {
        Err(HttpError::Status(response.status))
    }
}

/// POSTs `body` with the given content type and extra header lines (`name`, `value`) and
/// returns the server's answer, all within `timeout`. One connection per request.
pub async fn post(
    target: &HttpTarget,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, post_inner(target, content_type, headers, body))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// The request bytes [`post`] sends (head and body), exactly.
pub fn request_bytes(
    target: &HttpTarget,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: edgetwin-mapper\r\n",
        path = target.path,
        host = target.host,
        port = target.port,
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        len = body.len()
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

async fn post_inner(
    target: &HttpTarget,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
    stream
        .write_all(&request_bytes(target, content_type, headers, body))
        .await?;
    stream.flush().await?;
    let mut received = read_head(&mut stream).await?;
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let status = parse_status(&received)?;
    let Some(head_end) = head_end else {
        // A head without its end (cut short or oversized): the status line is all there is.
        return Ok(Response {
            status,
            body: Vec::new(),
        });
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let length: Option<usize> = header("content-length:").and_then(|v| v.parse().ok());
    let chunked = header("transfer-encoding:").is_some_and(|v| v.contains("chunked"));
    let mut body = received.split_off(head_end);
    let wanted = length.unwrap_or(usize::MAX).min(MAX_BODY);
    let mut buf = [0u8; 1024];
    while body.len() < wanted {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n.min(wanted.saturating_sub(body.len()))]);
    }
    body.truncate(wanted);
    if chunked {
        body = dechunk(&body);
    }
    Ok(Response { status, body })
}

/// Decodes a `Transfer-Encoding: chunked` body (as much of it as is complete).
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || rest.len() < start + size {
            break;
        }
        out.extend_from_slice(&rest[start..start + size]);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// Reads until the end of the head (`\r\n\r\n`), EOF or [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

fn parse_status(head: &[u8]) -> Result<u16, HttpError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.split(' ');
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(HttpError::Malformed(line.chars().take(80).collect())),
    }
}

/// Serves `GET /metrics` from `listener` until the task is dropped or aborted.
pub async fn serve_metrics(listener: TcpListener, metrics: Metrics) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "metrics request failed"),
                Err(_) => tracing::debug!(%peer, "metrics request timed out"),
            }
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let (status, content_type, body) = if head.starts_with(b"GET /metrics ") {
        ("200 OK", "text/plain; version=0.0.4", metrics.encode())
    } else {
        (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot server that records the request and answers with `status`.
    async fn one_shot(status: &'static str) -> (HttpTarget, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = read_head(&mut stream).await.expect("head");
            // Read the body announced by Content-Length.
            let text = String::from_utf8_lossy(&request).to_string();
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0);
            let head_len = text.find("\r\n\r\n").map_or(request.len(), |i| i + 4);
            while request.len() < head_len + len {
                let mut buf = [0u8; 256];
                let n = stream.read(&mut buf).await.expect("read body");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            stream.write_all(answer.as_bytes()).await.expect("answer");
            request
        });
        let target = HttpTarget {
            host: "127.0.0.1".into(),
            port,
            path: "/ingest".into(),
        };
        (target, server)
    }

    #[tokio::test]
    async fn post_sends_json_and_accepts_2xx() {
        let (target, server) = one_shot("204 No Content").await;
        post_json(&target, br#"{"value":"1"}"#, Duration::from_secs(5))
            .await
            .expect("posted");
        let request = String::from_utf8(server.await.expect("server")).expect("utf8");
        assert!(
            request.starts_with("POST /ingest HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Content-Type: application/json\r\n"));
        assert!(request.contains("Content-Length: 13\r\n"));
        assert!(request.ends_with("\r\n\r\n{\"value\":\"1\"}"));
    }

    #[tokio::test]
    async fn post_reports_error_status_and_refused_connection() {
        let (target, server) = one_shot("503 Service Unavailable").await;
        let err = post_json(&target, b"{}", Duration::from_secs(5))
            .await
            .expect_err("503");
        assert!(matches!(err, HttpError::Status(503)), "{err}");
        server.await.expect("server");

        // Nothing listens on the port any more.
        let err = post_json(&target, b"{}", Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(matches!(err, HttpError::Io(_)), "{err}");
    }

    #[tokio::test]
    async fn post_returns_the_status_and_the_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"code\":0}\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"co\r\n6\r\nde\":1}\r\n0\r\n\r\n",
                "HTTP/1.1 500 Oops\r\n\r\nno length",
            ] {
                let (mut stream, _) = listener.accept().await.expect("accept");
                read_head(&mut stream).await.expect("head");
                stream.write_all(answer.as_bytes()).await.expect("answer");
            }
        });
        let target = HttpTarget {
            host: "127.0.0.1".into(),
            port,
            path: "/rest/sql/db".into(),
        };
        let timeout = Duration::from_secs(5);
        let plain = post(&target, "text/plain", &[], b"", timeout)
            .await
            .expect("200");
        assert_eq!(
            (plain.status, plain.body.as_slice()),
            (200, &b"{\"code\":0}\n"[..])
        );
        let chunked = post(&target, "text/plain", &[], b"", timeout)
            .await
            .expect("200");
        assert_eq!(chunked.body, b"{\"code\":1}");
        let error = post(&target, "text/plain", &[], b"", timeout)
            .await
            .expect("500");
        assert!(!error.is_success());
        assert_eq!(error.body_excerpt(), "no length");
        server.await.expect("server");
    }

    #[test]
    fn requests_carry_extra_headers_before_the_content_headers() {
        let target = HttpTarget {
            host: "db".into(),
            port: 8086,
            path: "/api/v2/write?org=o&bucket=b".into(),
        };
        let bytes = request_bytes(
            &target,
            "text/plain",
            &[("Authorization", "Token t")],
            b"m v=1",
        );
        assert_eq!(
            String::from_utf8(bytes).expect("utf8"),
            "POST /api/v2/write?org=o&bucket=b HTTP/1.1\r\nHost: db:8086\r\nUser-Agent: edgetwin-mapper\r\n\
             Authorization: Token t\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nm v=1"
        );
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n\r\n").ok(), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 404 Not Found\r\n").ok(), Some(404));
        assert!(parse_status(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status(b"").is_err());
    }

    #[tokio::test]
    async fn metrics_are_served_on_get_metrics() {
        let metrics = Metrics::new();
        metrics.device("default/lamp").report();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_metrics(listener, metrics));
        for (path, expect) in [
            (
                "/metrics",
                "edgetwin_mapper_reports_total{device=\"default/lamp\"} 1",
            ),
            ("/", "404 Not Found"),
        ] {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("send");
            let mut response = String::new();
            stream.read_to_string(&mut response).await.expect("read");
            assert!(response.contains(expect), "{path}: {response}");
        }
        server.abort();
    }
}
