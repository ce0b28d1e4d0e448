//! Counters of one tunnel endpoint (the hub, or one edge client), for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters; every field only grows except `links_up`.
#[derive(Debug, Default)]
pub struct TunnelStats {
    links_up: AtomicU64,
    links_established: AtomicU64,
    links_replaced: AtomicU64,
    auth_failures: AtomicU64,
    messages_sent: AtomicU64,
    messages_applied: AtomicU64,
    duplicates_dropped: AtomicU64,
    gaps_dropped: AtomicU64,
    window_overflows: AtomicU64,
    oversize_dropped: AtomicU64,
    retransmissions: AtomicU64,
    apply_failures: AtomicU64,
    heartbeat_timeouts: AtomicU64,
    protocol_errors: AtomicU64,
    isolation_rejections: AtomicU64,
}

/// A copy of [`TunnelStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Links currently established (hello exchanged and not ended).
    pub links_up: u64,
    /// Links that completed the hello, ever.
    pub links_established: u64,
    /// Links closed because the same node connected again.
    pub links_replaced: u64,
    /// Connection attempts refused for bad or missing credentials.
    pub auth_failures: u64,
    /// Data messages written (including retransmissions).
    pub messages_sent: u64,
    /// Inbound messages the application applied (or the hub rejected and recorded).
    pub messages_applied: u64,
    /// Inbound retransmissions of already accepted messages, dropped.
    pub duplicates_dropped: u64,
    /// Inbound messages dropped because one before them was not applied.
    pub gaps_dropped: u64,
    /// Inbound messages dropped because the receive window was full.
    pub window_overflows: u64,
    /// Outbox messages dropped because they exceed the largest WebSocket message (logged as
    /// errors; `Hub::send` refuses them up front).
    pub oversize_dropped: u64,
    /// Retransmission rounds (go back to the last ack).
    pub retransmissions: u64,
    /// Applications that failed (the peer resends).
    pub apply_failures: u64,
    /// Links given up because the peer went silent.
    pub heartbeat_timeouts: u64,
    /// Links closed because the peer broke the protocol.
    pub protocol_errors: u64,
    /// Inbound messages the hub rejected because they concern another node's devices.
    pub isolation_rejections: u64,
}

/// Which counter to bump.
#[cfg_attr(not(feature = "cloud"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    LinksEstablished,
    LinksReplaced,
    AuthFailures,
    MessagesSent,
    MessagesApplied,
    DuplicatesDropped,
    GapsDropped,
    WindowOverflows,
    OversizeDropped,
    Retransmissions,
    ApplyFailures,
    HeartbeatTimeouts,
    ProtocolErrors,
    IsolationRejections,
}

impl TunnelStats {
    fn counter(&self, counter: Counter) -> &AtomicU64 {
        match counter {
            Counter::LinksEstablished => &self.links_established,
            Counter::LinksReplaced => &self.links_replaced,
            Counter::AuthFailures => &self.auth_failures,
            Counter::MessagesSent => &self.messages_sent,
            Counter::MessagesApplied => &self.messages_applied,
            Counter::DuplicatesDropped => &self.duplicates_dropped,
            Counter::GapsDropped => &self.gaps_dropped,
            Counter::WindowOverflows => &self.window_overflows,
            Counter::OversizeDropped => &self.oversize_dropped,
            Counter::Retransmissions => &self.retransmissions,
            Counter::ApplyFailures => &self.apply_failures,
            Counter::HeartbeatTimeouts => &self.heartbeat_timeouts,
            Counter::ProtocolErrors => &self.protocol_errors,
            Counter::IsolationRejections => &self.isolation_rejections,
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.counter(counter).fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Marks a link established; the returned guard marks it down when dropped.
    pub(crate) fn link_up(&self) -> LinkUp<'_> {
        self.bump(Counter::LinksEstablished);
        self.links_up.fetch_add(1, Ordering::Relaxed);
        LinkUp(self)
    }

    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            links_up: get(&self.links_up),
            links_established: get(&self.links_established),
            links_replaced: get(&self.links_replaced),
            auth_failures: get(&self.auth_failures),
            messages_sent: get(&self.messages_sent),
            messages_applied: get(&self.messages_applied),
            duplicates_dropped: get(&self.duplicates_dropped),
            gaps_dropped: get(&self.gaps_dropped),
            window_overflows: get(&self.window_overflows),
            oversize_dropped: get(&self.oversize_dropped),
            retransmissions: get(&self.retransmissions),
            apply_failures: get(&self.apply_failures),
            heartbeat_timeouts: get(&self.heartbeat_timeouts),
            protocol_errors: get(&self.protocol_errors),
            isolation_rejections: get(&self.isolation_rejections),
        }
    }
}

/// An established link, counted in `links_up` while it lives.
pub(crate) struct LinkUp<'a>(&'a TunnelStats);

impl Drop for LinkUp<'_> {
    fn drop(&mut self) {
        self.0.links_up.fetch_sub(1, Ordering::Relaxed);
    }
}
