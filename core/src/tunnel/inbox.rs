//! The receiving application, as the tunnel sees it.

use futures::future::BoxFuture;

use super::node::NodeName;
use super::session::{ResumePoint, Seq, StreamId};
use edgetwin_model::wire::Envelope;

/// One inbound message, handed to the application.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The node of the link: on the cloud, the node the connection **authenticated** as (never a
    /// name taken from the message); on the edge, the local node.
    pub node: NodeName,
    /// The sender's stream.
    pub stream: StreamId,
    /// The message's sequence number in that stream.
    pub seq: Seq,
    /// The message.
    pub message: Envelope,
}

impl Delivery {
    /// The resume point to record once this message is applied.
    pub fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            stream: self.stream,
            seq: self.seq,
        }
    }
}

/// An application-side failure to apply a message. The tunnel drops the message and whatever
/// followed it; the peer resends them after its retransmission timeout.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

/// The application that receives a peer's messages.
///
/// Exactly-once application: `apply` records [`Delivery::resume_point`] durably **in the same
/// transaction** as the message's effects, and `resume_point` returns the last one recorded. The
/// tunnel announces it on every (re)connect and the peer resumes after it; within a link it drops
/// duplicates itself. An application whose effects live elsewhere (e.g. the Kubernetes API) gets
/// at-least-once delivery and must apply idempotently (twin versions do that).
///
/// `apply` returns `Err` only for transient failures (the message will come again). A message
/// that can never be applied (bad content) must be recorded as handled and answered, not failed,
/// or it would block the stream.
pub trait Inbox: Send + Sync {
    /// The last resume point recorded for `node`'s link, if any.
    fn resume_point<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> BoxFuture<'a, Result<Option<ResumePoint>, ApplyError>>;

    /// Applies one message durably (see the trait docs). The future resolving is the signal that
    /// lets the tunnel acknowledge it; a slow `apply` slows the peer down (bounded window).
    fn apply(&self, delivery: Delivery) -> BoxFuture<'_, Result<(), ApplyError>>;

    /// Records that the message at `point` was consumed without being applied (the cloud
    /// rejected it, see `tunnel::isolation`). The default records nothing: after a reconnect the
    /// peer may resend it and it is rejected again.
    fn record_skipped<'a>(
        &'a self,
        node: &'a NodeName,
        point: ResumePoint,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        let _ = (node, point);
        Box::pin(async { Ok(()) })
    }
}
