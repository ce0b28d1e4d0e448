//! The sending side's persistent queue, as the tunnel sees it.
//!
//! One [`Outbox`] is one ordered queue for one link direction: on the cloud, one per node
//! ([`super::hub_outbox::HubOutbox`]); on the edge, the agent's store. The tunnel reads it with
//! [`Outbox::peek_after`] (never more than its window), and removes what the peer acknowledged
//! with [`Outbox::ack_through`]. Entries stay until acknowledged, so a restart of either side
//! loses nothing.
//!
//! Contract for implementations:
//! - `append` gives each entry a sequence number greater than every number this outbox ever gave
//!   (also across restarts, also after the queue ran empty), under the outbox's fixed
//!   [`StreamId`]. A re-created outbox (new database) must use a new stream id.
//! - An entry's message never changes once appended. To coalesce (replace an older unsent value
//!   with a newer one), remove the old entry and append the new one: removing unacknowledged
//!   entries is allowed, the receiver tolerates gaps.
//! - After appending, wake the link (`Hub::send` does this for the cloud;
//!   `HubClientHandle::outbox_changed` on the edge) — the tunnel does not poll.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::session::{Seq, StreamId};
use edgetwin_model::wire::Envelope;

/// One queued message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Its sequence number in the outbox's stream.
    pub seq: Seq,
    /// The message.
    pub message: Envelope,
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The queue holds its maximum number of entries; nothing was appended.
    #[error("outbox full ({limit} messages waiting for the peer)")]
    Full {
        /// The bound.
        limit: usize,
    },
    /// The storage failed.
    #[error("outbox storage: {0}")]
    Storage(String),
}

/// An ordered, persistent queue of messages for one peer (see the module docs for the contract).
pub trait Outbox: Send + Sync {
    /// The stream id this outbox numbers its entries under.
    fn stream(&self) -> StreamId;

    /// Appends a message and returns its sequence number; durable when the future resolves.
    fn append(&self, message: Envelope) -> BoxFuture<'_, Result<Seq, OutboxError>>;

    /// Up to `limit` entries with a sequence number above `after`, in order.
    fn peek_after(
        &self,
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, OutboxError>>;

    /// Removes every entry up to and including `seq`: the peer has applied them.
    fn ack_through(&self, seq: Seq) -> BoxFuture<'_, Result<(), OutboxError>>;
}

/// An outbox in memory: ordered and bounded but **not** persistent. For load generators and
/// tests that exercise the link rather than restarts.
#[derive(Debug)]
pub struct MemoryOutbox {
    stream: StreamId,
    limit: usize,
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    last_seq: Seq,
    entries: BTreeMap<Seq, Envelope>,
}

impl MemoryOutbox {
    /// An empty outbox holding at most `limit` messages, with a random stream id.
    pub fn new(limit: usize) -> Self {
        MemoryOutbox {
            stream: StreamId(rand::random::<u64>() >> 1),
            limit,
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// How many messages wait for an ack.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing waits for an ack.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Outbox for MemoryOutbox {
    fn stream(&self) -> StreamId {
        self.stream
    }

    fn append(&self, message: Envelope) -> BoxFuture<'_, Result<Seq, OutboxError>> {
        let result = {
            let mut state = self.lock();
            if state.entries.len() >= self.limit {
                Err(OutboxError::Full { limit: self.limit })
            } else {
                state.last_seq += 1;
                let seq = state.last_seq;
                state.entries.insert(seq, message);
                Ok(seq)
            }
        };
        Box::pin(async move { result })
    }

    fn peek_after(
        &self,
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, OutboxError>> {
        let entries = self
            .lock()
            .entries
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(seq, message)| OutboxEntry {
                seq: *seq,
                message: message.clone(),
            })
            .collect();
        Box::pin(async move { Ok(entries) })
    }

    fn ack_through(&self, seq: Seq) -> BoxFuture<'_, Result<(), OutboxError>> {
        let mut state = self.lock();
        state.entries = state.entries.split_off(&seq.saturating_add(1));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> Envelope {
        let mut envelope = Envelope::default();
        envelope.header.msg_id = id.to_owned();
        envelope
    }

    #[tokio::test]
    async fn memory_outbox_orders_bounds_and_acks() {
        let outbox = MemoryOutbox::new(3);
        for id in ["a", "b", "c"] {
            outbox.append(message(id)).await.expect("append");
        }
        assert!(matches!(
            outbox.append(message("d")).await,
            Err(OutboxError::Full { limit: 3 })
        ));
        let peeked = outbox.peek_after(1, 10).await.expect("peek");
        let seqs: Vec<Seq> = peeked.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(peeked[0].message.header.msg_id, "b");
        outbox.ack_through(2).await.expect("ack");
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.append(message("d")).await.expect("room again"), 4);
        outbox.ack_through(u64::MAX).await.expect("ack all");
        assert!(outbox.is_empty());
        assert_eq!(outbox.append(message("e")).await.expect("append"), 5);
    }
}
