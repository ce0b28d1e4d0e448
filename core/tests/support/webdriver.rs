//! A small W3C WebDriver client for browser tests: headless Chromium driven through Debian's
//! `chromedriver` over its HTTP JSON API (no WebDriver crate needed for the handful of commands
//! the tests use). The driver process is killed by pid when the [`Browser`] is dropped, after
//! the session (and with it the browser) has been closed.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Debian's Chromium and its WebDriver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver` binary.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether Chromium and chromedriver are installed. When they are not: fails the test when
/// peers are required (`cargo xtask test` provisions them), else says why the test skips.
pub fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    edgetwin_testkit::peers::missing(
        "browser test",
        &missing.join(" and "),
        "Debian packages chromium and chromium-driver",
    );
    false
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub fn start() -> Self {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("bound").port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        browser.wait_ready();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,760",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let answer = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}})),
        );
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_owned();
        browser
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(answer) = request(self.addr, "GET", "/status", None)
                && answer["value"]["ready"] == true
            {
                return;
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a command; panics (naming it) on an error answer.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let answer = request(self.addr, method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                answer["value"]["message"]
            );
        }
        answer
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut answer = self.call(method, &format!("/session/{}{path}", self.session), body);
        answer["value"].take()
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs a script in the page (`return …` gives its value).
    pub fn script(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Clicks the first element that matches a CSS selector.
    pub fn click(&self, selector: &str) {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": selector})),
        );
        let id = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"));
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// An attribute of the first element matching `selector` (`None` if there is none, or it
    /// lacks the attribute).
    pub fn attribute(&self, selector: &str, name: &str) -> Option<String> {
        let value = self.script(
            "const el = document.querySelector(arguments[0]); \
             return el ? el.getAttribute(arguments[1]) : null;",
            json!([selector, name]),
        );
        value.as_str().map(str::to_owned)
    }

    /// Waits (up to `timeout`) until `selector`'s attribute has the value; panics with what it
    /// was otherwise.
    pub fn wait_attribute(&self, selector: &str, name: &str, wanted: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.attribute(selector, name);
            if value.as_deref() == Some(wanted) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{selector} [{name}] is {value:?}, not {wanted:?}, after {timeout:?}; page says: {}",
                self.script(
                    "return document.querySelector('#message')?.textContent ?? ''",
                    json!([])
                )
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Saves a PNG screenshot of the window to `path` (directories created).
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        let encoded = self.session_call("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().expect("a base64 screenshot"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("screenshot written");
        path.to_path_buf()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; the answer body as JSON.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> std::io::Result<Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut chunked = false;
    let mut length: Option<usize> = None;
    let mut line = String::new();
    reader.read_line(&mut line)?; // status line; errors come as JSON bodies
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok();
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
            if size == 0 {
                break;
            }
            let start = raw.len();
            raw.resize(start + size, 0);
            reader.read_exact(&mut raw[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = length {
        // chromedriver keeps the connection open despite `Connection: close`.
        raw.resize(length, 0);
        reader.read_exact(&mut raw)?;
    } else {
        reader.read_to_end(&mut raw)?;
    }
    serde_json::from_slice(&raw).map_err(std::io::Error::other)
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | (sextet(*c) << (18 - 6 * i)));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
