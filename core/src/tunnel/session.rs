//! The tunnel's reliability state machine, without I/O: sequence numbers, the send window,
//! acks, retransmission, duplicate and gap detection, heartbeats.
//!
//! Each direction of a link is one *stream*: the sender's persistent outbox numbers its messages
//! with strictly increasing sequence numbers ([`Seq`]) under a random [`StreamId`] chosen when the
//! outbox was created. Numbers may have gaps (an outbox may drop an unsent entry that a newer one
//! supersedes), so every data frame carries `prev`, the sequence number of the message sent just
//! before it on this link, and the receiver accepts a message only if it is new (`seq >` what it
//! accepted) and nothing it still needs lies in between (`prev <=` what it accepted).
//!
//! The receiver acknowledges two points, cumulatively: `through` (durably applied: the sender may
//! forget these) and `received` (accepted and queued for the application: not lost, just waiting).
//! The retransmission timer only runs for messages beyond `received`, so a slow application
//! holds the sender to its window without triggering resends. When an application fails, the
//! receiver drops what it queued and acks with `received` lowered to `through`: the sender
//! resends at once from there. Every heartbeat repeats the current ack, so a lost ack (or a
//! peer that missed the lowering) is repaired within one heartbeat interval.
//!
//! The driver (`connection.rs`) feeds events in with the current time and performs what the
//! returned values ask for; [`Session::next_deadline`] says when to call [`Session::poll`] again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A message sequence number within one stream. `0` means "nothing".
pub type Seq = u64;

/// Identifies one outbox's sequence space. A new outbox (fresh database, re-installed node) gets a
/// new id, so its sequence numbers are never mistaken for an old stream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(pub u64);

/// How far a receiver has durably applied a sender's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// The sender's stream.
    pub stream: StreamId,
    /// The last applied sequence number in that stream.
    pub seq: Seq,
}

/// Tunables of a link. Both ends use their own; the send window is the smaller of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// At most this many messages may be sent and not yet applied, in each direction. It bounds
    /// what a receiver queues and what a sender reads from its outbox per link.
    pub window: u32,
    /// Acknowledge after this many applied messages…
    pub ack_every: u32,
    /// …or this long after the first unacknowledged application or reception.
    pub ack_delay: Duration,
    /// Resend messages the peer has not received when the oldest has waited this long…
    pub retransmit_initial: Duration,
    /// …doubling on each retransmission up to this bound, back to the initial value on progress.
    pub retransmit_max: Duration,
    /// Send a heartbeat (the current ack) when nothing was sent for this long.
    pub heartbeat_interval: Duration,
    /// Give the link up when nothing (not even a heartbeat) was received for this long, or when the
    /// peer's hello does not arrive within it.
    pub heartbeat_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            window: 64,
            ack_every: 16,
            ack_delay: Duration::from_millis(20),
            retransmit_initial: Duration::from_secs(5),
            retransmit_max: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(45),
        }
    }
}

/// A [`SessionConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tunnel session config: {0}")]
pub struct SessionConfigError(&'static str);

impl SessionConfig {
    /// Checks the relations between the values.
    pub fn validate(&self) -> Result<(), SessionConfigError> {
        if self.window == 0 {
            return Err(SessionConfigError("window must be at least 1"));
        }
        if self.ack_every == 0 || self.ack_every > self.window {
            return Err(SessionConfigError("ack_every must be between 1 and window"));
        }
        if self.retransmit_initial.is_zero() || self.retransmit_max < self.retransmit_initial {
            return Err(SessionConfigError(
                "retransmit_initial must be positive and at most retransmit_max",
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(SessionConfigError(
                "heartbeat_timeout must be longer than a positive heartbeat_interval",
            ));
        }
        Ok(())
    }
}

/// The peer broke the protocol; the link must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// A frame other than hello arrived before the hello.
    #[error("frame received before hello")]
    BeforeHello,
    /// A second hello arrived.
    #[error("second hello on one link")]
    RepeatedHello,
    /// The peer acknowledged a message that was never sent on this link.
    #[error("ack of {seq} but only sent through {sent}")]
    AckBeyondSent {
        /// The acknowledged sequence number.
        seq: Seq,
        /// The highest sequence number sent.
        sent: Seq,
    },
    /// An ack whose `received` is below its `through`, or whose `through` went back.
    #[error("inconsistent ack: {0}")]
    InconsistentAck(&'static str),
    /// A data frame whose `prev` is not below its `seq`.
    #[error("message {seq} claims to follow {prev}")]
    BadPrev {
        /// The message's sequence number.
        seq: Seq,
        /// Its claimed predecessor.
        prev: Seq,
    },
    /// The hello announced a window of zero.
    #[error("peer announced a window of 0")]
    ZeroWindow,
}

/// What became of an inbound data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// New and in order: queue it for the application.
    Accept,
    /// Already accepted earlier (a retransmission): drop it; an ack is scheduled.
    Duplicate,
    /// A message before it is missing (its application failed): drop it; the sender resends
    /// from the point the lowered ack named.
    Gap,
    /// The window is full (the peer's count was off after a resend, or it ignores the window):
    /// drop it, memory stays bounded; the sender resends it after its timeout.
    Overflow,
}

/// A cumulative acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Applied through here.
    pub through: Seq,
    /// Received (queued) through here; never below `through`. Lower than in an earlier ack when
    /// the receiver dropped what it had queued: the sender resends after it.
    pub received: Seq,
}

/// What a timer poll asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Send this ack (also the heartbeat once the link is established).
    pub ack: Option<Ack>,
    /// Send a ping (the heartbeat while waiting for the peer's hello).
    pub ping: bool,
    /// Resend: read the outbox again from [`Session::send_after`].
    pub retransmit: bool,
    /// Nothing was heard from the peer for the heartbeat timeout: close the link.
    pub dead: bool,
}

/// One side of one link.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    started: Instant,
    sender: Sender,
    receiver: Receiver,
    last_received: Option<Instant>,
    last_transmitted: Instant,
    hello: bool,
}

impl Session {
    /// A session for a link that just opened at `now`; `stream` is this side's outbox stream.
    pub fn new(config: SessionConfig, stream: StreamId, now: Instant) -> Self {
        Session {
            sender: Sender::new(stream, &config),
            receiver: Receiver::new(&config),
            config,
            started: now,
            last_received: None,
            last_transmitted: now,
            hello: false,
        }
    }

    /// The window to announce in this side's hello.
    pub fn announced_window(&self) -> u32 {
        self.config.window
    }

    /// Processes the peer's hello. `peer_stream` is the peer's outbox stream, `peer_resume` what
    /// the peer has applied of ours, `stored` what we have applied of the peer's (the value our
    /// own hello announced). Returns where our stream resumes: messages up to it are delivered and
    /// can be removed from the outbox.
    pub fn on_hello(
        &mut self,
        peer_stream: StreamId,
        peer_resume: Option<ResumePoint>,
        peer_window: u32,
        stored: Option<ResumePoint>,
        now: Instant,
    ) -> Result<Seq, ProtocolViolation> {
        self.on_received(now);
        if self.hello {
            return Err(ProtocolViolation::RepeatedHello);
        }
        if peer_window == 0 {
            return Err(ProtocolViolation::ZeroWindow);
        }
        self.hello = true;
        self.receiver.start(peer_stream, stored);
        Ok(self.sender.start(peer_resume, peer_window))
    }

    /// Whether the peer's hello has arrived.
    pub fn is_established(&self) -> bool {
        self.hello
    }

    /// Records that some frame (including pings and pongs) arrived.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = Some(now);
    }

    /// Records that frames were written to the peer.
    pub fn on_transmitted(&mut self, now: Instant) {
        self.last_transmitted = now;
    }

    /// How many outbox entries to read now at most (resends plus free window); check each with
    /// [`Session::may_send`].
    pub fn send_capacity(&self) -> usize {
        if self.hello {
            self.sender.capacity()
        } else {
            0
        }
    }

    /// Whether message `seq` may go out now: a resend, or a new message within the window.
    pub fn may_send(&self, seq: Seq) -> bool {
        self.hello && self.sender.may_send(seq)
    }

    /// Read the outbox after this sequence number for the next messages to send.
    pub fn send_after(&self) -> Seq {
        self.sender.last_sent
    }

    /// The `prev` the next message sent will carry.
    pub fn next_prev(&self) -> Seq {
        self.sender.chain
    }

    /// Records that message `seq` is being sent; returns the `prev` to put in its frame (the
    /// value [`Session::next_prev`] gave).
    pub fn on_sent(&mut self, seq: Seq, now: Instant) -> Seq {
        self.sender.on_sent(seq, now)
    }

    /// Records that outbox entry `seq` will never be sent (it cannot be: too large). The next
    /// message's `prev` still names the last one sent, so the receiver does not wait for it; the
    /// entry leaves the outbox with the ack of a later message.
    pub fn on_skipped(&mut self, seq: Seq) {
        self.sender.last_sent = self.sender.last_sent.max(seq);
    }

    /// Processes an ack. `Some(through)` means the outbox may drop entries up to it.
    pub fn on_ack(&mut self, ack: Ack, now: Instant) -> Result<Option<Seq>, ProtocolViolation> {
        self.on_received(now);
        if !self.hello {
            return Err(ProtocolViolation::BeforeHello);
        }
        self.sender.on_ack(ack, now)
    }

    /// Classifies an inbound data message.
    pub fn on_message(
        &mut self,
        seq: Seq,
        prev: Seq,
        now: Instant,
    ) -> Result<Inbound, ProtocolViolation> {
        self.on_received(now);
        if !self.hello {
            return Err(ProtocolViolation::BeforeHello);
        }
        self.receiver.on_message(seq, prev, now, &self.config)
    }

    /// The peer's stream, once its hello arrived.
    pub fn peer_stream(&self) -> Option<StreamId> {
        self.receiver.peer_stream
    }

    /// Records that the application durably applied accepted message `seq`.
    pub fn on_applied(&mut self, seq: Seq, now: Instant) {
        self.receiver.on_applied(seq, now, &self.config);
    }

    /// Records that applying an accepted message failed: it and every message accepted after it
    /// are dropped, and an ack with `received` lowered asks the peer to resend them.
    pub fn on_apply_failed(&mut self, now: Instant) {
        self.receiver.on_apply_failed(now);
    }

    /// Fires whatever timers are due at `now`.
    pub fn poll(&mut self, now: Instant) -> Due {
        if now.saturating_duration_since(self.heard_at()) >= self.config.heartbeat_timeout {
            return Due {
                dead: true,
                ..Due::default()
            };
        }
        let idle = now.saturating_duration_since(self.last_transmitted);
        let heartbeat = idle >= self.config.heartbeat_interval;
        if heartbeat {
            // Counts as a transmission so that the next heartbeat waits a full interval.
            self.last_transmitted = now;
        }
        Due {
            ack: self
                .hello
                .then(|| self.receiver.poll_ack(now, heartbeat))
                .flatten(),
            ping: heartbeat && !self.hello,
            retransmit: self.sender.poll_retransmit(now),
            dead: false,
        }
    }

    /// When [`Session::poll`] has something to do next.
    pub fn next_deadline(&self) -> Instant {
        let silent = self.heard_at() + self.config.heartbeat_timeout;
        [
            Some(silent),
            Some(self.last_transmitted + self.config.heartbeat_interval),
            self.receiver.ack_due,
            self.sender.retransmit_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(silent)
    }

    /// What the heartbeat timeout counts from: the last frame received, or the start of the link
    /// until the peer's hello arrived (pings alone do not establish a link).
    fn heard_at(&self) -> Instant {
        match (self.hello, self.last_received) {
            (true, Some(at)) => at,
            _ => self.started,
        }
    }

    /// Retransmission rounds (timeouts and lowered acks) so far on this link.
    pub fn retransmissions(&self) -> u64 {
        self.sender.retransmissions
    }
}

/// The sending half: window, acks and the retransmission timer.
#[derive(Debug)]
struct Sender {
    stream: StreamId,
    window: u32,
    /// Applied by the peer (cumulative).
    acked: Seq,
    /// Received and queued by the peer (cumulative, at least `acked`).
    peer_received: Seq,
    /// The last message (re)sent or skipped; the next read of the outbox starts after it.
    last_sent: Seq,
    /// The last message actually sent: the `prev` of the next one.
    chain: Seq,
    /// The highest message ever sent on this link (acks beyond it are a violation).
    highest_sent: Seq,
    /// Sent and not yet applied, in order (may include entries the outbox dropped since).
    in_flight: VecDeque<Seq>,
    initial_rto: Duration,
    max_rto: Duration,
    rto: Duration,
    retransmit_at: Option<Instant>,
    retransmissions: u64,
}

impl Sender {
    fn new(stream: StreamId, config: &SessionConfig) -> Self {
        Sender {
            stream,
            window: config.window,
            acked: 0,
            peer_received: 0,
            last_sent: 0,
            chain: 0,
            highest_sent: 0,
            in_flight: VecDeque::new(),
            initial_rto: config.retransmit_initial,
            max_rto: config.retransmit_max,
            rto: config.retransmit_initial,
            retransmit_at: None,
            retransmissions: 0,
        }
    }

    fn start(&mut self, peer_resume: Option<ResumePoint>, peer_window: u32) -> Seq {
        self.window = self.window.min(peer_window);
        // A resume point for another stream means the peer never saw this one: start over.
        let start = match peer_resume {
            Some(point) if point.stream == self.stream => point.seq,
            _ => 0,
        };
        self.acked = start;
        self.peer_received = start;
        self.last_sent = start;
        self.chain = start;
        self.highest_sent = start;
        start
    }

    fn capacity(&self) -> usize {
        let resends = self
            .in_flight
            .iter()
            .rev()
            .take_while(|&&seq| seq > self.last_sent)
            .count();
        resends + (self.window as usize).saturating_sub(self.in_flight.len())
    }

    fn may_send(&self, seq: Seq) -> bool {
        self.in_flight.binary_search(&seq).is_ok() || self.in_flight.len() < self.window as usize
    }

    fn on_sent(&mut self, seq: Seq, now: Instant) -> Seq {
        debug_assert!(
            seq > self.last_sent,
            "outbox returned seq {seq} out of order"
        );
        let prev = self.chain;
        self.last_sent = seq;
        self.chain = seq;
        self.highest_sent = self.highest_sent.max(seq);
        if let Err(position) = self.in_flight.binary_search(&seq) {
            self.in_flight.insert(position, seq);
        }
        self.arm(now);
        prev
    }

    fn on_ack(&mut self, ack: Ack, now: Instant) -> Result<Option<Seq>, ProtocolViolation> {
        if ack.received < ack.through {
            return Err(ProtocolViolation::InconsistentAck("received below through"));
        }
        if ack.through < self.acked {
            return Err(ProtocolViolation::InconsistentAck("applied went back"));
        }
        if ack.received > self.highest_sent {
            return Err(ProtocolViolation::AckBeyondSent {
                seq: ack.received,
                sent: self.highest_sent,
            });
        }
        if ack.received < self.peer_received {
            // The peer dropped what it had queued after `received`: resend from there now.
            self.peer_received = ack.received;
            self.last_sent = ack.received;
            self.chain = ack.received;
            while self.in_flight.back().is_some_and(|&seq| seq > ack.received) {
                self.in_flight.pop_back();
            }
            self.retransmit_at = None;
            self.retransmissions += 1;
        }
        let mut progress = false;
        if ack.received > self.peer_received {
            self.peer_received = ack.received;
            // After a retransmission rewound `last_sent`, the peer may already hold more.
            self.last_sent = self.last_sent.max(ack.received);
            self.chain = self.chain.max(ack.received);
            progress = true;
        }
        let newly_applied = ack.through > self.acked;
        if newly_applied {
            self.acked = ack.through;
            while self
                .in_flight
                .front()
                .is_some_and(|&seq| seq <= ack.through)
            {
                self.in_flight.pop_front();
            }
            progress = true;
        }
        if progress {
            self.rto = self.initial_rto;
            self.retransmit_at = None;
        }
        self.arm(now);
        Ok(newly_applied.then_some(ack.through))
    }

    /// Runs the timer while some message in flight has not reached the peer.
    fn arm(&mut self, now: Instant) {
        let unreceived = self
            .in_flight
            .back()
            .is_some_and(|&seq| seq > self.peer_received);
        if !unreceived {
            self.retransmit_at = None;
        } else if self.retransmit_at.is_none() {
            self.retransmit_at = Some(now + self.rto);
        }
    }

    fn poll_retransmit(&mut self, now: Instant) -> bool {
        match self.retransmit_at {
            Some(at) if at <= now => {
                // Go back to what the peer holds; everything after it is read again (and what
                // the outbox dropped meanwhile no longer takes room in the window).
                self.last_sent = self.peer_received;
                self.chain = self.peer_received;
                while self
                    .in_flight
                    .back()
                    .is_some_and(|&seq| seq > self.peer_received)
                {
                    self.in_flight.pop_back();
                }
                self.rto = (self.rto * 2).min(self.max_rto);
                self.retransmit_at = None;
                self.retransmissions += 1;
                true
            }
            _ => false,
        }
    }
}

/// The receiving half: acceptance, ack scheduling.
#[derive(Debug)]
struct Receiver {
    window: u32,
    peer_stream: Option<StreamId>,
    /// The highest message accepted (queued or applied).
    accepted: Seq,
    applied: Seq,
    /// Accepted and not yet applied.
    queued: u32,
    /// What the last ack said.
    acked: Ack,
    applied_since_ack: u32,
    ack_due: Option<Instant>,
    /// Re-send the current ack even if it did not move (a duplicate arrived, or an
    /// application failed).
    ack_forced: bool,
}

impl Receiver {
    fn new(config: &SessionConfig) -> Self {
        Receiver {
            window: config.window,
            peer_stream: None,
            accepted: 0,
            applied: 0,
            queued: 0,
            acked: Ack {
                through: 0,
                received: 0,
            },
            applied_since_ack: 0,
            ack_due: None,
            ack_forced: false,
        }
    }

    fn start(&mut self, peer_stream: StreamId, stored: Option<ResumePoint>) {
        // Our hello announced `stored`; the peer resumes after it only if it names its stream.
        let start = match stored {
            Some(point) if point.stream == peer_stream => point.seq,
            _ => 0,
        };
        self.peer_stream = Some(peer_stream);
        self.accepted = start;
        self.applied = start;
        self.acked = Ack {
            through: start,
            received: start,
        };
    }

    fn schedule_ack(&mut self, now: Instant, delay: Duration) {
        let at = now + delay;
        self.ack_due = Some(self.ack_due.map_or(at, |due| due.min(at)));
    }

    fn on_message(
        &mut self,
        seq: Seq,
        prev: Seq,
        now: Instant,
        config: &SessionConfig,
    ) -> Result<Inbound, ProtocolViolation> {
        if prev >= seq {
            return Err(ProtocolViolation::BadPrev { seq, prev });
        }
        if seq <= self.accepted {
            self.ack_forced = true;
            self.ack_due = Some(now);
            return Ok(Inbound::Duplicate);
        }
        if prev > self.accepted {
            return Ok(Inbound::Gap);
        }
        if self.queued >= self.window {
            return Ok(Inbound::Overflow);
        }
        self.accepted = seq;
        self.queued += 1;
        self.schedule_ack(now, config.ack_delay);
        Ok(Inbound::Accept)
    }

    fn on_applied(&mut self, seq: Seq, now: Instant, config: &SessionConfig) {
        self.applied = seq;
        self.queued = self.queued.saturating_sub(1);
        self.applied_since_ack += 1;
        if self.applied_since_ack >= config.ack_every {
            self.ack_due = Some(now);
        } else {
            self.schedule_ack(now, config.ack_delay);
        }
    }

    fn on_apply_failed(&mut self, now: Instant) {
        self.accepted = self.applied;
        self.queued = 0;
        self.ack_forced = true;
        self.ack_due = Some(now);
    }

    /// The ack to send now, if one is due (or `heartbeat` asks to repeat it).
    fn poll_ack(&mut self, now: Instant, heartbeat: bool) -> Option<Ack> {
        let due = self.ack_due.is_some_and(|at| at <= now);
        let ack = Ack {
            through: self.applied,
            received: self.accepted,
        };
        if !heartbeat && !(due && (ack != self.acked || self.ack_forced)) {
            if due {
                self.ack_due = None;
            }
            return None;
        }
        self.ack_due = None;
        self.ack_forced = false;
        self.applied_since_ack = 0;
        self.acked = ack;
        Some(ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: StreamId = StreamId(0xA);
    const B: StreamId = StreamId(0xB);

    fn config() -> SessionConfig {
        SessionConfig {
            window: 4,
            ack_every: 2,
            ack_delay: Duration::from_millis(10),
            retransmit_initial: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(4),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
        }
    }

    fn established(stream: StreamId, peer: StreamId, now: Instant) -> Session {
        let mut session = Session::new(config(), stream, now);
        session.on_hello(peer, None, 4, None, now).expect("hello");
        session
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ack(through: Seq, received: Seq) -> Ack {
        Ack { through, received }
    }

    #[test]
    fn config_relations_are_checked() {
        assert!(config().validate().is_ok());
        assert!(SessionConfig::default().validate().is_ok());
        let bad = [
            SessionConfig {
                window: 0,
                ..config()
            },
            SessionConfig {
                ack_every: 5,
                ..config()
            },
            SessionConfig {
                ack_every: 0,
                ..config()
            },
            SessionConfig {
                retransmit_max: Duration::from_millis(1),
                ..config()
            },
            SessionConfig {
                heartbeat_timeout: secs(10),
                ..config()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn hello_resumes_our_stream_only_if_the_peer_names_it() {
        let now = Instant::now();
        let mut same = Session::new(config(), A, now);
        let resume = ResumePoint { stream: A, seq: 7 };
        assert_eq!(same.on_hello(B, Some(resume), 4, None, now), Ok(7));
        assert_eq!(same.send_after(), 7);

        let mut other = Session::new(config(), A, now);
        let stale = ResumePoint {
            stream: StreamId(0xDEAD),
            seq: 7,
        };
        assert_eq!(other.on_hello(B, Some(stale), 4, None, now), Ok(0));
        assert_eq!(other.send_after(), 0);
        assert_eq!(
            other.on_hello(B, None, 4, None, now),
            Err(ProtocolViolation::RepeatedHello)
        );
    }

    #[test]
    fn receiver_starts_after_its_stored_point_only_for_the_same_peer_stream() {
        let now = Instant::now();
        let stored = Some(ResumePoint { stream: B, seq: 5 });
        let mut same = Session::new(config(), A, now);
        same.on_hello(B, None, 4, stored, now).expect("hello");
        assert_eq!(same.on_message(5, 4, now), Ok(Inbound::Duplicate));
        assert_eq!(same.on_message(6, 5, now), Ok(Inbound::Accept));

        // The peer's outbox was re-created: its numbers start again and must not be dropped.
        let mut new_stream = Session::new(config(), A, now);
        new_stream
            .on_hello(StreamId(0xC), None, 4, stored, now)
            .expect("hello");
        assert_eq!(new_stream.on_message(1, 0, now), Ok(Inbound::Accept));
    }

    #[test]
    fn frames_before_hello_and_zero_windows_are_violations() {
        let now = Instant::now();
        let mut session = Session::new(config(), A, now);
        assert_eq!(session.send_capacity(), 0);
        assert!(!session.may_send(1));
        assert_eq!(
            session.on_ack(ack(0, 0), now),
            Err(ProtocolViolation::BeforeHello)
        );
        assert_eq!(
            session.on_message(1, 0, now),
            Err(ProtocolViolation::BeforeHello)
        );
        assert_eq!(
            session.on_hello(B, None, 0, None, now),
            Err(ProtocolViolation::ZeroWindow)
        );
    }

    #[test]
    fn the_window_is_the_smaller_of_both_and_applications_free_it() {
        let now = Instant::now();
        let mut session = Session::new(config(), A, now);
        session.on_hello(B, None, 2, None, now).expect("hello");
        assert_eq!(session.send_capacity(), 2);
        assert_eq!(session.on_sent(3, now), 0);
        assert_eq!(session.on_sent(8, now), 3, "gaps in numbering are fine");
        assert_eq!(session.send_capacity(), 0);
        assert!(!session.may_send(9));
        assert_eq!(
            session.on_ack(ack(0, 8), now),
            Ok(None),
            "received is not applied"
        );
        assert_eq!(session.send_capacity(), 0, "queued messages still count");
        assert_eq!(session.on_ack(ack(3, 8), now), Ok(Some(3)));
        assert_eq!(session.send_capacity(), 1);
        assert_eq!(
            session.on_ack(ack(3, 8), now),
            Ok(None),
            "stale acks change nothing"
        );
        assert_eq!(
            session.on_ack(ack(3, 9), now),
            Err(ProtocolViolation::AckBeyondSent { seq: 9, sent: 8 })
        );
        assert!(matches!(
            session.on_ack(ack(8, 3), now),
            Err(ProtocolViolation::InconsistentAck(_))
        ));
    }

    #[test]
    fn a_skipped_entry_does_not_make_the_receiver_wait() {
        let now = Instant::now();
        let mut sender = established(A, B, now);
        let mut receiver = established(B, A, now);
        let prev = sender.on_sent(1, now);
        assert_eq!(receiver.on_message(1, prev, now), Ok(Inbound::Accept));
        sender.on_skipped(2);
        assert_eq!(sender.send_after(), 2, "the outbox is read after it");
        let prev = sender.on_sent(3, now);
        assert_eq!(prev, 1, "the chain names the last message sent");
        assert_eq!(receiver.on_message(3, prev, now), Ok(Inbound::Accept));
        receiver.on_applied(1, now);
        receiver.on_applied(3, now);
        let ack = receiver.poll(now).ack.expect("ack");
        assert_eq!(
            sender.on_ack(ack, now),
            Ok(Some(3)),
            "the skipped entry goes with it"
        );
    }

    #[test]
    fn receiver_accepts_in_order_and_drops_duplicates_and_gaps() {
        let now = Instant::now();
        let mut session = established(A, B, now);
        assert_eq!(session.on_message(2, 0, now), Ok(Inbound::Accept));
        assert_eq!(session.on_message(5, 2, now), Ok(Inbound::Accept));
        assert_eq!(session.on_message(5, 2, now), Ok(Inbound::Duplicate));
        assert_eq!(session.on_message(9, 7, now), Ok(Inbound::Gap));
        assert_eq!(
            session.on_message(9, 9, now),
            Err(ProtocolViolation::BadPrev { seq: 9, prev: 9 })
        );
        // A sender that dropped 6..7 from its outbox may resend from an older `prev`.
        assert_eq!(session.on_message(9, 2, now), Ok(Inbound::Accept));
    }

    #[test]
    fn messages_beyond_the_window_are_dropped_not_queued() {
        let now = Instant::now();
        let mut session = established(A, B, now);
        for seq in 1..=4 {
            assert_eq!(session.on_message(seq, seq - 1, now), Ok(Inbound::Accept));
        }
        assert_eq!(session.on_message(5, 4, now), Ok(Inbound::Overflow));
        session.on_applied(1, now);
        assert_eq!(
            session.on_message(5, 4, now),
            Ok(Inbound::Accept),
            "room again"
        );
    }

    #[test]
    fn acks_report_reception_soon_and_application_in_batches() {
        let now = Instant::now();
        let later = now + Duration::from_millis(10);
        let mut session = established(A, B, now);
        for seq in 1..=3 {
            session.on_message(seq, seq - 1, now).expect("accept");
        }
        assert_eq!(session.poll(now).ack, None, "batched for the delay");
        assert!(session.next_deadline() <= later);
        assert_eq!(
            session.poll(later).ack,
            Some(ack(0, 3)),
            "reception reported"
        );
        session.on_applied(1, later);
        assert_eq!(
            session.poll(later).ack,
            None,
            "one application waits for the delay"
        );
        session.on_applied(2, later);
        assert_eq!(
            session.poll(later).ack,
            Some(ack(2, 3)),
            "ack_every reached"
        );
        session.on_applied(3, later);
        assert_eq!(session.poll(later).ack, None);
        let end = later + Duration::from_millis(10);
        assert_eq!(session.poll(end).ack, Some(ack(3, 3)));
        assert_eq!(
            session.poll(end + secs(1)).ack,
            None,
            "nothing new, nothing sent"
        );
    }

    #[test]
    fn a_lost_ack_is_repaired_by_retransmission_and_a_duplicate_ack() {
        let t0 = Instant::now();
        let mut sender = established(A, B, t0);
        let mut receiver = established(B, A, t0);
        for seq in 1..=2 {
            let prev = sender.on_sent(seq, t0);
            assert_eq!(receiver.on_message(seq, prev, t0), Ok(Inbound::Accept));
            receiver.on_applied(seq, t0);
        }
        // The receiver's ack is lost on the way.
        assert_eq!(receiver.poll(t0).ack, Some(ack(2, 2)));
        assert!(!sender.poll(t0 + Duration::from_millis(999)).retransmit);
        let t1 = t0 + secs(1);
        assert!(sender.next_deadline() <= t1);
        assert!(sender.poll(t1).retransmit);
        assert_eq!(
            sender.send_after(),
            0,
            "resend what the peer is not known to hold"
        );
        assert_eq!(sender.retransmissions(), 1);
        assert!(sender.may_send(1), "a resend needs no free window");
        let prev = sender.on_sent(1, t1);
        assert_eq!(receiver.on_message(1, prev, t1), Ok(Inbound::Duplicate));
        assert_eq!(
            receiver.poll(t1).ack,
            Some(ack(2, 2)),
            "a duplicate re-sends the ack"
        );
        assert_eq!(
            sender.on_ack(ack(2, 2), t1),
            Ok(Some(2)),
            "covers the unsent 2"
        );
        assert_eq!(sender.send_after(), 2);
        assert_eq!(sender.send_capacity(), 4);
    }

    #[test]
    fn retransmission_backs_off_and_resets_on_progress() {
        let t0 = Instant::now();
        let mut sender = established(A, B, t0);
        sender.on_sent(1, t0);
        let mut now = t0;
        for expected in [1, 2, 4, 4] {
            let wait = secs(expected);
            assert!(
                !sender
                    .poll(now + wait - Duration::from_millis(1))
                    .retransmit
            );
            now += wait;
            assert!(sender.poll(now).retransmit, "after {expected}s");
            sender.on_sent(1, now);
        }
        sender.on_ack(ack(1, 1), now).expect("ack");
        sender.on_sent(2, now);
        assert!(
            sender.poll(now + secs(1)).retransmit,
            "back to the initial timeout"
        );
    }

    #[test]
    fn a_slow_application_holds_the_sender_without_retransmissions() {
        let t0 = Instant::now();
        let mut sender = established(A, B, t0);
        for seq in 1..=4 {
            sender.on_sent(seq, t0);
        }
        sender.on_ack(ack(0, 4), t0).expect("received");
        assert_eq!(sender.send_capacity(), 0, "the window is full");
        for hour in 1..=5 {
            let due = sender.poll(t0 + secs(3600 * hour));
            assert!(!due.retransmit, "nothing is lost, the peer is just slow");
        }
    }

    #[test]
    fn a_failed_application_lowers_received_and_the_sender_resends_at_once() {
        let now = Instant::now();
        let mut sender = established(A, B, now);
        let mut receiver = established(B, A, now);
        for seq in 1..=3 {
            let prev = sender.on_sent(seq, now);
            receiver.on_message(seq, prev, now).expect("accept");
        }
        assert_eq!(sender.on_ack(ack(0, 3), now), Ok(None));
        receiver.on_applied(1, now);
        receiver.on_apply_failed(now);
        let prev = sender.on_sent(4, now);
        assert_eq!(
            receiver.on_message(4, prev, now),
            Ok(Inbound::Gap),
            "in transit"
        );
        let lowered = receiver.poll(now).ack.expect("immediate ack");
        assert_eq!(lowered, ack(1, 1));
        assert_eq!(sender.on_ack(lowered, now), Ok(Some(1)), "1 was applied");
        assert_eq!(sender.send_after(), 1, "resend from the drop");
        assert_eq!(sender.retransmissions(), 1);
        for seq in 2..=4 {
            assert!(sender.may_send(seq));
            let prev = sender.on_sent(seq, now);
            assert_eq!(receiver.on_message(seq, prev, now), Ok(Inbound::Accept));
        }
        assert!(matches!(
            sender.on_ack(ack(0, 4), now),
            Err(ProtocolViolation::InconsistentAck(_))
        ));
    }

    #[test]
    fn heartbeats_repeat_the_ack_when_idle_and_silence_kills_the_link() {
        let t0 = Instant::now();
        let mut session = established(A, B, t0);
        assert_eq!(session.poll(t0 + secs(9)), Due::default());
        assert_eq!(
            session.poll(t0 + secs(10)).ack,
            Some(ack(0, 0)),
            "heartbeat"
        );
        assert_eq!(session.poll(t0 + secs(11)).ack, None, "one per interval");
        session.on_transmitted(t0 + secs(15));
        assert_eq!(session.poll(t0 + secs(24)).ack, None);
        session.on_received(t0 + secs(20));
        assert!(!session.poll(t0 + secs(49)).dead);
        assert!(session.poll(t0 + secs(50)).dead);

        let mut waiting = Session::new(config(), A, t0);
        assert!(
            waiting.poll(t0 + secs(10)).ping,
            "before the hello, a WebSocket ping"
        );
    }

    #[test]
    fn a_peer_that_never_says_hello_times_out_even_if_it_pings() {
        let t0 = Instant::now();
        let mut session = Session::new(config(), A, t0);
        session.on_received(t0 + secs(25));
        assert!(session.next_deadline() <= t0 + secs(30));
        assert!(session.poll(t0 + secs(30)).dead);
    }
}

/// A model of two peers exchanging frames over a lossy, reconnecting link, driven by random
/// actions: whatever happens, every message that stays in an outbox is applied exactly once and
/// in order, and messages an outbox dropped (coalesced) are applied at most once.
#[cfg(test)]
mod simulation {
    use std::collections::{BTreeMap, HashMap, VecDeque};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Frame {
        Hello {
            stream: StreamId,
            resume: Option<ResumePoint>,
            window: u32,
        },
        Msg {
            seq: Seq,
            prev: Seq,
            id: u64,
        },
        Ack(Ack),
        Ping,
    }

    #[derive(Debug, Clone)]
    enum Action {
        Append(usize),
        Coalesce(usize, usize),
        Pump(usize),
        Deliver(usize),
        Lose(usize),
        Apply(usize),
        FailNextApply(usize),
        Tick(u64),
        Reconnect,
    }

    fn action() -> impl Strategy<Value = Action> {
        let side = 0..2usize;
        prop_oneof![
            3 => side.clone().prop_map(Action::Append),
            1 => (side.clone(), 0..8usize).prop_map(|(s, i)| Action::Coalesce(s, i)),
            4 => side.clone().prop_map(Action::Pump),
            8 => side.clone().prop_map(Action::Deliver),
            1 => side.clone().prop_map(Action::Lose),
            5 => side.clone().prop_map(Action::Apply),
            1 => side.clone().prop_map(Action::FailNextApply),
            2 => (1..3000u64).prop_map(Action::Tick),
            1 => Just(Action::Reconnect),
        ]
    }

    struct Peer {
        stream: StreamId,
        outbox: BTreeMap<Seq, u64>,
        next_seq: Seq,
        resume: Option<ResumePoint>,
        applied: Vec<(StreamId, Seq, u64)>,
        session: Session,
        apply_queue: VecDeque<(Seq, u64)>,
        fail_next_apply: bool,
    }

    struct World {
        now: Instant,
        peers: [Peer; 2],
        /// `wires[i]` carries frames sent by peer `i`.
        wires: [VecDeque<Frame>; 2],
        next_id: u64,
        appended: [Vec<u64>; 2],
        coalesced: Vec<u64>,
    }

    fn config() -> SessionConfig {
        SessionConfig {
            window: 3,
            ack_every: 2,
            ack_delay: Duration::from_millis(50),
            retransmit_initial: Duration::from_millis(500),
            retransmit_max: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
        }
    }

    impl World {
        fn new() -> Self {
            let now = Instant::now();
            let peer = |stream| Peer {
                stream,
                outbox: BTreeMap::new(),
                next_seq: 0,
                resume: None,
                applied: Vec::new(),
                session: Session::new(config(), stream, now),
                apply_queue: VecDeque::new(),
                fail_next_apply: false,
            };
            let mut world = World {
                now,
                peers: [peer(StreamId(1)), peer(StreamId(2))],
                wires: [VecDeque::new(), VecDeque::new()],
                next_id: 0,
                appended: [Vec::new(), Vec::new()],
                coalesced: Vec::new(),
            };
            world.reconnect();
            world
        }

        fn reconnect(&mut self) {
            for side in 0..2 {
                let peer = &mut self.peers[side];
                peer.session = Session::new(config(), peer.stream, self.now);
                peer.apply_queue.clear();
                self.wires[side].clear();
                self.wires[side].push_back(Frame::Hello {
                    stream: peer.stream,
                    resume: peer.resume,
                    window: config().window,
                });
            }
        }

        fn append(&mut self, side: usize) {
            let peer = &mut self.peers[side];
            peer.next_seq += 1;
            self.next_id += 1;
            peer.outbox.insert(peer.next_seq, self.next_id);
            self.appended[side].push(self.next_id);
        }

        fn pump(&mut self, side: usize) {
            let peer = &mut self.peers[side];
            let capacity = peer.session.send_capacity();
            let after = peer.session.send_after();
            let batch: Vec<(Seq, u64)> = peer
                .outbox
                .range(after + 1..)
                .take(capacity)
                .map(|(seq, id)| (*seq, *id))
                .collect();
            for (seq, id) in batch {
                if !peer.session.may_send(seq) {
                    break;
                }
                let prev = peer.session.on_sent(seq, self.now);
                self.wires[side].push_back(Frame::Msg { seq, prev, id });
            }
        }

        fn deliver(&mut self, from: usize) -> bool {
            let Some(frame) = self.wires[from].pop_front() else {
                return false;
            };
            let to = 1 - from;
            let now = self.now;
            let peer = &mut self.peers[to];
            match frame {
                Frame::Hello {
                    stream,
                    resume,
                    window,
                } => {
                    let start = peer
                        .session
                        .on_hello(stream, resume, window, peer.resume, now)
                        .expect("hello");
                    peer.outbox.retain(|seq, _| *seq > start);
                }
                Frame::Msg { seq, prev, id } => {
                    match peer.session.on_message(seq, prev, now).expect("message") {
                        Inbound::Accept => peer.apply_queue.push_back((seq, id)),
                        Inbound::Duplicate | Inbound::Gap | Inbound::Overflow => {}
                    }
                }
                Frame::Ack(ack) => {
                    if let Some(through) = peer.session.on_ack(ack, now).expect("ack") {
                        peer.outbox.retain(|seq, _| *seq > through);
                    }
                }
                Frame::Ping => peer.session.on_received(now),
            }
            true
        }

        fn apply(&mut self, side: usize) {
            let peer = &mut self.peers[side];
            let Some((seq, id)) = peer.apply_queue.pop_front() else {
                return;
            };
            if std::mem::take(&mut peer.fail_next_apply) {
                peer.session.on_apply_failed(self.now);
                peer.apply_queue.clear();
                return;
            }
            let stream = peer.session.peer_stream().expect("established");
            peer.applied.push((stream, seq, id));
            peer.resume = Some(ResumePoint { stream, seq });
            peer.session.on_applied(seq, self.now);
        }

        fn tick(&mut self, millis: u64) {
            self.now += Duration::from_millis(millis);
            let mut dead = false;
            for side in 0..2 {
                let due = self.peers[side].session.poll(self.now);
                if let Some(ack) = due.ack {
                    self.wires[side].push_back(Frame::Ack(ack));
                }
                if due.ping {
                    self.wires[side].push_back(Frame::Ping);
                }
                if due.retransmit {
                    self.pump(side);
                }
                dead |= due.dead;
            }
            if dead {
                self.reconnect();
            }
        }

        fn run(&mut self, action: &Action) {
            match *action {
                Action::Append(side) => self.append(side),
                Action::Coalesce(side, index) => {
                    let outbox = &mut self.peers[side].outbox;
                    if let Some(seq) = outbox.keys().nth(index).copied() {
                        let id = outbox.remove(&seq).expect("present");
                        self.coalesced.push(id);
                        self.append(side);
                    }
                }
                Action::Pump(side) => self.pump(side),
                Action::Deliver(from) => {
                    self.deliver(from);
                }
                Action::Lose(from) => {
                    // Hellos are never lost alone: losing one means the link broke.
                    if let Some(Frame::Hello { .. }) = self.wires[from].front() {
                        self.reconnect();
                    } else {
                        self.wires[from].pop_front();
                    }
                }
                Action::Apply(side) => self.apply(side),
                Action::FailNextApply(side) => self.peers[side].fail_next_apply = true,
                Action::Tick(millis) => self.tick(millis),
                Action::Reconnect => self.reconnect(),
            }
        }

        /// Runs a healthy link until both outboxes are drained.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let drained = self.peers.iter().all(|p| p.outbox.is_empty());
                let quiet = self.wires.iter().all(VecDeque::is_empty);
                if drained && quiet {
                    return;
                }
                for side in 0..2 {
                    self.pump(side);
                    while self.deliver(side) {}
                }
                for side in 0..2 {
                    while !self.peers[side].apply_queue.is_empty() {
                        self.apply(side);
                    }
                }
                self.tick(100);
            }
            panic!("the link did not settle");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn every_kept_message_is_applied_exactly_once_in_order(
            actions in proptest::collection::vec(action(), 0..250)
        ) {
            let mut world = World::new();
            for action in &actions {
                world.run(action);
            }
            world.settle();

            let mut counts: HashMap<u64, usize> = HashMap::new();
            for side in 0..2 {
                let applied = &world.peers[side].applied;
                for pair in applied.windows(2) {
                    prop_assert!(pair[0].1 < pair[1].1, "out of order: {pair:?}");
                }
                for (_, _, id) in applied {
                    *counts.entry(*id).or_default() += 1;
                }
            }
            for side in 0..2 {
                for id in &world.appended[side] {
                    let count = counts.get(id).copied().unwrap_or(0);
                    if world.coalesced.contains(id) {
                        prop_assert!(count <= 1, "coalesced message {id} applied {count} times");
                    } else {
                        prop_assert_eq!(count, 1, "message {} applied {} times", id, count);
                    }
                }
            }
        }
    }
}
