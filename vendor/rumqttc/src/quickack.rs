//! EDGETWIN PATCH: a TCP stream that acknowledges what it reads at once.
//!
//! Linux delays the ACK of a segment by up to 40 ms when the receiver has nothing to send back
//! (delayed ACK). A broker that writes without TCP_NODELAY (mosquitto's default) sends the first
//! of several small packets — e.g. the PUBACKs of our QoS 1 publishes — and holds the rest, and
//! the next publish it forwards to us, until that first one is acknowledged: every request/answer
//! round trip then waits for our delayed-ACK timer. Re-arming TCP_QUICKACK after each read that
//! returned data sends the pending ACK now (the flag is not sticky: the kernel goes back to
//! delayed ACKs as soon as the connection looks interactive, hence after every read).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] that sets TCP_QUICKACK after every read that returned data.
pub(crate) struct QuickAckStream {
    inner: TcpStream,
}

impl QuickAckStream {
    pub(crate) fn new(inner: TcpStream) -> QuickAckStream {
        QuickAckStream { inner }
    }

    fn ack_now(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Best effort: a failure only means a delayed ACK.
            let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.ack_now();
        }
        polled
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected sockets that have exchanged data both ways, so the kernel treats the
    /// connection as interactive and delays its ACKs.
    async fn interactive_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut a, mut b) = (client, server);
        let mut byte = [0u8; 1];
        for _ in 0..4 {
            a.write_all(b"x").await.unwrap();
            b.read_exact(&mut byte).await.unwrap();
            b.write_all(b"y").await.unwrap();
            a.read_exact(&mut byte).await.unwrap();
        }
        (a, b)
    }

    #[tokio::test]
    async fn a_read_rearms_quickack() {
        let (a, mut b) = interactive_pair().await;
        let quickack = |s: &TcpStream| socket2::SockRef::from(s).tcp_quickack().unwrap();
        assert!(!quickack(&a), "an interactive connection delays its ACKs");

        let mut a = QuickAckStream::new(a);
        b.write_all(b"z").await.unwrap();
        let mut byte = [0u8; 1];
        a.read_exact(&mut byte).await.unwrap();
        assert!(quickack(&a.inner), "the read switched quick ACKs on");
    }
}
