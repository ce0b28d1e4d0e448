//! The embedded registry's HTTP JSON API (axum). See [`super::api`] for the paths.
//!
//! Every API path needs the bearer token — reads too: Device configuration holds addresses and
//! sometimes credentials. Open is `/healthz`; routes merged in by the caller ([`ApiServer::merge`],
//! e.g. the dashboard) bring their own checks. The listener is meant for loopback; binding
//! elsewhere works but logs a warning, because the API is plain HTTP.

use std::future::Future;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::api::{
    self, APPLY_RESULT_HEADER, ApiStatus, EventList, JSON_PATCH, MERGE_PATCH, ObjectList,
    StatusCause, StatusDetails, WatchEvent,
};
use super::database::{Stored, namespace_of};
use super::{Applied, ApplyMode, EmbeddedRegistry, Error, Patch, validate};
use crate::cloud::registry::object_set::{Kind, Object};
use edgetwin_model::devices::{API_VERSION, Device, DeviceModel};

/// Runs `$body` with `$T` bound to the Rust type of `$kind`.
macro_rules! by_kind {
    ($kind:expr, $T:ident => $body:expr) => {
        match $kind {
            Kind::Device => {
                type $T = Device;
                $body
            }
            Kind::DeviceModel => {
                type $T = DeviceModel;
                $body
            }
        }
    };
}

#[derive(Clone)]
struct AppState {
    registry: EmbeddedRegistry,
    token: std::sync::Arc<str>,
    stopping: watch::Receiver<bool>,
}

/// The API server: bound, not yet serving.
pub struct ApiServer {
    listener: TcpListener,
    app: Router,
    stop: watch::Sender<bool>,
}

impl ApiServer {
    /// Binds the listener. Requests need `Authorization: Bearer {token}`.
    pub async fn bind(
        addr: SocketAddr,
        registry: EmbeddedRegistry,
        token: String,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() {
            tracing::warn!(addr = %bound, "the registry API listens beyond loopback over plain HTTP: the token travels in clear text");
        }
        let (stop, stopping) = watch::channel(false);
        let app = router(AppState {
            registry,
            token: token.into(),
            stopping,
        });
        Ok(Self {
            listener,
            app,
            stop,
        })
    }

    /// Serves `routes` too, on the same listener and outside the token check (they bring their
    /// own): `edgetwin cloud` adds the dashboard this way.
    pub fn merge(mut self, routes: Router) -> Self {
        self.app = self.app.merge(routes);
        self
    }

    /// Turns `true` when the server begins to shut down: long-lived responses (watches, event
    /// streams) end then, so that the shutdown does not wait for them.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:7411`.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("http://{}", self.local_addr()?))
    }

    /// Serves until `shutdown` completes, then ends open watches and waits for requests in
    /// flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = self.stop;
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "registry API listening");
        // Small JSON answers and watch events: send each at once (no Nagle delay).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY on a registry API connection");
            }
        });
        axum::serve(listener, self.app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.send_replace(true);
            })
            .await
    }
}

fn router(state: AppState) -> Router {
    let prefix = api::API_PREFIX;
    let api = Router::new()
        .route(&format!("{prefix}/{{plural}}"), get(list_all))
        .route(
            &format!("{prefix}/namespaces/{{ns}}/{{plural}}"),
            get(list_namespaced).post(create),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/{{plural}}/{{name}}"),
            get(read).put(apply).patch(patch).delete(delete),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/{{plural}}/{{name}}/status"),
            get(read).patch(patch_status),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/devices/{{name}}/events"),
            get(events),
        )
        .route(
            &format!("{prefix}/namespaces/{{ns}}/devices/{{name}}/desired"),
            axum::routing::patch(set_desired),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        .fallback(|| async {
            failure(ApiStatus::failure(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        })
        .method_not_allowed_fallback(|| async {
            failure(ApiStatus::failure(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ))
        })
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            tracing::debug!(path = %request.uri().path(), "request without a valid token");
            failure(ApiStatus::failure(
                401,
                "Unauthorized",
                "Unauthorized: a valid bearer token is required (it is in registry.token in the cloud's data directory)",
            ))
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn failure(status: ApiStatus) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(status)).into_response()
}

impl Error {
    /// The Kubernetes `Status` for this error.
    pub fn to_status(&self) -> ApiStatus {
        let (code, reason) = match self {
            Error::NotFound { .. } => (404, "NotFound"),
            Error::AlreadyExists { .. } => (409, "AlreadyExists"),
            Error::Conflict { .. } => (409, "Conflict"),
            Error::Invalid { .. } => (422, "Invalid"),
            Error::BadRequest(_) => (400, "BadRequest"),
            Error::Gone { .. } => (410, "Expired"),
            Error::Closed => (503, "ServiceUnavailable"),
            _ => (500, "InternalError"),
        };
        let mut status = ApiStatus::failure(code, reason, self.to_string());
        status.details = match self {
            Error::NotFound { kind, name, .. }
            | Error::AlreadyExists { kind, name }
            | Error::Conflict { kind, name } => Some(StatusDetails {
                name: Some(name.clone()),
                kind: Some(kind.plural().to_owned()),
                causes: Vec::new(),
            }),
            Error::Invalid { kind, name, causes } => Some(StatusDetails {
                name: Some(name.clone()),
                kind: Some(kind.as_str().to_owned()),
                causes: causes.iter().map(StatusCause::from).collect(),
            }),
            _ => None,
        };
        status
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.to_status();
        if status.code >= 500 {
            tracing::error!(error = %self, "registry API request failed");
        }
        failure(status)
    }
}

type ApiResult = Result<Response, Error>;

fn kind_of(plural: &str) -> Result<Kind, Error> {
    [Kind::Device, Kind::DeviceModel]
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown resource {plural:?}: this API serves devices and devicemodels"
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    watch: Option<String>,
    resource_version: Option<String>,
}

impl ListQuery {
    fn is_watch(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true" | "1"))
    }

    /// The revision to watch from: `None` (list first) for absent, empty or `0`.
    fn start_revision(&self) -> Result<Option<u64>, Error> {
        match self.resource_version.as_deref() {
            None | Some("" | "0") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                Error::BadRequest(format!(
                    "resourceVersion {text:?} is not a registry revision"
                ))
            }),
        }
    }
}

async fn list_all(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    list_or_watch(state, kind_of(&plural)?, None, query).await
}

async fn list_namespaced(
    State(state): State<AppState>,
    Path((ns, plural)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    list_or_watch(state, kind_of(&plural)?, Some(ns), query).await
}

async fn list_or_watch(
    state: AppState,
    kind: Kind,
    namespace: Option<String>,
    query: ListQuery,
) -> ApiResult {
    if query.is_watch() {
        return watch_response(state, kind, namespace, query.start_revision()?);
    }
    by_kind!(kind, T => {
        let (items, revision) = state.registry.list::<T>(namespace.as_deref()).await?;
        Ok(Json(ObjectList::new(kind, revision, items)).into_response())
    })
}

/// Streams the change log as newline-delimited JSON watch events, filtered by kind and
/// namespace, until the client goes away or the server stops.
fn watch_response(
    state: AppState,
    kind: Kind,
    namespace: Option<String>,
    from: Option<u64>,
) -> ApiResult {
    let mut stopping = state.stopping.clone();
    let stopped = async move {
        // An error means the server is gone: stop too.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let lines = state
        .registry
        .watch_changes(from)
        .filter_map(move |item| {
            let line = match item {
                Ok(change) => {
                    let key = change.object.key();
                    let wanted = key.kind == kind
                        && namespace.as_deref().is_none_or(|ns| ns == key.namespace);
                    wanted.then(|| watch_line(change.change.as_str(), &change.object))
                }
                Err(err) => Some(
                    serde_json::to_vec(&WatchEvent {
                        kind: "ERROR".to_owned(),
                        object: err.to_status(),
                    })
                    .map_err(Error::Encode),
                ),
            };
            let line = line.map(|encoded| {
                let mut bytes = encoded.unwrap_or_else(|err| {
                    tracing::error!(error = %err, "cannot encode a watch event");
                    Vec::new()
                });
                bytes.push(b'\n');
                Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
            });
            std::future::ready(line)
        })
        .take_until(stopped);
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// One watch event as JSON, the object written straight from its typed form (no intermediate
/// `serde_json::Value`).
fn watch_line(change: &str, object: &Object) -> Result<Vec<u8>, Error> {
    let kind = change.to_owned();
    match object {
        Object::Device(device) => serde_json::to_vec(&WatchEvent {
            kind,
            object: device.as_ref(),
        }),
        Object::Model(model) => serde_json::to_vec(&WatchEvent {
            kind,
            object: model.as_ref(),
        }),
    }
    .map_err(Error::Encode)
}

async fn read(
    State(state): State<AppState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult {
    by_kind!(kind_of(&plural)?, T => {
        let object = state.registry.get::<T>(&ns, &name).await?;
        let object = object.ok_or(Error::NotFound { kind: T::KIND, namespace: ns, name })?;
        Ok(Json(object).into_response())
    })
}

async fn create(
    State(state): State<AppState>,
    Path((ns, plural)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    by_kind!(kind_of(&plural)?, T => {
        let object: T = object_from_body(&headers, &body, &ns, None)?;
        let applied = state.registry.apply(object, ApplyMode::Create).await?;
        Ok(written(StatusCode::CREATED, applied))
    })
}

async fn apply(
    State(state): State<AppState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    by_kind!(kind_of(&plural)?, T => {
        let object: T = object_from_body(&headers, &body, &ns, Some(&name))?;
        let applied = state.registry.apply(object, ApplyMode::CreateOrReplace).await?;
        let code = match applied.outcome {
            super::Outcome::Created(_) => StatusCode::CREATED,
            _ => StatusCode::OK,
        };
        Ok(written(code, applied))
    })
}

async fn patch(
    State(state): State<AppState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    edgetwin_hoptrace::mark("registry.patch.received");
    let patch = patch_from_body(&headers, &body)?;
    by_kind!(kind_of(&plural)?, T => {
        let applied = state.registry.patch_object::<T>(&ns, &name, patch).await?;
        edgetwin_hoptrace::mark("registry.patch.committed");
        Ok(written(StatusCode::OK, applied))
    })
}

async fn set_desired(
    State(state): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    edgetwin_hoptrace::mark("registry.patch.received");
    require_content_type(
        &headers,
        "application/json",
        "an object of property name to desired value, e.g. {\"red\":\"ON\"}",
    )?;
    let values = desired_values_from_body(&body)?;
    let applied = state.registry.set_desired(&ns, &name, values).await?;
    edgetwin_hoptrace::mark("registry.patch.committed");
    Ok(written(StatusCode::OK, applied))
}

async fn patch_status(
    State(state): State<AppState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let patch = patch_from_body(&headers, &body)?;
    by_kind!(kind_of(&plural)?, T => {
        let applied = state.registry.patch_object_status::<T>(&ns, &name, patch).await?;
        Ok(written(StatusCode::OK, applied))
    })
}

async fn delete(
    State(state): State<AppState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult {
    by_kind!(kind_of(&plural)?, T => {
        let deleted = state.registry.delete::<T>(&ns, &name).await?;
        Ok(Json(deleted).into_response())
    })
}

async fn events(
    State(state): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    if state.registry.get::<Device>(&ns, &name).await?.is_none() {
        return Err(Error::NotFound {
            kind: Kind::Device,
            namespace: ns,
            name,
        });
    }
    let items = state.registry.device_events(&ns, &name).await?;
    Ok(Json(EventList { items }).into_response())
}

/// A written object, with the apply result and the warnings as headers.
fn written<T: Stored>(code: StatusCode, applied: Applied<T>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        APPLY_RESULT_HEADER,
        HeaderValue::from_static(applied.outcome.verb()),
    );
    for warning in &applied.warnings {
        if let Ok(value) = HeaderValue::from_str(&warning_header(warning)) {
            headers.append(header::WARNING, value);
        }
    }
    (code, headers, Json(applied.outcome.into_object())).into_response()
}

/// A `Warning` header value as the API server writes it: `299 - "text"`, with the text as a
/// quoted string (non-ASCII replaced, since header values are ASCII).
fn warning_header(text: &str) -> String {
    let mut out = String::from("299 - \"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

fn require_content_type(headers: &HeaderMap, expected: &str, hint: &str) -> Result<(), Error> {
    if media_type(headers).eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(unsupported_content_type(
            headers,
            &format!("{expected} ({hint})"),
        ))
    }
}

/// The request's `Content-Type` without parameters (`application/json; charset=utf-8` →
/// `application/json`), empty when missing.
fn media_type(headers: &HeaderMap) -> &str {
    content_type(headers).split(';').next().unwrap_or("").trim()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn unsupported_content_type(headers: &HeaderMap, expected: &str) -> Error {
    Error::BadRequest(format!(
        "Content-Type {:?} is not supported here: send {expected}",
        content_type(headers)
    ))
}

fn json_from_body(body: &Bytes) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|err| Error::BadRequest(format!("the request body is not valid JSON: {err}")))
}

/// A `PATCH` body: a JSON merge patch or a JSON patch, by its `Content-Type` (as the Kubernetes
/// API server takes for custom resources; they have no strategic merge patch).
fn patch_from_body(headers: &HeaderMap, body: &Bytes) -> Result<Patch, Error> {
    match media_type(headers) {
        t if t.eq_ignore_ascii_case(MERGE_PATCH) => Ok(Patch::Merge(json_from_body(body)?)),
        t if t.eq_ignore_ascii_case(JSON_PATCH) => serde_json::from_slice(body)
            .map(Patch::Json)
            .map_err(|err| {
                Error::BadRequest(format!(
                    "the request body is not a JSON patch (RFC 6902: an array of operations such as {{\"op\":\"replace\",\"path\":\"/spec/nodeName\",\"value\":\"pi-2\"}}): {err}"
                ))
            }),
        _ => Err(unsupported_content_type(
            headers,
            &format!("{MERGE_PATCH} (a JSON merge patch, RFC 7386) or {JSON_PATCH} (a JSON patch, RFC 6902)"),
        )),
    }
}

/// The body of a `desired` request: a non-empty JSON object whose values are strings (desired
/// values are strings in a Device, as in KubeEdge).
fn desired_values_from_body(body: &Bytes) -> Result<Vec<(String, String)>, Error> {
    let Value::Object(fields) = json_from_body(body)? else {
        return Err(Error::BadRequest(
            "the body must be a JSON object of property name to desired value, e.g. {\"red\":\"ON\"}"
                .into(),
        ));
    };
    if fields.is_empty() {
        return Err(Error::BadRequest("no property to set".into()));
    }
    fields
        .into_iter()
        .map(|(property, value)| match value {
            Value::String(value) => Ok((property, value)),
            other => Err(Error::BadRequest(format!(
                "desired values are strings: {property:?} is {other} (send \"{}\")",
                other.to_string().trim_matches('"')
            ))),
        })
        .collect()
}

/// Parses a request body into an object of type `T` for the namespace (and name) of the URL.
fn object_from_body<T: Stored>(
    headers: &HeaderMap,
    body: &Bytes,
    namespace: &str,
    name: Option<&str>,
) -> Result<T, Error> {
    require_content_type(headers, "application/json", "the object as JSON")?;
    let json = json_from_body(body)?;
    let declared = (
        json.get("apiVersion").and_then(Value::as_str),
        json.get("kind").and_then(Value::as_str),
    );
    if declared != (Some(API_VERSION), Some(T::KIND.as_str())) {
        return Err(Error::BadRequest(format!(
            "the body must be a {API_VERSION} {}, not apiVersion {:?} kind {:?}",
            T::KIND.as_str(),
            declared.0.unwrap_or(""),
            declared.1.unwrap_or("")
        )));
    }
    let body_name = json
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut object: T = validate::parse(&json).map_err(|cause| Error::Invalid {
        kind: T::KIND,
        name: body_name.to_owned(),
        causes: vec![cause],
    })?;
    let meta = object.meta_mut();
    if let Some(name) = name
        && meta.name.as_deref() != Some(name)
    {
        return Err(Error::BadRequest(format!(
            "the name of the object ({:?}) does not match the name in the URL ({name:?})",
            meta.name.as_deref().unwrap_or("")
        )));
    }
    if meta.namespace.is_some() && namespace_of(meta) != namespace {
        return Err(Error::BadRequest(format!(
            "the namespace of the object ({:?}) does not match the namespace in the URL ({namespace:?})",
            namespace_of(meta)
        )));
    }
    meta.namespace = Some(namespace.to_owned());
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn warning_headers_quote_and_stay_ascii() {
        assert_eq!(
            warning_header("DeviceModel \"m\" is missing — ok"),
            "299 - \"DeviceModel \\\"m\\\" is missing ? ok\""
        );
    }
}
