//! A small MQTT client for tests: connect, subscribe, publish, and wait for messages.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::TIMEOUT;

/// Why a test client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TestClientError {
    /// The broker did not answer in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The connection failed.
    #[error("MQTT connection: {0}")]
    Connection(String),
    /// The client was closed.
    #[error("the test client is closed")]
    Closed,
}

/// A message the client received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
}

impl Received {
    /// The payload parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

enum Note {
    Message(Received),
    SubAck,
    PubAck,
    Error(String),
}

/// A connected test client. Its event loop task is aborted on drop.
pub struct TestClient {
    client: AsyncClient,
    notes: mpsc::UnboundedReceiver<Note>,
    /// Messages received while waiting for an acknowledgement.
    buffered: std::collections::VecDeque<Received>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

impl TestClient {
    /// Connects with a clean session and waits for the broker's CONNACK.
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Result<TestClient, TestClientError> {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(8 << 20, 8 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        eventloop.network_options.set_tcp_nodelay(true);
        let (tx, notes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let note = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => None,
                    Ok(Event::Incoming(Packet::Publish(p))) => Some(Note::Message(Received {
                        topic: p.topic,
                        payload: p.payload,
                        retain: p.retain,
                    })),
                    Ok(Event::Incoming(Packet::SubAck(_))) => Some(Note::SubAck),
                    Ok(Event::Incoming(Packet::PubAck(_))) => Some(Note::PubAck),
                    Ok(_) => None,
                    Err(e) => {
                        let _ = tx.send(Note::Error(e.to_string()));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        None
                    }
                };
                if let Some(note) = note
                    && tx.send(note).is_err()
                {
                    return;
                }
            }
        });
        let mut this = TestClient {
            client,
            notes,
            buffered: Default::default(),
            task,
        };
        // A subscription round trip proves the connection is up.
        this.subscribe("edgetwin-test/ping").await?;
        Ok(this)
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) -> Result<(), TestClientError> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|_| TestClientError::Closed)?;
        self.wait_for(format!("SUBACK for {filter}"), |n| {
            matches!(n, Note::SubAck)
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), TestClientError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .map_err(|_| TestClientError::Closed)?;
        self.wait_for(format!("PUBACK for {topic}"), |n| matches!(n, Note::PubAck))
            .await
    }

    /// Publishes without waiting for anything (QoS 0 or 1).
    pub async fn publish_nowait(
        &self,
        topic: &str,
        qos: QoS,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), TestClientError> {
        self.client
            .publish(topic, qos, false, payload.into())
            .await
            .map_err(|_| TestClientError::Closed)
    }

    /// The next message, waiting up to `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Result<Received, TestClientError> {
        if let Some(message) = self.buffered.pop_front() {
            return Ok(message);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let note = tokio::time::timeout_at(deadline, self.notes.recv())
                .await
                .map_err(|_| TestClientError::Timeout(timeout, "a message".into()))?
                .ok_or(TestClientError::Closed)?;
            if let Note::Message(message) = note {
                return Ok(message);
            }
        }
    }

    /// The next message, waiting up to [`TIMEOUT`].
    pub async fn recv(&mut self) -> Result<Received, TestClientError> {
        self.recv_within(TIMEOUT).await
    }

    /// The first message on exactly `topic` (among those received and not taken yet, then new
    /// ones), waiting up to [`TIMEOUT`]. Messages on other topics stay for later calls.
    pub async fn recv_on(&mut self, topic: &str) -> Result<Received, TestClientError> {
        if let Some(index) = self.buffered.iter().position(|m| m.topic == topic)
            && let Some(message) = self.buffered.remove(index)
        {
            return Ok(message);
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let note = tokio::time::timeout_at(deadline, self.notes.recv())
                .await
                .map_err(|_| TestClientError::Timeout(TIMEOUT, format!("a message on {topic}")))?
                .ok_or(TestClientError::Closed)?;
            match note {
                Note::Message(message) if message.topic == topic => return Ok(message),
                Note::Message(message) => self.buffered.push_back(message),
                Note::Error(e) => tracing::debug!(error = %e, "test client connection error"),
                Note::SubAck | Note::PubAck => {}
            }
        }
    }

    /// Drops what arrived so far without waiting.
    pub fn clear(&mut self) {
        self.buffered.clear();
        while self.notes.try_recv().is_ok() {}
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }

    async fn wait_for(
        &mut self,
        what: String,
        done: impl Fn(&Note) -> bool,
    ) -> Result<(), TestClientError> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let note = tokio::time::timeout_at(deadline, self.notes.recv())
                .await
                .map_err(|_| TestClientError::Timeout(TIMEOUT, what.clone()))?
                .ok_or(TestClientError::Closed)?;
            if done(&note) {
                return Ok(());
            }
            match note {
                Note::Message(message) => self.buffered.push_back(message),
                Note::Error(e) => tracing::debug!(error = %e, "test client connection error"),
                Note::SubAck | Note::PubAck => {}
            }
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
