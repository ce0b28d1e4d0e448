//! A scripted Kubernetes API server for tests: kube-rs' `Client` over a tower-test mock
//! service. The test takes each request the client sends, asserts its method, path and query,
//! content type and JSON body, and answers with a canned response — a whole JSON body, or a
//! watch stream it feeds event by event.

use std::convert::Infallible;
use std::time::Duration;

use futures::channel::mpsc;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use kube::Client;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{self, Handle, SendResponse};

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// The test's end of the mock API server.
pub(crate) struct MockApiServer {
    handle: Handle<Request<Body>, Response<MockBody>>,
}

/// A kube `Client` whose requests go to the returned [`MockApiServer`].
pub(crate) fn mock_client() -> (Client, MockApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<MockBody>>();
    (Client::new(service, "default"), MockApiServer { handle })
}

/// One request, waiting for its response.
pub(crate) struct Exchange {
    pub method: Method,
    /// Path and query, e.g. `/apis/devices.kubeedge.io/v1beta1/devices?&limit=500`.
    pub path: String,
    pub content_type: Option<String>,
    /// The JSON body, if the request had one.
    pub body: Option<Value>,
    respond: SendResponse<Response<MockBody>>,
}

impl MockApiServer {
    /// The next request the client sends (fails the test after 10 s).
    pub async fn next(&mut self) -> Exchange {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(10), self.handle.next_request())
                .await
                .expect("a request within 10 s")
                .expect("the client is alive");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = (!bytes.is_empty())
            .then(|| serde_json::from_slice(&bytes).expect("a JSON request body"));
        Exchange {
            method: parts.method,
            path: parts
                .uri
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
            respond,
        }
    }

    /// The next request, asserted to have this method, path and query, and content type.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
    ) -> Exchange {
        let exchange = self.next().await;
        exchange.assert(method, path, content_type);
        exchange
    }
}

impl Exchange {
    /// Asserts method, path and query, and content type.
    #[track_caller]
    pub fn assert(&self, method: Method, path: &str, content_type: Option<&str>) {
        assert_eq!(
            (&self.method, self.path.as_str()),
            (&method, path),
            "request"
        );
        assert_eq!(
            self.content_type.as_deref(),
            content_type,
            "content type of {method} {path}"
        );
    }

    /// The request body, which must be there.
    #[track_caller]
    pub fn body(&self) -> &Value {
        self.body.as_ref().expect("a request body")
    }

    /// Answers with a status and a JSON body.
    pub fn reply(self, status: u16, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)).boxed_unsync())
            .expect("response");
        self.respond.send_response(response);
    }

    /// Answers with a Kubernetes `Status` failure.
    pub fn reply_status(self, code: u16, reason: &str) {
        self.reply(
            code,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("scripted {reason}"), "reason": reason, "code": code,
            }),
        );
    }

    /// Answers 200 with a watch stream the test feeds; the stream ends when the feed is dropped.
    pub fn stream(self) -> WatchFeed {
        let (tx, rx) = mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
        let response = Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(StreamBody::new(rx).boxed_unsync())
            .expect("response");
        self.respond.send_response(response);
        WatchFeed { tx }
    }
}

/// The test's end of a watch response.
pub(crate) struct WatchFeed {
    tx: mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>,
}

impl WatchFeed {
    /// Sends one watch event: `{"type": kind, "object": object}` and a newline.
    pub fn send(&self, kind: &str, object: Value) {
        let mut line =
            serde_json::to_vec(&serde_json::json!({"type": kind, "object": object})).expect("JSON");
        line.push(b'\n');
        self.tx
            .unbounded_send(Ok(Frame::data(Bytes::from(line))))
            .expect("the client reads the watch");
    }
}
