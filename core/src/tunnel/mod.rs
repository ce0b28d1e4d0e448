//! The cloud⇄edge tunnel: a reliable, authenticated, resumable message link that the edge node
//! opens to the cloud (WebSocket over TLS), carrying beehive [`Envelope`](edgetwin_model::wire::Envelope)s.
//!
//! - [`session`]: the reliability state machine without I/O (sequence numbers, window, acks,
//!   retransmission, dedupe, heartbeats); [`backoff`]: the reconnect schedule.
//! - [`outbox`] / [`inbox`]: the seams to the applications on both sides; [`store`]: the cloud's
//!   per-node outboxes in sqlite.
//! - [`server`]: the cloud's [`Hub`](server::Hub); [`client`]: the edge's
//!   [`HubClient`](client::HubClient); [`auth`], [`tls`], [`isolation`]: who may connect and what
//!   a node may see and send.
//!
//! The client side builds with the `edge` feature alone; the hub, token store and sqlite
//! outboxes need `cloud`. The protocol is described in `docs/tunnel.md`.

#[cfg(feature = "cloud")]
pub mod auth;
pub mod backoff;
pub mod client;
#[cfg(feature = "cloud")]
mod cloud_db;
mod connection;
pub mod frame;
#[cfg(feature = "cloud")]
pub mod hub_outbox;
pub mod inbox;
#[cfg(feature = "cloud")]
pub mod isolation;
pub mod node;
pub mod outbox;
#[cfg(feature = "cloud")]
pub mod server;
pub mod session;
pub mod stats;
pub mod tls;

#[cfg(all(test, feature = "cloud"))]
mod tests;

pub use connection::LinkEnd;
pub use node::NodeName;
pub use session::{ResumePoint, Seq, StreamId};
