//! A small HTTP/1.1 client for the embedded registry's API (hyper). One kept-alive connection
//! is reused from request to request (`edgetwin ctl set` reads and writes on one connection);
//! a watch has a connection of its own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpStream;

use super::api::{
    self, APPLY_RESULT_HEADER, ApiStatus, EventList, JSON_PATCH, MERGE_PATCH, ObjectList,
    WatchEvent,
};
use crate::cloud::registry::object_set::Kind;

/// How long connecting may take before the client gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection older than this is not reused: well before the server's idle timeout
/// (30 s, hyper's default), so the server does not close it while a request is on its way.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not one this client can use.
    #[error("invalid server URL {url:?}: {why}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to the registry at {url}: {source} (is `edgetwin cloud` running?)")]
    Connect {
        /// The server URL.
        url: String,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        /// The server URL.
        url: String,
        /// The error.
        source: hyper::Error,
    },
    /// The server answered with an error status.
    #[error("Error from server ({}): {}", .0.reason, .0.message)]
    Api(Box<ApiStatus>),
    /// The response body is not what the API sends.
    #[error("unexpected response from the registry: {0}")]
    Decode(String),
}

impl ClientError {
    /// The server's status, when the server answered with an error.
    pub fn api_status(&self) -> Option<&ApiStatus> {
        match self {
            ClientError::Api(status) => Some(status),
            _ => None,
        }
    }

    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.api_status().is_some_and(|s| s.code == 404)
    }

    /// Whether the server refused a write because the object changed (resourceVersion).
    pub fn is_conflict(&self) -> bool {
        self.api_status()
            .is_some_and(|s| s.code == 409 && s.reason == "Conflict")
    }
}

/// A successful write: the stored object, how the write turned out, and the server's warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    /// The object as stored.
    pub object: T,
    /// `created`, `configured` or `unchanged` (empty when the server did not say).
    pub result: String,
    /// Warnings the server attached (`Warning` headers).
    pub warnings: Vec<String>,
}

/// A client for one registry API server. Clones share the idle connection.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    url: String,
    authority: String,
    token: String,
    /// The connection of the last finished request, for the next one.
    idle: Arc<Mutex<Option<IdleConnection>>>,
}

/// A connection between requests, and since when.
type IdleConnection = (SendRequest<Full<Bytes>>, Instant);

/// A response read to its end.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl RegistryClient {
    /// A client for the server at `url` (`http://host:port`) using `token`.
    pub fn new(url: &str, token: &str) -> Result<Self, ClientError> {
        let invalid = |why| ClientError::InvalidUrl {
            url: url.to_owned(),
            why,
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                invalid("https is not supported: the registry API is plain HTTP on loopback")
            } else {
                invalid("it must start with http://")
            }
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(invalid("expected http://HOST:PORT without a path"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            url: format!("http://{authority}"),
            authority,
            token: token.to_owned(),
            idle: Arc::default(),
        })
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads one object.
    pub async fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<T, ClientError> {
        let answer = self
            .exchange(Method::GET, &api::object_path(kind, namespace, name), None)
            .await?;
        decode(answer)
    }

    /// Lists the objects of a kind in one namespace, or in all with `None`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<ObjectList<T>, ClientError> {
        let answer = self
            .exchange(Method::GET, &api::collection_path(kind, namespace), None)
            .await?;
        decode(answer)
    }

    /// Creates an object, or replaces its spec, labels and annotations (`PUT`).
    pub async fn apply<T: Serialize, R: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        object: &T,
    ) -> Result<Written<R>, ClientError> {
        let body = encode(object)?;
        let answer = self
            .exchange(
                Method::PUT,
                &api::object_path(kind, namespace, name),
                Some(("application/json", body)),
            )
            .await?;
        written(answer)
    }

    /// Applies a JSON merge patch to an object.
    pub async fn merge_patch<R: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Written<R>, ClientError> {
        let path = api::object_path(kind, namespace, name);
        self.patch(&path, MERGE_PATCH, patch).await
    }

    /// Applies a JSON patch (RFC 6902, a JSON array of operations) to an object.
    pub async fn json_patch<R: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        operations: &Value,
    ) -> Result<Written<R>, ClientError> {
        let path = api::object_path(kind, namespace, name);
        self.patch(&path, JSON_PATCH, operations).await
    }

    /// Applies a JSON merge patch to an object's status.
    pub async fn merge_patch_status<R: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Written<R>, ClientError> {
        let path = format!("{}/status", api::object_path(kind, namespace, name));
        self.patch(&path, MERGE_PATCH, patch).await
    }

    /// Sets desired values of a Device's properties by name, in one write (the `desired`
    /// subresource: no read first, no precondition to retry on).
    pub async fn set_desired<R: DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        values: &[(String, String)],
    ) -> Result<Written<R>, ClientError> {
        let object: serde_json::Map<String, Value> = values
            .iter()
            .map(|(property, value)| (property.clone(), Value::String(value.clone())))
            .collect();
        let body = encode(&object)?;
        let answer = self
            .exchange(
                Method::PATCH,
                &api::desired_path(namespace, name),
                Some(("application/json", body)),
            )
            .await?;
        written(answer)
    }

    async fn patch<R: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &'static str,
        patch: &Value,
    ) -> Result<Written<R>, ClientError> {
        let body = encode(patch)?;
        let answer = self
            .exchange(Method::PATCH, path, Some((content_type, body)))
            .await?;
        written(answer)
    }

    /// Deletes an object; returns its last state.
    pub async fn delete<R: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<R, ClientError> {
        let answer = self
            .exchange(
                Method::DELETE,
                &api::object_path(kind, namespace, name),
                None,
            )
            .await?;
        decode(answer)
    }

    /// The events of a Device.
    pub async fn device_events(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<EventList, ClientError> {
        let path = format!("{}/events", api::object_path(Kind::Device, namespace, name));
        decode(self.exchange(Method::GET, &path, None).await?)
    }

    /// Watches a kind in one namespace or all: every existing object as `ADDED`, then changes
    /// (or, from a `resourceVersion`, the changes after it). The stream ends when the server
    /// closes the connection; an `ERROR` event carries an [`ApiStatus`] in `object`.
    pub async fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        resource_version: Option<u64>,
    ) -> Result<BoxStream<'static, Result<WatchEvent<Value>, ClientError>>, ClientError> {
        let mut path = format!("{}?watch=true", api::collection_path(kind, namespace));
        if let Some(rv) = resource_version {
            path.push_str(&format!("&resourceVersion={rv}"));
        }
        // A watch's body never ends: its connection is its own, never returned for reuse.
        let request = self.request(Method::GET, &path, None)?;
        let response = self
            .connect()
            .await?
            .send_request(request)
            .await
            .map_err(|source| self.http_error(source))?;
        let response = fail_on_error(response).await?;
        let url = self.url.clone();
        let body = response.into_body();
        let lines = futures::stream::unfold(
            (body, Vec::<u8>::new(), false),
            move |(mut body, mut buffer, mut ended)| {
                let url = url.clone();
                async move {
                    loop {
                        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buffer.drain(..=end).collect();
                            if line.iter().all(u8::is_ascii_whitespace) {
                                continue;
                            }
                            let event = serde_json::from_slice(&line)
                                .map_err(|e| ClientError::Decode(format!("watch event: {e}")));
                            return Some((event, (body, buffer, ended)));
                        }
                        if ended {
                            return None;
                        }
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    buffer.extend_from_slice(&data);
                                }
                            }
                            Some(Err(source)) => {
                                return Some((
                                    Err(ClientError::Http { url, source }),
                                    (body, buffer, true),
                                ));
                            }
                            None => {
                                ended = true;
                                buffer.push(b'\n');
                            }
                        }
                    }
                }
            },
        );
        Ok(lines.boxed())
    }

    /// Sends one request and reads the whole response, on the idle connection when there is
    /// one that is still open, else on a new one (which is then kept for the next request).
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, ClientError> {
        let mut request = self.request(method, path, body)?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .filter(|(_, since)| since.elapsed() < MAX_IDLE);
        let open = match idle {
            Some((mut sender, _)) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let (mut sender, response) = match open {
            Some(mut sender) => {
                match sender.try_send_request(request).await {
                    Ok(response) => (sender, response),
                    // The server closed the idle connection before the request went out (it
                    // was not sent, so even a write may be retried): a new connection.
                    Err(mut error) if error.message().is_some() => {
                        request = error.take_message().ok_or_else(|| {
                            ClientError::Decode("the unsent request was lost".into())
                        })?;
                        self.send_on_new_connection(request).await?
                    }
                    Err(error) => return Err(self.http_error(error.into_error())),
                }
            }
            None => self.send_on_new_connection(request).await?,
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Decode(format!("cannot read the response: {e}")))?
            .to_bytes();
        // Read to its end: the connection can carry the next request.
        if sender.ready().await.is_ok() {
            *self.idle.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((sender, Instant::now()));
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn send_on_new_connection(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(SendRequest<Full<Bytes>>, Response<Incoming>), ClientError> {
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| self.http_error(source))?;
        Ok((sender, response))
    }

    /// Opens a connection; its driver runs as a task until the connection closes.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let connect = TcpStream::connect(&self.authority);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            })
            .map_err(|source| ClientError::Connect {
                url: self.url.clone(),
                source,
            })?;
        // Small requests: send each at once.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| self.http_error(source))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "registry connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        request
            .body(body)
            .map_err(|e| ClientError::Decode(format!("cannot build the request: {e}")))
    }

    fn http_error(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            url: self.url.clone(),
            source,
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Decode(format!("cannot encode: {e}")))
}

/// Turns an error response into [`ClientError::Api`]; passes a success through.
async fn fail_on_error(response: Response<Incoming>) -> Result<Response<Incoming>, ClientError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Decode(format!("cannot read the response: {e}")))?
        .to_bytes();
    Err(api_error(status, &bytes))
}

fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiStatus>(bytes) {
        Ok(api_status) => ClientError::Api(Box::new(api_status)),
        Err(_) => ClientError::Api(Box::new(ApiStatus::failure(
            status.as_u16(),
            status.canonical_reason().unwrap_or("Unknown"),
            String::from_utf8_lossy(bytes).trim().to_owned(),
        ))),
    }
}

fn decode<T: DeserializeOwned>(answer: Answer) -> Result<T, ClientError> {
    Ok(written(answer)?.object)
}

fn written<T: DeserializeOwned>(answer: Answer) -> Result<Written<T>, ClientError> {
    let Answer {
        status,
        headers,
        body,
    } = answer;
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    let object = serde_json::from_slice(&body)
        .map_err(|e| ClientError::Decode(format!("{e} in {}", String::from_utf8_lossy(&body))))?;
    let result = headers
        .get(APPLY_RESULT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let warnings = headers
        .get_all(header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(warning_text)
        .collect();
    Ok(Written {
        object,
        result,
        warnings,
    })
}

/// The text of a `Warning: 299 - "text"` header (unquoted); other shapes are returned whole.
fn warning_text(value: &str) -> String {
    let Some(quoted) = value
        .strip_prefix("299 - \"")
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return value.to_owned();
    };
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            text.extend(chars.next());
        } else {
            text.push(c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A minimal HTTP/1.1 server answering every request `200 {}`; counts its connections and,
    /// with `close_after_answer`, closes each connection after its first answer without saying
    /// so (as a server's idle timeout does).
    async fn counting_server(close_after_answer: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        // GET requests: the head ends with an empty line, no body.
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match stream.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer.as_bytes()).await.is_err() || close_after_answer
                        {
                            return;
                        }
                    }
                });
            }
        });
        (url, connections)
    }

    #[tokio::test]
    async fn requests_one_after_another_share_one_connection() {
        let (url, connections) = counting_server(false).await;
        let client = RegistryClient::new(&url, "t").expect("client");
        for _ in 0..3 {
            let _: Value = client.get(Kind::Device, "default", "d").await.expect("get");
        }
        // A clone shares the idle connection.
        let _: Value = client
            .clone()
            .get(Kind::Device, "default", "d")
            .await
            .expect("get");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        let (url, connections) = counting_server(true).await;
        let client = RegistryClient::new(&url, "t").expect("client");
        for _ in 0..3 {
            let _: Value = client.get(Kind::Device, "default", "d").await.expect("get");
            // Let the close arrive before the next request, and also not: both must work.
            tokio::task::yield_now().await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn urls_must_be_plain_http_host_and_port() {
        let client = RegistryClient::new("http://127.0.0.1:7411/", "t").expect("valid");
        assert_eq!(client.url(), "http://127.0.0.1:7411");
        assert_eq!(
            RegistryClient::new("http://localhost", "t")
                .expect("valid")
                .url(),
            "http://localhost:80"
        );
        for bad in ["127.0.0.1:1", "https://x:1", "http://", "http://x:1/api"] {
            let err = RegistryClient::new(bad, "t").expect_err(bad);
            assert!(err.to_string().starts_with("invalid server URL"), "{err}");
        }
    }

    #[test]
    fn warning_headers_unquote() {
        assert_eq!(
            warning_text(r#"299 - "model \"m\" is missing""#),
            r#"model "m" is missing"#
        );
        assert_eq!(warning_text("something else"), "something else");
    }
}
