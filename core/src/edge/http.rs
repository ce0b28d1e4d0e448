//! A tiny HTTP/1.1 endpoint on loopback: `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! Hand-written on tokio so the edge build pulls no web framework: one request per connection,
//! `Connection: close`, GET and HEAD only, requests larger than 8 KiB or slower than 5 s dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::metrics::Metrics;

const MAX_REQUEST_BYTES: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Answers `/readyz`: `Ok(())` when ready, otherwise why not.
pub trait Readiness: Send + Sync + 'static {
    /// Whether the agent serves requests now.
    fn ready(&self) -> Result<(), String>;
}

impl<F: Fn() -> Result<(), String> + Send + Sync + 'static> Readiness for F {
    fn ready(&self) -> Result<(), String> {
        self()
    }
}

/// Serves requests on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, readiness: Arc<dyn Readiness>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            if let Err(error) = handle(stream, &metrics, readiness.as_ref()).await {
                tracing::debug!(%peer, %error, "http request dropped");
            }
        });
    }
}

async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    readiness: &dyn Readiness,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request too slow"))??;
    let response = respond(&head, metrics, readiness);
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > MAX_REQUEST_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The full response bytes for a request head.
fn respond(head: &str, metrics: &Metrics, readiness: &dyn Readiness) -> Vec<u8> {
    if head.len() > MAX_REQUEST_BYTES {
        return response(
            431,
            "Request Header Fields Too Large",
            TEXT,
            "request too large\n",
            true,
        );
    }
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let with_body = method == "GET";
    if !with_body && method != "HEAD" {
        return response(405, "Method Not Allowed", TEXT, "only GET and HEAD\n", true);
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/healthz" => response(200, "OK", TEXT, "ok\n", with_body),
        "/readyz" => match readiness.ready() {
            Ok(()) => response(200, "OK", TEXT, "ready\n", with_body),
            Err(reason) => response(
                503,
                "Service Unavailable",
                TEXT,
                &format!("not ready: {reason}\n"),
                with_body,
            ),
        },
        "/metrics" => response(200, "OK", OPENMETRICS, &metrics.render(), with_body),
        _ => response(
            404,
            "Not Found",
            TEXT,
            "try /healthz, /readyz or /metrics\n",
            with_body,
        ),
    }
}

fn response(code: u16, reason: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    async fn request(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_health_readiness_metrics_and_errors_over_real_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.set_devices(3);
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let readiness = move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("broker not connected".to_owned())
            }
        };
        let server = tokio::spawn(serve(listener, metrics, Arc::new(readiness)));

        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            request(addr, &get("/healthz"))
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
        let not_ready = request(addr, &get("/readyz")).await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.ends_with("not ready: broker not connected\n"));
        ready.store(true, Ordering::SeqCst);
        assert!(
            request(addr, &get("/readyz"))
                .await
                .starts_with("HTTP/1.1 200")
        );

        let metrics_text = request(addr, &get("/metrics?x=1")).await;
        assert!(metrics_text.contains("application/openmetrics-text"));
        assert!(
            metrics_text.contains("edgetwin_devices 3"),
            "{metrics_text}"
        );

        let head = request(addr, "HEAD /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(
            request(addr, &get("/nope"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            request(addr, "POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        // Garbage does not stop the server.
        assert!(request(addr, "\r\n\r\n").await.starts_with("HTTP/1.1 405"));
        assert!(
            request(addr, &get("/healthz"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        server.abort();
    }

    #[test]
    fn an_oversize_request_head_is_refused() {
        let huge = format!("GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
        let answer = respond(&huge, &Metrics::new(), &|| Ok(()));
        assert!(answer.starts_with(b"HTTP/1.1 431"));
    }
}
