//! The cloud's per-node outboxes in sqlite.
//!
//! One dedicated thread owns the connection. Requests from any task queue up and the thread
//! serves what is queued in **one transaction** (group commit), so the cost of a commit is shared:
//! a fan-out to 10 000 nodes is a handful of transactions, not 10 000. A request's future
//! resolves only after its transaction committed, so an appended message is durable when
//! `append` returns (WAL with `synchronous=NORMAL`: it survives a crash of the process; a power
//! loss may lose the last transactions — the device controller's periodic reconcile repairs
//! that). WAL checkpoints run on a thread of their own, not inside an append's commit.
//!
//! Tables: `tunnel_streams(node, stream_id, last_seq, depth)` keeps each node's stream id, its
//! last sequence number (so numbers never go back, even when the queue runs empty) and the queue
//! length; `tunnel_outbox(node, seq, message)` holds the messages as JSON.
//!
//! A node with a link also keeps its latest committed messages in memory ([`Recent`]): the store's
//! thread adds each append there right after its commit, before the append returns, so the link
//! sends a message it is woken for without a second round trip to this thread to read it back.
//! The table stays the source of truth: what memory does not hold (after a restart, behind a
//! gap, older than [`RECENT_CAPACITY`]) is read from it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::node::NodeName;
use super::outbox::{Outbox, OutboxEntry, OutboxError};
use super::session::{Seq, StreamId};
use crate::wal_checkpoint::BackgroundCheckpoint;
use edgetwin_model::wire::Envelope;

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 1024;

/// At most this many committed messages per linked node are kept in memory.
const RECENT_CAPACITY: usize = 256;

/// Options of the cloud's outbox store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOutboxOptions {
    /// Messages a node's queue may hold; beyond it `append` fails with [`OutboxError::Full`]
    /// (the caller resynchronises that node later, e.g. by a full reconcile on reconnect).
    pub max_queue_len: usize,
}

impl Default for HubOutboxOptions {
    fn default() -> Self {
        HubOutboxOptions {
            max_queue_len: 10_000,
        }
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HubStoreError {
    /// The database could not be opened or prepared.
    #[error("hub store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: rusqlite::Error,
    },
    /// The store's thread could not be started.
    #[error("hub store: cannot start its thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Handle to the per-node outboxes; cheap to clone.
#[derive(Clone)]
pub struct HubOutbox {
    jobs: mpsc::Sender<Box<dyn Job>>,
    recent: Arc<RecentByNode>,
}

impl std::fmt::Debug for HubOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOutbox").finish_non_exhaustive()
    }
}

/// One request to the store's thread: run inside the batch's transaction, then learn whether
/// the transaction committed.
trait Job: Send {
    /// Runs the request. An `Err` is a storage failure that aborts (rolls back) the whole batch;
    /// a refusal such as a full queue is a result, and writes nothing.
    fn run(&mut self, conn: &Connection, options: &HubOutboxOptions) -> Result<(), String>;
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

/// What a [`Call`] does with its value once its transaction committed, before it replies.
type OnCommit<T> = Box<dyn FnOnce(&T) + Send>;

/// A [`Job`] that computes a value and replies with it after the commit.
struct Call<T, F> {
    op: Option<F>,
    result: Option<Result<T, OutboxError>>,
    on_commit: Option<OnCommit<T>>,
    reply: oneshot::Sender<Result<T, OutboxError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &HubOutboxOptions) -> Result<T, OutboxError> + Send,
{
    fn run(&mut self, conn: &Connection, options: &HubOutboxOptions) -> Result<(), String> {
        let Some(op) = self.op.take() else {
            return Ok(());
        };
        let result = op(conn, options);
        let fatal = match &result {
            Err(OutboxError::Storage(error)) => Err(error.clone()),
            _ => Ok(()),
        };
        self.result = Some(result);
        fatal
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(result)) => {
                if let (Ok(value), Some(on_commit)) = (&result, self.on_commit) {
                    on_commit(value);
                }
                result
            }
            (Err(error), _) => Err(OutboxError::Storage(error)),
            (Ok(()), None) => Err(OutboxError::Storage("request was not run".into())),
        };
        // A caller that gave up waiting dropped its receiver; nothing to do then.
        let _ = self.reply.send(result);
    }
}

impl HubOutbox {
    /// Opens (creating if needed) the outbox tables in the sqlite file at `path` and starts the
    /// store's thread. The thread ends when the last handle is dropped.
    pub fn open(path: &Path, options: HubOutboxOptions) -> Result<Self, HubStoreError> {
        let error = |source| HubStoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = super::cloud_db::open(
            path,
            "CREATE TABLE IF NOT EXISTS tunnel_streams (
                 node TEXT PRIMARY KEY,
                 stream_id INTEGER NOT NULL,
                 last_seq INTEGER NOT NULL,
                 depth INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS tunnel_outbox (
                 node TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 message TEXT NOT NULL,
                 PRIMARY KEY (node, seq)
             ) WITHOUT ROWID;",
        )
        .map_err(error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(error)?;
        let (jobs, receiver) = mpsc::channel(4 * MAX_BATCH);
        let worker = Worker {
            _checkpoint: BackgroundCheckpoint::install(&mut conn, path),
            conn,
            options,
            path: path.to_owned(),
        };
        std::thread::Builder::new()
            .name("hub-outbox".into())
            .spawn(move || worker.run(receiver))
            .map_err(HubStoreError::Thread)?;
        Ok(HubOutbox {
            jobs,
            recent: Arc::default(),
        })
    }

    async fn call<T, F>(&self, op: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &HubOutboxOptions) -> Result<T, OutboxError> + Send + 'static,
    {
        self.call_then(op, None).await
    }

    /// Like [`call`](Self::call); `on_commit` runs on the store's thread once the transaction
    /// committed, before the reply.
    async fn call_then<T, F>(&self, op: F, on_commit: Option<OnCommit<T>>) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &HubOutboxOptions) -> Result<T, OutboxError> + Send + 'static,
    {
        let stopped = || OutboxError::Storage("hub store thread stopped".into());
        let (reply, response) = oneshot::channel();
        let job = Box::new(Call {
            op: Some(op),
            result: None,
            on_commit,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| stopped())?;
        response.await.map_err(|_| stopped())?
    }

    /// `node`'s outbox (its stream is created on first use).
    pub async fn outbox(&self, node: &NodeName) -> Result<NodeOutbox, OutboxError> {
        let owned = node.clone();
        let stream = self.call(move |conn, _| stream(conn, &owned)).await?;
        Ok(NodeOutbox {
            store: self.clone(),
            node: node.clone(),
            stream,
            recent: self.recent.attach(node),
        })
    }

    /// Appends `message` to `node`'s queue; durable when it returns.
    pub async fn append(&self, node: &NodeName, message: &Envelope) -> Result<Seq, OutboxError> {
        let json = serde_json::to_string(message)
            .map_err(|error| OutboxError::Storage(format!("cannot encode message: {error}")))?;
        self.append_json(node, json, message).await
    }

    /// Appends `message`, already encoded as `json`: the table keeps the JSON, a link's memory
    /// the decoded message (so that the link does not decode what was just encoded).
    pub(crate) async fn append_json(
        &self,
        node: &NodeName,
        json: String,
        message: &Envelope,
    ) -> Result<Seq, OutboxError> {
        let committed = Arc::new(message.clone());
        let recent = Arc::clone(&self.recent);
        let owned = node.clone();
        let on_commit: OnCommit<Seq> =
            Box::new(move |seq| recent.appended(&owned, *seq, committed));
        let node = node.clone();
        self.call_then(
            move |conn, options| append(conn, &node, &json, options.max_queue_len),
            Some(on_commit),
        )
        .await
    }

    /// How many messages wait in `node`'s queue.
    pub async fn depth(&self, node: &NodeName) -> Result<usize, OutboxError> {
        let node = node.clone();
        self.call(move |conn, _| depth(conn, &node)).await
    }

    /// Every node's queue length, in node order (nodes that never had a stream are absent).
    pub async fn depths(&self) -> Result<Vec<(String, usize)>, OutboxError> {
        self.call(|conn, _| depths(conn)).await
    }
}

/// The messages of the nodes whose outboxes are open (held by a link), by node. An entry whose
/// outboxes are all gone is dropped at that node's next append.
#[derive(Default)]
struct RecentByNode(Mutex<HashMap<NodeName, Weak<Mutex<Recent>>>>);

impl RecentByNode {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, Weak<Mutex<Recent>>>> {
        // Critical sections only insert, remove or upgrade: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `node`'s messages in memory: the ones an open outbox of the node already holds, or new.
    fn attach(&self, node: &NodeName) -> Arc<Mutex<Recent>> {
        let mut nodes = self.lock();
        if let Some(recent) = nodes.get(node).and_then(Weak::upgrade) {
            return recent;
        }
        let recent = Arc::new(Mutex::new(Recent::default()));
        nodes.insert(node.clone(), Arc::downgrade(&recent));
        recent
    }

    /// `message` was committed as `seq` of `node`'s queue (called on the store's thread, in
    /// commit order).
    fn appended(&self, node: &NodeName, seq: Seq, message: Arc<Envelope>) {
        let mut nodes = self.lock();
        match nodes.get(node).map(Weak::upgrade) {
            Some(Some(recent)) => {
                drop(nodes);
                lock_recent(&recent).push(seq, message);
            }
            Some(None) => {
                nodes.remove(node);
            }
            None => {}
        }
    }
}

fn lock_recent(recent: &Mutex<Recent>) -> std::sync::MutexGuard<'_, Recent> {
    // Every change leaves the entries contiguous: a poisoned one is still consistent.
    recent.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latest committed, unacknowledged messages of one node, contiguous in `seq`.
#[derive(Debug, Default)]
struct Recent {
    entries: VecDeque<(Seq, Arc<Envelope>)>,
}

impl Recent {
    fn push(&mut self, seq: Seq, message: Arc<Envelope>) {
        if self.entries.back().is_some_and(|(last, _)| last + 1 != seq) {
            // Not contiguous (not expected): start over; the table has the rest.
            self.entries.clear();
        }
        self.entries.push_back((seq, message));
        if self.entries.len() > RECENT_CAPACITY {
            self.entries.pop_front();
        }
    }

    fn ack_through(&mut self, through: Seq) {
        while self.entries.front().is_some_and(|(seq, _)| *seq <= through) {
            self.entries.pop_front();
        }
    }

    /// Up to `limit` entries after `after` when memory holds every committed entry after it;
    /// `None` when only the table can tell.
    fn after(&self, after: Seq, limit: usize) -> Option<Vec<(Seq, Arc<Envelope>)>> {
        let (first, _) = self.entries.front()?;
        if after.checked_add(1)? < *first {
            return None;
        }
        Some(
            self.entries
                .iter()
                .filter(|(seq, _)| *seq > after)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

/// One node's queue in a [`HubOutbox`].
#[derive(Debug, Clone)]
pub struct NodeOutbox {
    store: HubOutbox,
    node: NodeName,
    stream: StreamId,
    recent: Arc<Mutex<Recent>>,
}

impl Outbox for NodeOutbox {
    fn stream(&self) -> StreamId {
        self.stream
    }

    fn append(&self, message: Envelope) -> BoxFuture<'_, Result<Seq, OutboxError>> {
        Box::pin(async move { self.store.append(&self.node, &message).await })
    }

    fn peek_after(
        &self,
        after: Seq,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, OutboxError>> {
        Box::pin(async move {
            let in_memory = lock_recent(&self.recent).after(after, limit);
            if let Some(rows) = in_memory {
                return Ok(rows
                    .into_iter()
                    .map(|(seq, message)| OutboxEntry {
                        seq,
                        message: Envelope::clone(&message),
                    })
                    .collect());
            }
            let node = self.node.clone();
            let rows = self
                .store
                .call(move |conn, _| peek(conn, &node, after, limit))
                .await?;
            rows.into_iter()
                .map(|(seq, text)| {
                    let message = serde_json::from_str(&text).map_err(|error| {
                        OutboxError::Storage(format!(
                            "stored message {seq} for node {} is not valid: {error}",
                            self.node
                        ))
                    })?;
                    Ok(OutboxEntry { seq, message })
                })
                .collect()
        })
    }

    fn ack_through(&self, through: Seq) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async move {
            let node = self.node.clone();
            self.store
                .call(move |conn, _| ack(conn, &node, through))
                .await?;
            lock_recent(&self.recent).ack_through(through);
            Ok(())
        })
    }
}

/// The store's thread: owns the connection, serves batches of requests.
struct Worker {
    /// Declared before `conn`: stopped first (see [`BackgroundCheckpoint`]).
    _checkpoint: Option<BackgroundCheckpoint>,
    conn: Connection,
    options: HubOutboxOptions,
    path: PathBuf,
}

impl Worker {
    fn run(mut self, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = jobs.blocking_recv() {
            edgetwin_hoptrace::mark("hub.store.woken");
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let commit = self.serve(&mut batch);
            edgetwin_hoptrace::mark("hub.store.served");
            for job in batch.drain(..) {
                job.finish(commit.clone());
            }
        }
    }

    /// Runs the batch in one transaction; the error text if it did not commit.
    fn serve(&mut self, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
        let path = self.path.display().to_string();
        let fail = |what: &str, error: rusqlite::Error| {
            tracing::error!(%error, path, "hub store cannot {what}");
            format!("hub store {path}: cannot {what}: {error}")
        };
        let tx = self
            .conn
            .transaction()
            .map_err(|e| fail("begin a transaction", e))?;
        for job in batch.iter_mut() {
            if let Err(error) = job.run(&tx, &self.options) {
                // Dropping the transaction rolls the whole batch back.
                tracing::error!(%error, path, "hub store request failed; batch rolled back");
                return Err(format!("hub store {path}: {error} (batch rolled back)"));
            }
        }
        tx.commit().map_err(|e| fail("commit", e))
    }
}

fn storage(error: rusqlite::Error) -> OutboxError {
    OutboxError::Storage(error.to_string())
}

/// `node`'s stream id, creating the stream with a random id on first use.
fn stream(conn: &Connection, node: &NodeName) -> Result<StreamId, OutboxError> {
    let existing: Option<i64> = conn
        .prepare_cached("SELECT stream_id FROM tunnel_streams WHERE node = ?1")
        .and_then(|mut stmt| stmt.query_row([node.as_str()], |row| row.get(0)).optional())
        .map_err(storage)?;
    if let Some(id) = existing {
        return Ok(StreamId(id as u64));
    }
    // Positive 63-bit ids fit sqlite's signed integers unchanged.
    let id = (rand::random::<u64>() >> 1) as i64;
    conn.prepare_cached(
        "INSERT INTO tunnel_streams (node, stream_id, last_seq, depth) VALUES (?1, ?2, 0, 0)",
    )
    .and_then(|mut stmt| stmt.execute(params![node.as_str(), id]))
    .map_err(storage)?;
    Ok(StreamId(id as u64))
}

fn append(
    conn: &Connection,
    node: &NodeName,
    message: &str,
    max: usize,
) -> Result<Seq, OutboxError> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let bump = || -> Result<Option<i64>, OutboxError> {
        conn.prepare_cached(
            "UPDATE tunnel_streams SET last_seq = last_seq + 1, depth = depth + 1
             WHERE node = ?1 AND depth < ?2 RETURNING last_seq",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![node.as_str(), max], |row| row.get(0))
                .optional()
        })
        .map_err(storage)
    };
    // One statement in the common case; the stream row is created on a node's first message.
    let seq = match bump()? {
        Some(seq) => seq,
        None if stream_exists(conn, node)? => {
            return Err(OutboxError::Full {
                limit: max as usize,
            });
        }
        None => {
            stream(conn, node)?;
            bump()?.ok_or_else(|| OutboxError::Storage("stream row vanished".into()))?
        }
    };
    conn.prepare_cached("INSERT INTO tunnel_outbox (node, seq, message) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| stmt.execute(params![node.as_str(), seq, message]))
        .map_err(storage)?;
    Ok(seq as Seq)
}

fn stream_exists(conn: &Connection, node: &NodeName) -> Result<bool, OutboxError> {
    conn.prepare_cached("SELECT 1 FROM tunnel_streams WHERE node = ?1")
        .and_then(|mut stmt| stmt.exists([node.as_str()]))
        .map_err(storage)
}

fn peek(
    conn: &Connection,
    node: &NodeName,
    after: Seq,
    limit: usize,
) -> Result<Vec<(Seq, String)>, OutboxError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, message FROM tunnel_outbox WHERE node = ?1 AND seq > ?2
             ORDER BY seq LIMIT ?3",
        )
        .map_err(storage)?;
    let rows = stmt
        .query_map(params![node.as_str(), after, limit], |row| {
            Ok((row.get::<_, i64>(0)? as Seq, row.get::<_, String>(1)?))
        })
        .map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

fn ack(conn: &Connection, node: &NodeName, through: Seq) -> Result<(), OutboxError> {
    let through = i64::try_from(through).unwrap_or(i64::MAX);
    let removed = conn
        .prepare_cached("DELETE FROM tunnel_outbox WHERE node = ?1 AND seq <= ?2")
        .and_then(|mut stmt| stmt.execute(params![node.as_str(), through]))
        .map_err(storage)?;
    if removed > 0 {
        conn.prepare_cached("UPDATE tunnel_streams SET depth = depth - ?2 WHERE node = ?1")
            .and_then(|mut stmt| stmt.execute(params![node.as_str(), removed as i64]))
            .map_err(storage)?;
    }
    Ok(())
}

fn depths(conn: &Connection) -> Result<Vec<(String, usize)>, OutboxError> {
    let mut stmt = conn
        .prepare_cached("SELECT node, depth FROM tunnel_streams ORDER BY node")
        .map_err(storage)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as usize))
        })
        .map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

fn depth(conn: &Connection, node: &NodeName) -> Result<usize, OutboxError> {
    let depth: Option<i64> = conn
        .prepare_cached("SELECT depth FROM tunnel_streams WHERE node = ?1")
        .and_then(|mut stmt| stmt.query_row([node.as_str()], |row| row.get(0)).optional())
        .map_err(storage)?;
    Ok(depth.unwrap_or(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(id: &str) -> Arc<Envelope> {
        Arc::new(message(id))
    }

    fn seqs(rows: Option<Vec<(Seq, Arc<Envelope>)>>) -> Option<Vec<Seq>> {
        rows.map(|rows| rows.into_iter().map(|(seq, _)| seq).collect())
    }

    #[test]
    fn memory_answers_only_when_it_holds_everything_after_the_point() {
        let mut recent = Recent::default();
        assert_eq!(seqs(recent.after(0, 10)), None, "empty: ask the table");
        for seq in 5..=7 {
            recent.push(seq, text("m"));
        }
        assert_eq!(
            seqs(recent.after(3, 10)),
            None,
            "seq 4 is only in the table"
        );
        assert_eq!(seqs(recent.after(4, 10)), Some(vec![5, 6, 7]));
        assert_eq!(seqs(recent.after(5, 1)), Some(vec![6]));
        assert_eq!(
            seqs(recent.after(7, 10)),
            Some(vec![]),
            "nothing newer is committed"
        );
        recent.ack_through(6);
        assert_eq!(
            seqs(recent.after(5, 10)),
            None,
            "acknowledged entries leave memory"
        );
        assert_eq!(seqs(recent.after(6, 10)), Some(vec![7]));
        recent.push(9, text("gap"));
        assert_eq!(seqs(recent.after(6, 10)), None, "a gap starts over");
        assert_eq!(seqs(recent.after(8, 10)), Some(vec![9]));
    }

    #[test]
    fn memory_keeps_a_bounded_tail() {
        let mut recent = Recent::default();
        let last = RECENT_CAPACITY as Seq + 10;
        for seq in 1..=last {
            recent.push(seq, text("m"));
        }
        assert_eq!(recent.entries.len(), RECENT_CAPACITY);
        assert_eq!(seqs(recent.after(0, 1)), None);
        assert_eq!(seqs(recent.after(last - 1, 10)), Some(vec![last]));
    }

    #[tokio::test]
    async fn an_open_outbox_reads_appends_from_memory_and_older_ones_from_the_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hub.db");
        let store = HubOutbox::open(&path, HubOutboxOptions::default()).expect("open");
        let n = node("edge-1");
        // Appended before any outbox of the node is open: in the table only.
        store.append(&n, &message("before")).await.expect("append");
        let outbox = store.outbox(&n).await.expect("outbox");
        for id in ["a", "b"] {
            outbox.append(message(id)).await.expect("append");
        }
        assert_eq!(
            seqs(lock_recent(&outbox.recent).after(1, 10)),
            Some(vec![2, 3])
        );
        let ids = |entries: Vec<OutboxEntry>| -> Vec<String> {
            entries
                .into_iter()
                .map(|e| e.message.header.msg_id)
                .collect()
        };
        let all = outbox.peek_after(0, 10).await.expect("peek");
        assert_eq!(ids(all), ["before", "a", "b"]);
        let newest = outbox.peek_after(1, 10).await.expect("peek");
        assert_eq!(ids(newest), ["a", "b"]);
        outbox.ack_through(2).await.expect("ack");
        assert_eq!(
            seqs(lock_recent(&outbox.recent).after(2, 10)),
            Some(vec![3])
        );
        // A second outbox of the same node (a newer link) shares the memory.
        let second = store.outbox(&n).await.expect("outbox");
        assert!(Arc::ptr_eq(&outbox.recent, &second.recent));
        drop((outbox, second));
        // With no outbox open, appends are not kept in memory.
        store.append(&n, &message("c")).await.expect("append");
        let reopened = store.outbox(&n).await.expect("outbox");
        assert_eq!(seqs(lock_recent(&reopened.recent).after(3, 10)), None);
        let rest = reopened.peek_after(2, 10).await.expect("peek");
        assert_eq!(ids(rest), ["b", "c"]);
    }

    fn node(name: &str) -> NodeName {
        NodeName::new(name).expect("node")
    }

    fn message(id: &str) -> Envelope {
        let mut envelope = Envelope::default();
        envelope.header.msg_id = id.to_owned();
        envelope
    }

    #[tokio::test]
    async fn queues_are_per_node_ordered_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cloud.db");
        let store = HubOutbox::open(&path, HubOutboxOptions::default()).expect("open");
        let a = store.outbox(&node("a")).await.expect("a");
        let b = store.outbox(&node("b")).await.expect("b");
        assert_ne!(a.stream(), b.stream());
        for id in ["a1", "a2", "a3"] {
            a.append(message(id)).await.expect("append");
        }
        assert_eq!(b.append(message("b1")).await.expect("append"), 1);
        a.ack_through(1).await.expect("ack");
        let stream_a = a.stream();
        drop((a, b, store));

        let store = HubOutbox::open(&path, HubOutboxOptions::default()).expect("reopen");
        let a = store.outbox(&node("a")).await.expect("a");
        assert_eq!(a.stream(), stream_a, "the stream id is persistent");
        let ids: Vec<String> = a
            .peek_after(0, 10)
            .await
            .expect("peek")
            .into_iter()
            .map(|e| e.message.header.msg_id)
            .collect();
        assert_eq!(ids, ["a2", "a3"]);
        assert_eq!(store.depth(&node("a")).await.expect("depth"), 2);
        assert_eq!(
            store.depths().await.expect("depths"),
            [("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
        a.ack_through(3).await.expect("ack");
        assert_eq!(
            a.append(message("a4")).await.expect("append"),
            4,
            "numbers never go back, even on an empty queue"
        );
        let b = store.outbox(&node("b")).await.expect("b");
        assert_eq!(b.peek_after(0, 10).await.expect("peek").len(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_appends_until_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = HubOutbox::open(
            &dir.path().join("cloud.db"),
            HubOutboxOptions { max_queue_len: 2 },
        )
        .expect("open");
        let n = node("n");
        store.append(&n, &message("1")).await.expect("1");
        store.append(&n, &message("2")).await.expect("2");
        let error = store.append(&n, &message("3")).await.expect_err("full");
        assert!(matches!(error, OutboxError::Full { limit: 2 }), "{error}");
        store
            .outbox(&n)
            .await
            .expect("outbox")
            .ack_through(1)
            .await
            .expect("ack");
        assert_eq!(store.append(&n, &message("3")).await.expect("room"), 3);
    }

    #[tokio::test]
    async fn concurrent_appends_share_transactions_and_keep_per_node_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = HubOutbox::open(&dir.path().join("cloud.db"), HubOutboxOptions::default())
            .expect("open");
        let nodes: Vec<NodeName> = (0..50).map(|i| node(&format!("n{i}"))).collect();
        let mut tasks = Vec::new();
        for n in &nodes {
            for i in 0..4 {
                let (store, n) = (store.clone(), n.clone());
                tasks.push(tokio::spawn(async move {
                    store.append(&n, &message(&format!("{n}-{i}"))).await
                }));
            }
        }
        for task in tasks {
            task.await.expect("join").expect("append");
        }
        for n in &nodes {
            let entries = store
                .outbox(n)
                .await
                .expect("outbox")
                .peek_after(0, 100)
                .await
                .expect("peek");
            let seqs: Vec<Seq> = entries.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, [1, 2, 3, 4], "node {n}");
        }
    }
}
