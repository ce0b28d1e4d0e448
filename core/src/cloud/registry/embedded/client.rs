//! A small HTTP/1.1 client for the embedded registry's API (hyper, one connection per request:
//! the server is on loopback and `edgetwin ctl` makes a handful of calls).

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpStream;

use super::api::{
    self, APPLY_RESULT_HEADER, ApiStatus, EventList, MERGE_PATCH, ObjectList, WatchEvent,
};
use crate::cloud::registry::object_set::Kind;

/// How long connecting may take before the client gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A client for one registry API server.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    url: String,
    authority: String,
    token: String,
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
        let response = self
            .send(Method::GET, &api::object_path(kind, namespace, name), None)
            .await?;
        decode(response).await
    }

    /// Lists the objects of a kind in one namespace, or in all with `None`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<ObjectList<T>, ClientError> {
        let response = self
            .send(Method::GET, &api::collection_path(kind, namespace), None)
            .await?;
        decode(response).await
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
        let response = self
            .send(
                Method::PUT,
                &api::object_path(kind, namespace, name),
                Some(("application/json", body)),
            )
            .await?;
        written(response).await
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
        self.patch(&path, patch).await
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
        self.patch(&path, patch).await
    }

    async fn patch<R: DeserializeOwned>(
        &self,
        path: &str,
        patch: &Value,
    ) -> Result<Written<R>, ClientError> {
        let body = encode(patch)?;
        let response = self
            .send(Method::PATCH, path, Some((MERGE_PATCH, body)))
            .await?;
        written(response).await
    }

    /// Deletes an object; returns its last state.
    pub async fn delete<R: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<R, ClientError> {
        let response = self
            .send(
                Method::DELETE,
                &api::object_path(kind, namespace, name),
                None,
            )
            .await?;
        decode(response).await
    }

    /// The events of a Device.
    pub async fn device_events(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<EventList, ClientError> {
        let path = format!("{}/events", api::object_path(Kind::Device, namespace, name));
        decode(self.send(Method::GET, &path, None).await?).await
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
        let response = self.send(Method::GET, &path, None).await?;
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

    /// Sends one request on a fresh connection.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response<Incoming>, ClientError> {
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
        // One small request per connection: send it at once.
        let _ = stream.set_nodelay(true);
        let http = |source| ClientError::Http {
            url: self.url.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "registry connection ended with an error");
            }
        });
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
        let request = request
            .body(body)
            .map_err(|e| ClientError::Decode(format!("cannot build the request: {e}")))?;
        sender.send_request(request).await.map_err(http)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Decode(format!("cannot encode: {e}")))
}

async fn body_bytes(
    response: Response<Incoming>,
) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| ClientError::Decode(format!("cannot read the response: {e}")))?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

/// Turns an error response into [`ClientError::Api`]; passes a success through.
async fn fail_on_error(response: Response<Incoming>) -> Result<Response<Incoming>, ClientError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let (status, _, bytes) = body_bytes(response).await?;
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

async fn decode<T: DeserializeOwned>(response: Response<Incoming>) -> Result<T, ClientError> {
    Ok(written(response).await?.object)
}

async fn written<T: DeserializeOwned>(
    response: Response<Incoming>,
) -> Result<Written<T>, ClientError> {
    let (status, headers, bytes) = body_bytes(response).await?;
    if !status.is_success() {
        return Err(api_error(status, &bytes));
    }
    let object = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Decode(format!("{e} in {}", String::from_utf8_lossy(&bytes))))?;
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
