//! A TCP listener for `axum::serve` with a cap on its open connections, a deadline for a new
//! connection's first byte, a back-off on accept errors and one log line per interval for
//! repeated ones.
//!
//! While the cap is reached the listener accepts nothing: new connections wait in the kernel's
//! backlog, holding no descriptor of this process, until an open one closes. A connection that
//! sends nothing within [`FIRST_BYTE_TIMEOUT`] is closed, so idle connections cannot hold the
//! slots. An accept error (typically EMFILE) waits before the next try, doubling from
//! [`BACKOFF_MIN`] to [`BACKOFF_MAX`], instead of spinning.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::log_limit::Repeated;

/// A new connection must send its first byte within this.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failed accept.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait after failed accepts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A listener with at most `max_connections` open connections.
pub struct CappedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max_connections: usize,
    name: &'static str,
    full: Repeated,
    errors: Repeated,
    backoff: Duration,
}

impl CappedListener {
    /// Wraps `listener`; `name` names it in the log.
    pub fn new(listener: TcpListener, max_connections: usize, name: &'static str) -> Self {
        CappedListener {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            name,
            full: Repeated::new(),
            errors: Repeated::new(),
            backoff: BACKOFF_MIN,
        }
    }

    /// The cap.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    async fn accept_capped(&mut self) -> (CappedStream, SocketAddr) {
        loop {
            let slot = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if let Some(suppressed) = self.full.due(Instant::now()) {
                        tracing::warn!(
                            listener = self.name,
                            max_connections = self.max_connections,
                            suppressed,
                            "connection limit reached: new connections wait"
                        );
                    }
                    match Arc::clone(&self.slots).acquire_owned().await {
                        Ok(slot) => slot,
                        // Never closed; waiting for ever is what a closed one would mean.
                        Err(_) => std::future::pending().await,
                    }
                }
            };
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = BACKOFF_MIN;
                    // Small JSON answers and events: send each at once (no Nagle delay).
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "cannot set TCP_NODELAY");
                    }
                    return (CappedStream::new(stream, slot), peer);
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    if let Some(suppressed) = self.errors.due(Instant::now()) {
                        tracing::error!(listener = self.name, %error, suppressed, retry_in = ?self.backoff, "cannot accept a connection");
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Errors of one connection that say nothing about the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        self.accept_capped()
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// An accepted connection holding one of the listener's slots until it is dropped.
pub struct CappedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first byte arrives: when the connection is closed without one.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CappedStream {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit) -> Self {
        CappedStream {
            stream,
            _slot: slot,
            first_byte: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_TIMEOUT))),
        }
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.first_byte = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .first_byte
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the first-byte deadline",
                    )))
                } else {
                    Poll::Pending
                }
            }
            error => error,
        }
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use axum::serve::Listener;

    async fn listener(max: usize) -> (CappedListener, SocketAddr) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = tcp.local_addr().expect("address");
        (CappedListener::new(tcp, max, "test"), addr)
    }

    #[tokio::test]
    async fn at_the_cap_new_connections_wait_until_one_closes() {
        let (mut listener, addr) = listener(2).await;
        let _a = TcpStream::connect(addr).await.expect("connects");
        let _b = TcpStream::connect(addr).await.expect("connects");
        let _c = TcpStream::connect(addr).await.expect("connects (backlog)");
        let first = listener.accept().await.0;
        let _second = listener.accept().await.0;
        let waiting = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(waiting.is_err(), "the third waits while two are open");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accepted once a slot is free");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_after_the_deadline() {
        let (mut listener, addr) = listener(1).await;
        let _silent = TcpStream::connect(addr).await.expect("connects");
        let (mut accepted, _) = listener.accept().await;
        let mut buf = [0u8; 8];
        let error = accepted.read(&mut buf).await.expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_speaks_has_no_deadline() {
        let (mut listener, addr) = listener(1).await;
        let mut client = TcpStream::connect(addr).await.expect("connects");
        let (mut accepted, _) = listener.accept().await;
        client.write_all(b"G").await.expect("writes");
        let mut buf = [0u8; 8];
        assert_eq!(accepted.read(&mut buf).await.expect("reads"), 1);
        tokio::time::sleep(FIRST_BYTE_TIMEOUT * 3).await;
        client.write_all(b"ET").await.expect("writes");
        assert_eq!(accepted.read(&mut buf).await.expect("reads"), 2);
    }
}
