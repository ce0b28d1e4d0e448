//! One plain HTTP GET to a loopback endpoint of the stack (the mapper's `--sim-http` view of the
//! simulated pins, its `--metrics`): HTTP/1.0, read to the end of the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` on `addr`: the status code and the body.
///
/// # Errors
/// When the endpoint does not answer (connection refused, timeout) or the answer is not HTTP.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// The value of the Prometheus sample `name` (with its labels, exactly as exposed) in a
/// metrics text; 0 when it is absent (a counter not touched yet).
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| *series == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_get_returns_status_and_body() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = [0u8; 256];
            let n = stream.read(&mut request).expect("read");
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .expect("write");
            request
        });
        let (status, body) = get(addr, "/sim/gpiochip0/17").expect("answer");
        assert_eq!((status, body.as_str()), (200, "{}"));
        let request = server.join().expect("server");
        assert!(
            request.starts_with("GET /sim/gpiochip0/17 HTTP/1.0\r\n"),
            "{request}"
        );
    }

    #[test]
    fn samples_are_found_by_their_full_series_name() {
        let text = "# TYPE edgetwin_mapper_writes counter\n\
                    edgetwin_mapper_writes_total{device=\"default/hil-light\"} 3\n\
                    edgetwin_mapper_reports_total{device=\"default/hil-light\"} 12\n";
        assert_eq!(
            sample(
                text,
                "edgetwin_mapper_writes_total{device=\"default/hil-light\"}"
            ),
            3.0
        );
        assert_eq!(
            sample(
                text,
                "edgetwin_mapper_writes_total{device=\"default/other\"}"
            ),
            0.0
        );
    }
}
