//! One link: drives a [`Session`] over an authenticated WebSocket. The protocol is symmetric
//! after the upgrade, so the hub and the edge client both run this loop.
//!
//! A single task per link. It never blocks on the application: `Inbox::apply` runs as one
//! branch of the loop while frames keep being read (heartbeats and acks flow during a slow
//! apply). Inbound data is bounded by the window the peer must respect; outbound data by the
//! window it reads from the outbox. Writes go through a queue that a cancel-safe flush branch
//! drains, so a stalled peer cannot wedge reading.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::ready;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, Hello, PROTOCOL_VERSION};
use super::inbox::{ApplyError, Delivery, Inbox};
use super::node::NodeName;
use super::outbox::Outbox;
use super::session::{Inbound, ResumePoint, Seq, Session, SessionConfig};
use super::stats::{Counter, TunnelStats};
use edgetwin_model::wire::Envelope;

/// Any byte stream a link can run over (plain TCP, TLS on either side).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The WebSocket of one link, type-erased over its transport.
pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// WebSocket settings per link: small buffers, because the hub holds thousands of links.
pub(crate) fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(max_message_bytes.saturating_mul(2).max(64 * 1024))
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkEnd {
    /// Closed on this side: shutdown, or replaced by a newer connection of the same node.
    #[error("closed on this side")]
    Stopped,
    /// The peer closed the WebSocket (with its code and reason, if it gave them).
    #[error("the peer closed the link: {0}")]
    PeerClosed(String),
    /// Nothing arrived from the peer for the heartbeat timeout.
    #[error("nothing heard from the peer within the heartbeat timeout")]
    HeartbeatTimeout,
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error("connection lost: {0}")]
    Transport(String),
    /// The local outbox or inbox failed.
    #[error("local storage failed: {0}")]
    Storage(String),
}

/// What one link needs from its endpoint.
pub(crate) struct LinkParts {
    /// The edge node this link serves.
    pub node: NodeName,
    pub config: SessionConfig,
    pub outbox: Arc<dyn Outbox>,
    /// Notified when the outbox has new entries.
    pub wake: Arc<Notify>,
    pub inbox: Arc<dyn Inbox>,
    pub stop: CancellationToken,
    pub stats: Arc<TunnelStats>,
    /// The largest WebSocket message the peer accepts (the same setting on both sides).
    pub max_message_bytes: usize,
    /// Which end this is, `"hub"` or `"edge"`: the scope of its [`edgetwin_hoptrace`] marks.
    pub side: &'static str,
}

type Sink = SplitSink<Socket, Message>;
type Source = SplitStream<Socket>;
type Applying = BoxFuture<'static, (Seq, Result<(), ApplyError>)>;

/// Runs the link until it ends. `on_established` is called once the peer's hello arrived. An
/// application in progress when the link ends is awaited, so that a newer link of the same node
/// reads a resume point that no older application can still move.
pub(crate) async fn run(
    socket: Socket,
    parts: &LinkParts,
    on_established: impl FnOnce(),
) -> LinkEnd {
    let (sink, source) = socket.split();
    let mut link = Link {
        parts,
        session: Session::new(parts.config.clone(), parts.outbox.stream(), Instant::now()),
        sink,
        outgoing: VecDeque::new(),
        unflushed: false,
        apply_queue: VecDeque::new(),
        outbox_dirty: true,
        stored: None,
        applying: None,
        up: None,
    };
    let end = link.drive(source, on_established).await;
    if let Some(application) = link.applying.take() {
        let (seq, result) = application.await;
        link.on_applied(seq, result);
    }
    link.close(&end).await;
    end
}

struct Link<'a> {
    parts: &'a LinkParts,
    session: Session,
    sink: Sink,
    outgoing: VecDeque<Message>,
    unflushed: bool,
    apply_queue: VecDeque<(Seq, Envelope)>,
    outbox_dirty: bool,
    /// What our hello announced about the peer's stream.
    stored: Option<ResumePoint>,
    /// The application in progress (one at a time, in order).
    applying: Option<Applying>,
    up: Option<super::stats::LinkUp<'a>>,
}

impl<'a> Link<'a> {
    async fn drive(&mut self, mut source: Source, on_established: impl FnOnce()) -> LinkEnd {
        let parts = self.parts;
        self.stored = match parts.inbox.resume_point(&parts.node).await {
            Ok(point) => point,
            Err(error) => return LinkEnd::Storage(format!("reading the resume point: {error}")),
        };
        let hello = Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            node: parts.node.to_string(),
            stream: parts.outbox.stream(),
            resume: self.stored,
            window: self.session.announced_window(),
        });
        if let Err(end) = self.push(&hello) {
            return end;
        }
        let mut on_established = Some(on_established);
        loop {
            let now = Instant::now();
            if let Err(end) = self.on_timers(now) {
                return end;
            }
            if let Err(end) = self.fill_window(now).await {
                return end;
            }
            if self.applying.is_none() {
                self.applying = self.next_application();
            }
            let deadline = tokio::time::Instant::from_std(self.session.next_deadline());
            let flushing = self.unflushed || !self.outgoing.is_empty();
            let event = tokio::select! {
                biased;
                () = parts.stop.cancelled() => return LinkEnd::Stopped,
                result = poll_applying(&mut self.applying), if self.applying.is_some() => {
                    Event::Applied(result)
                }
                result = flush(&mut self.sink, &mut self.outgoing), if flushing => {
                    Event::Flushed(result)
                }
                message = source.next() => Event::Received(message),
                () = parts.wake.notified() => Event::Wake,
                () = tokio::time::sleep_until(deadline) => Event::Timer,
            };
            match event {
                Event::Applied((seq, result)) => {
                    self.applying = None;
                    self.on_applied(seq, result);
                }
                Event::Flushed(Ok(())) => {
                    edgetwin_hoptrace::mark_in(parts.side, "link.flushed");
                    self.unflushed = false;
                    self.session.on_transmitted(Instant::now());
                }
                Event::Flushed(Err(error)) => return LinkEnd::Transport(error.to_string()),
                Event::Received(message) => {
                    let was_established = self.session.is_established();
                    if let Err(end) = self.on_received(message).await {
                        return end;
                    }
                    if !was_established && self.session.is_established() {
                        self.up = Some(parts.stats.link_up());
                        if let Some(callback) = on_established.take() {
                            callback();
                        }
                    }
                }
                Event::Wake => {
                    edgetwin_hoptrace::mark_in(parts.side, "link.woken");
                    self.outbox_dirty = true;
                }
                Event::Timer => {}
            }
        }
    }

    fn push(&mut self, frame: &Frame) -> Result<(), LinkEnd> {
        let text = frame
            .encode()
            .map_err(|error| LinkEnd::Storage(error.to_string()))?;
        self.push_text(text);
        Ok(())
    }

    fn push_text(&mut self, text: String) {
        self.outgoing.push_back(Message::text(text));
        self.unflushed = true;
    }

    fn on_timers(&mut self, now: Instant) -> Result<(), LinkEnd> {
        let due = self.session.poll(now);
        if due.dead {
            self.parts.stats.bump(Counter::HeartbeatTimeouts);
            return Err(LinkEnd::HeartbeatTimeout);
        }
        if let Some(ack) = due.ack {
            self.push(&Frame::Ack(ack))?;
        }
        if due.ping {
            self.outgoing.push_back(Message::Ping(Default::default()));
            self.unflushed = true;
        }
        if due.retransmit {
            self.parts.stats.bump(Counter::Retransmissions);
            tracing::debug!(node = %self.parts.node, after = self.session.send_after(), "retransmitting unacknowledged messages");
            self.outbox_dirty = true;
        }
        Ok(())
    }

    /// Reads as many outbox entries as the window allows and queues them.
    async fn fill_window(&mut self, now: Instant) -> Result<(), LinkEnd> {
        let capacity = self.session.send_capacity();
        // A peer that does not read makes writes pile up here: stop feeding them.
        let backlog = self.outgoing.len() >= self.parts.config.window as usize;
        if !self.outbox_dirty || capacity == 0 || backlog {
            return Ok(());
        }
        let entries = self
            .parts
            .outbox
            .peek_after(self.session.send_after(), capacity)
            .await
            .map_err(|error| LinkEnd::Storage(format!("reading the outbox: {error}")))?;
        edgetwin_hoptrace::mark_in(self.parts.side, "link.outbox.read");
        self.outbox_dirty = entries.len() == capacity;
        for entry in entries {
            if !self.session.may_send(entry.seq) {
                self.outbox_dirty = true;
                break;
            }
            let seq = entry.seq;
            let frame = Frame::Msg {
                seq,
                prev: self.session.next_prev(),
                message: entry.message,
            };
            let text = frame
                .encode()
                .map_err(|error| LinkEnd::Storage(error.to_string()))?;
            if text.len() > self.parts.max_message_bytes {
                // It can never be delivered; sending it would only break the link again and again.
                self.parts.stats.bump(Counter::OversizeDropped);
                let Frame::Msg { message, .. } = &frame else {
                    continue;
                };
                tracing::error!(
                    node = %self.parts.node,
                    seq,
                    msg_id = %message.header.msg_id,
                    bytes = text.len(),
                    limit = self.parts.max_message_bytes,
                    "outbox message too large for the tunnel; dropped"
                );
                self.session.on_skipped(seq);
                continue;
            }
            self.session.on_sent(seq, now);
            edgetwin_hoptrace::mark_in(self.parts.side, "link.msg.queued");
            self.push_text(text);
            self.parts.stats.bump(Counter::MessagesSent);
        }
        Ok(())
    }

    fn next_application(&mut self) -> Option<Applying> {
        let (seq, message) = self.apply_queue.pop_front()?;
        let stream = self.session.peer_stream()?;
        let inbox = Arc::clone(&self.parts.inbox);
        let delivery = Delivery {
            node: self.parts.node.clone(),
            stream,
            seq,
            message,
        };
        Some(Box::pin(async move { (seq, inbox.apply(delivery).await) }))
    }

    fn on_applied(&mut self, seq: Seq, result: Result<(), ApplyError>) {
        match result {
            Ok(()) => {
                edgetwin_hoptrace::mark_in(self.parts.side, "link.msg.applied");
                self.parts.stats.bump(Counter::MessagesApplied);
                self.session.on_applied(seq, Instant::now());
            }
            Err(error) => {
                self.parts.stats.bump(Counter::ApplyFailures);
                tracing::warn!(node = %self.parts.node, seq, %error, "applying a tunnel message failed; the peer will resend it");
                self.session.on_apply_failed(Instant::now());
                self.apply_queue.clear();
            }
        }
    }

    async fn on_received(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), LinkEnd> {
        let now = Instant::now();
        let text = match message {
            None => return Err(LinkEnd::Transport("connection closed".into())),
            Some(Err(error)) => return Err(LinkEnd::Transport(error.to_string())),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                self.session.on_received(now);
                return Ok(());
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason));
                return Err(LinkEnd::PeerClosed(reason.unwrap_or_default()));
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(self.violation("binary frames are not part of the protocol"));
            }
        };
        let frame = Frame::decode(text.as_str()).map_err(|error| self.violation(error))?;
        match frame {
            Frame::Hello(hello) => self.on_hello(hello, now).await,
            Frame::Msg { seq, prev, message } => {
                let inbound = self
                    .session
                    .on_message(seq, prev, now)
                    .map_err(|v| self.violation(v))?;
                match inbound {
                    Inbound::Accept => {
                        edgetwin_hoptrace::mark_in(self.parts.side, "link.msg.received");
                        self.apply_queue.push_back((seq, message));
                    }
                    Inbound::Duplicate => self.parts.stats.bump(Counter::DuplicatesDropped),
                    Inbound::Gap => self.parts.stats.bump(Counter::GapsDropped),
                    Inbound::Overflow => self.parts.stats.bump(Counter::WindowOverflows),
                }
                Ok(())
            }
            Frame::Ack(ack) => {
                let before = self.session.retransmissions();
                let applied = self
                    .session
                    .on_ack(ack, now)
                    .map_err(|v| self.violation(v))?;
                if self.session.retransmissions() > before {
                    self.parts.stats.bump(Counter::Retransmissions);
                    self.outbox_dirty = true;
                }
                if let Some(through) = applied {
                    self.ack_outbox(through).await?;
                }
                Ok(())
            }
        }
    }

    async fn on_hello(&mut self, hello: Hello, now: Instant) -> Result<(), LinkEnd> {
        if hello.version != PROTOCOL_VERSION {
            return Err(self.violation(format!(
                "peer speaks protocol version {}, this side {PROTOCOL_VERSION}",
                hello.version
            )));
        }
        if hello.node != self.parts.node.as_str() {
            return Err(self.violation(format!(
                "hello names node {:?} but the link is for {}",
                hello.node, self.parts.node
            )));
        }
        let start = self
            .session
            .on_hello(hello.stream, hello.resume, hello.window, self.stored, now)
            .map_err(|v| self.violation(v))?;
        tracing::debug!(node = %self.parts.node, resume_after = start, "tunnel link established");
        if start > 0 {
            self.ack_outbox(start).await?;
        }
        self.outbox_dirty = true;
        Ok(())
    }

    async fn ack_outbox(&mut self, through: Seq) -> Result<(), LinkEnd> {
        self.outbox_dirty = true;
        self.parts
            .outbox
            .ack_through(through)
            .await
            .map_err(|error| LinkEnd::Storage(format!("acknowledging the outbox: {error}")))
    }

    fn violation(&self, what: impl std::fmt::Display) -> LinkEnd {
        self.parts.stats.bump(Counter::ProtocolErrors);
        tracing::warn!(node = %self.parts.node, %what, "tunnel protocol violation; closing the link");
        LinkEnd::Protocol(what.to_string())
    }

    /// Says goodbye where that makes sense; never waits long for a dead peer.
    async fn close(&mut self, end: &LinkEnd) {
        self.up = None;
        let frame = match end {
            LinkEnd::Stopped => Some((CloseCode::Away, "closing")),
            LinkEnd::Protocol(_) => Some((CloseCode::Protocol, "protocol violation")),
            LinkEnd::Storage(_) => Some((CloseCode::Error, "internal error")),
            LinkEnd::PeerClosed(_) | LinkEnd::HeartbeatTimeout | LinkEnd::Transport(_) => None,
        };
        if let Some((code, reason)) = frame {
            let close = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let goodbye = self.sink.send(close);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), goodbye).await;
        }
    }
}

enum Event {
    Applied((Seq, Result<(), ApplyError>)),
    Flushed(Result<(), tokio_tungstenite::tungstenite::Error>),
    Received(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Wake,
    Timer,
}

async fn poll_applying(applying: &mut Option<Applying>) -> (Seq, Result<(), ApplyError>) {
    match applying {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Hands queued messages to the sink and flushes it. Cancel-safe: a message leaves the queue
/// only when the sink took it.
async fn flush(
    sink: &mut Sink,
    outgoing: &mut VecDeque<Message>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    poll_fn(|cx| {
        while !outgoing.is_empty() {
            ready!(sink.poll_ready_unpin(cx))?;
            if let Some(message) = outgoing.pop_front() {
                sink.start_send_unpin(message)?;
            }
        }
        sink.poll_flush_unpin(cx)
    })
    .await
}
