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
//! - `GET /dashboard/events` — the stream (see [`view`] for the event payloads).

pub mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use super::registry::{Registry, RegistryEvent};
use view::{DeviceView, ModelView, ObjectRef};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// How often an idle stream sends a comment, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Clone)]
struct DashboardState {
    registry: Arc<dyn Registry>,
    stopping: watch::Receiver<bool>,
}

/// The dashboard's routes, for any router state (they carry their own). Open event streams
/// end when `stopping` turns true, so a graceful shutdown does not wait for browsers.
pub fn router<S>(registry: Arc<dyn Registry>, stopping: watch::Receiver<bool>) -> Router<S>
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
        .with_state(DashboardState { registry, stopping })
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

async fn events(State(state): State<DashboardState>) -> impl IntoResponse {
    let mut stopping = state.stopping.clone();
    let stopped = async move {
        // An error means the server is gone: stop too.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let stream = sse_events(state.registry.watch())
        .map(Ok::<_, Infallible>)
        .take_until(stopped);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
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
