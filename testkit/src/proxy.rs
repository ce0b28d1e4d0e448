//! A TCP proxy a test controls, to break and restore a link between two real endpoints.
//!
//! Point the client at [`TcpProxy::addr`] instead of the server. Then:
//! - [`TcpProxy::cut`] drops every forwarded connection and refuses new ones (accepted and closed
//!   at once) until [`TcpProxy::heal`] — a partition or a restarting router;
//! - [`TcpProxy::blackhole`] keeps connections open but silently discards all bytes both ways, and
//!   hides closes too — a dead NAT mapping or an unplugged cable, which only heartbeats can
//!   detect;
//! - [`TcpProxy::heal`] forwards again (connections cut earlier stay gone; blackholed ones
//!   resume forwarding).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Forward,
    /// Drop all connections; close new ones immediately.
    Cut,
    /// Keep connections, discard their bytes.
    Blackhole,
}

/// The running proxy; stops (closing everything) when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: watch::Sender<ProxyMode>,
    live: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(ProxyMode::Forward);
        let live = Arc::new(AtomicUsize::new(0));
        let upstream = Arc::new(Mutex::new(upstream));
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&upstream),
            mode.clone(),
            Arc::clone(&live),
        ));
        Ok(TcpProxy {
            addr,
            upstream,
            mode,
            live,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.mode.send_replace(ProxyMode::Cut);
    }

    /// Discards all bytes on every connection, old and new, until [`TcpProxy::heal`].
    pub fn blackhole(&self) {
        self.mode.send_replace(ProxyMode::Blackhole);
    }

    /// Forwards new connections to `upstream` from now on (a restarted server on another port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(PoisonError::into_inner) = upstream;
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.mode.send_replace(ProxyMode::Forward);
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Forwarding tasks watch the mode: a cut closes them.
        self.mode.send_replace(ProxyMode::Cut);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: watch::Sender<ProxyMode>,
    live: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == ProxyMode::Cut {
            drop(client);
            continue;
        }
        let to = *upstream.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(server) = TcpStream::connect(to).await else {
            continue;
        };
        let live = Arc::clone(&live);
        let watch = mode.subscribe();
        tokio::spawn(async move {
            live.fetch_add(1, Ordering::SeqCst);
            forward(client, server, watch).await;
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copies both ways until either side closes or the proxy is cut. In a blackhole, not even a
/// close gets through: the other side stays open, as behind a dead network.
async fn forward(client: TcpStream, server: TcpStream, mut mode: watch::Receiver<ProxyMode>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    let (mut client_open, mut server_open) = (true, true);
    // The mode is read when bytes arrive, so a change applies to every byte read after it.
    let now = |mode: &watch::Receiver<ProxyMode>| *mode.borrow();
    loop {
        match now(&mode) {
            ProxyMode::Cut => return,
            ProxyMode::Forward if !(client_open && server_open) => return,
            ProxyMode::Forward | ProxyMode::Blackhole => {}
        }
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = client_read.read(&mut up), if client_open => match read {
                Ok(0) | Err(_) => client_open = false,
                Ok(n) if now(&mode) == ProxyMode::Forward => {
                    if server_write.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
            read = server_read.read(&mut down), if server_open => match read {
                Ok(0) | Err(_) => server_open = false,
                Ok(n) if now(&mode) == ProxyMode::Forward => {
                    if client_write.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An echo server on a free port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(stream: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut buf = vec![0u8; text.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        Ok(buf)
    }

    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn forwards_cuts_refuses_and_heals() {
        let proxy = TcpProxy::start(echo_server().await).await.expect("proxy");
        let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut first, b"hello").await.expect("echo"), b"hello");
        assert_eq!(proxy.connections(), 1);

        proxy.cut();
        assert!(closed(&mut first).await, "a cut closes live connections");
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("tcp accept");
        assert!(closed(&mut refused).await, "and refuses new ones");

        proxy.heal();
        let mut again = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut again, b"back").await.expect("echo"), b"back");
    }

    #[tokio::test]
    async fn a_blackhole_keeps_connections_but_loses_bytes() {
        let proxy = TcpProxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo(&mut stream, b"1").await.expect("echo"), b"1");
        proxy.blackhole();
        stream.write_all(b"lost").await.expect("write");
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
        assert!(read.is_err(), "nothing comes back: {read:?}");
        assert_eq!(proxy.connections(), 1);
        proxy.heal();
        assert_eq!(echo(&mut stream, b"2").await.expect("echo"), b"2");
    }

    #[tokio::test]
    async fn a_blackhole_hides_a_close_until_healed() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let proxy = TcpProxy::start(listener.local_addr().expect("addr"))
            .await
            .expect("proxy");
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        proxy.blackhole();
        drop(server);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await;
        assert!(read.is_err(), "the close does not get through: {read:?}");
        proxy.heal();
        assert!(closed(&mut client).await, "healing reveals the closed side");
    }
}
