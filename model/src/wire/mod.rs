//! The KubeEdge DeviceTwin wire: MQTT topics, JSON payloads, the cloud↔edge envelope and the
//! messages the cloud's device controller and an edge agent exchange in it ([`cloud_edge`]).
//!
//! A KubeEdge mapper must work against the edgetwin agent and an edgetwin mapper against
//! edgecore, so these types follow KubeEdge's JSON exactly (names, key spelling, key order, which
//! keys are omitted) and accept what Go's `encoding/json` accepts: struct keys in any case,
//! `"metadata":{}`, `null` to delete, unknown keys. Decode with [`codec::decode`], which applies
//! Go's key matching; plain `serde_json::from_slice` would match keys case-sensitively.
//!
//! Pure: no I/O, no async.

pub mod cloud_edge;
pub mod codec;
pub mod envelope;
mod go_json;
pub mod payload;
pub mod spec_auth;
pub mod topic;

pub use codec::{WireError, decode, encode};
pub use envelope::Envelope;
pub use topic::{DeviceId, Topic, TopicError};
