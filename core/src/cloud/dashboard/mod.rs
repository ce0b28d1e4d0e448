//! The live dashboard: one HTML page (with its script and style sheet, embedded in the binary)
//! and a Server-Sent Events stream of every Device's twin, fed by [`Registry::watch`].
//!
//! The page needs no build step and does no polling: it opens `/dashboard/events` once and
//! redraws on each event. Reads are open (the stream carries names, desired and reported
//! values, conditions and device state, never protocol or visitor configuration, which may
//! hold addresses or credentials); writes go through the registry API with the ctl token, so
//! the page is read-only until the user gives it the token (`#token=…` in the URL that
//! `edgetwin up` prints, or the token field).
//!
//! Routes (merged into the registry API's router, outside its token check):
//! - `GET /` — the page;
//! - `GET /dashboard/app.js`, `GET /dashboard/style.css` — its script and style;
//! - `GET /dashboard/events` — the stream (see [`view`] for the event payloads). At most
//!   `max_streams` are open at once (the stream needs no token, so its number is capped instead):
//!   one more is answered `503` with a Kubernetes `Status` and its connection closed. A stream's
//!   slot and its registry watch are given back as soon as its connection is gone.

pub mod view;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::registry::embedded::api::ApiStatus;
use super::registry::{Registry, RegistryEvent};
use view::{DeviceView, ModelView, ObjectRef};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// How often an idle stream sends a comment, so proxies and browsers keep it open (and a
/// stream whose browser is gone notices it).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The default cap on open event streams: far more browsers than one person opens, far fewer
/// than the API's connection cap, so that a flood of streams leaves room for the API.
pub const MAX_STREAMS: usize = 32;

#[derive(Clone)]
struct DashboardState {
    registry: Arc<dyn Registry>,
    stopping: watch::Receiver<bool>,
    streams: Arc<Semaphore>,
    max_streams: usize,
}

/// The dashboard's routes, for any router state (they carry their own), with at most
/// `max_streams` event streams open at once. Open event streams end when `stopping` turns true,
/// so a graceful shutdown does not wait for browsers.
pub fn router<S>(
    registry: Arc<dyn Registry>,
    stopping: watch::Receiver<bool>,
    max_streams: usize,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/dashboard/events", get(events))
        .with_state(DashboardState {
            registry,
            stopping,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
        })
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn events(State(state): State<DashboardState>) -> Response {
    let Ok(slot) = Arc::clone(&state.streams).try_acquire_owned() else {
        return too_many_streams(state.max_streams);
    };
    let mut stopping = state.stopping.clone();
    let stopped = async move {
        // An error means the server is gone: stop too.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let stream = sse_events(state.registry.watch())
        .map(Ok::<_, Infallible>)
        .take_until(stopped);
    let stream = WithSlot {
        stream: Box::pin(stream),
        _slot: slot,
    };
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// `503` with a Kubernetes `Status`, closing the connection (a client that keeps connections
/// open must not hold the API's slots with refused streams).
fn too_many_streams(max_streams: usize) -> Response {
    let status = ApiStatus::failure(
        503,
        "ServiceUnavailable",
        format!(
            "too many dashboard event streams are open (the limit is {max_streams}): close one and retry"
        ),
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONNECTION, HeaderValue::from_static("close")),
            (header::RETRY_AFTER, HeaderValue::from_static("5")),
        ],
        axum::Json(status),
    )
        .into_response()
}

/// An event stream that holds one of the stream slots until it is dropped (its connection gone).
struct WithSlot<S> {
    stream: Pin<Box<S>>,
    _slot: OwnedSemaphorePermit,
}

impl<S: futures::Stream> futures::Stream for WithSlot<S> {
    type Item = S::Item;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        self.get_mut().stream.as_mut().poll_next(cx)
    }
}

/// The registry's watch as dashboard events:
/// - `device` — a [`DeviceView`], for every Device at the start and on each change;
/// - `deleted` — an [`ObjectRef`] of a deleted Device;
/// - `model` — a [`ModelView`] (property types and access modes), `modelDeleted` — an
///   [`ObjectRef`];
/// - `synced` — every object that existed at the start has been sent (sent once).
///
/// A browser that reconnects gets a fresh listing, so it forgets Devices it does not see again
/// before `synced`.
fn sse_events(watch: BoxStream<'static, RegistryEvent>) -> impl futures::Stream<Item = Event> {
    watch.filter_map(|event| {
        let event = match event {
            RegistryEvent::Applied(device) => json_event("device", &DeviceView::of(&device)),
            RegistryEvent::Deleted(device) => json_event("deleted", &ObjectRef::of_device(&device)),
            RegistryEvent::ModelApplied(model) => json_event("model", &ModelView::of(&model)),
            RegistryEvent::ModelDeleted(model) => {
                json_event("modelDeleted", &ObjectRef::of_model(&model))
            }
            RegistryEvent::Synced => Some(Event::default().event("synced").data("{}")),
        };
        std::future::ready(event)
    })
}

fn json_event(name: &str, payload: &impl serde::Serialize) -> Option<Event> {
    match Event::default().event(name).json_data(payload) {
        Ok(event) => Some(event),
        Err(err) => {
            tracing::error!(event = name, error = %err, "cannot encode a dashboard event");
            None
        }
    }
}

#[cfg(test)]
mod tests;
