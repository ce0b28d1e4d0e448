//! One PUBLISH sent with hand-made MQTT 3.1.1 packets, for what client libraries refuse to send:
//! wildcards, NUL or line breaks in a topic, packets over their own size limit.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A publish to send raw (see [`RawPublish::send`]).
#[derive(Debug, Clone, Copy)]
pub struct RawPublish<'a> {
    /// The client id of the connection.
    pub client_id: &'a str,
    /// Username and password, if the broker wants a login.
    pub login: Option<(&'a str, &'a str)>,
    /// The topic, sent as is.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// QoS 1 and retained (the broker must acknowledge); QoS 0 otherwise.
    pub retained_qos1: bool,
}

impl RawPublish<'_> {
    /// Connects to `addr`, publishes, disconnects. Returns whether the broker acknowledged the
    /// publish within `wait` (QoS 1; `false` when it closed the connection instead); a QoS 0
    /// publish is `true` once written.
    ///
    /// # Panics
    /// When the broker cannot be reached or does not answer the CONNECT with a CONNACK.
    pub async fn send(&self, addr: SocketAddr, wait: Duration) -> bool {
        let mut connect = Vec::new();
        put_string(&mut connect, b"MQTT");
        // Level 4 (3.1.1), clean session, keep-alive 30 s; username and password flags.
        let flags = 0x02 | if self.login.is_some() { 0xC0 } else { 0 };
        connect.extend_from_slice(&[4, flags, 0, 30]);
        put_string(&mut connect, self.client_id.as_bytes());
        if let Some((username, password)) = self.login {
            put_string(&mut connect, username.as_bytes());
            put_string(&mut connect, password.as_bytes());
        }
        let mut publish = Vec::new();
        put_string(&mut publish, self.topic.as_bytes());
        if self.retained_qos1 {
            publish.extend_from_slice(&[0, 1]); // packet id
        }
        publish.extend_from_slice(self.payload);

        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects to the broker");
        stream
            .write_all(&packet(0x10, connect))
            .await
            .expect("CONNECT");
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).await.expect("CONNACK");
        assert_eq!(connack[0], 0x20, "a CONNACK");
        let kind = if self.retained_qos1 { 0x33 } else { 0x30 };
        // The broker may close the connection while the packet is still being sent.
        let written = stream.write_all(&packet(kind, publish)).await.is_ok();
        let acknowledged = if self.retained_qos1 {
            let mut puback = [0u8; 4];
            matches!(
                tokio::time::timeout(wait, stream.read_exact(&mut puback)).await,
                Ok(Ok(_)) if puback[0] == 0x40
            )
        } else {
            written
        };
        // A clean DISCONNECT (the broker may already have closed the connection).
        let _ = stream.write_all(&[0xE0, 0]).await;
        acknowledged
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).expect("an MQTT string is at most 65,535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

/// A packet of `kind` (type and flags) with its remaining length encoded.
fn packet(kind: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![kind];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}
