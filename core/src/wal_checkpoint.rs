//! WAL checkpoints on a thread of their own, off the writer's commit path.
//!
//! sqlite checkpoints a WAL database from inside a commit by default: the commit that takes the
//! log past 1000 pages also copies the pages into the database file and syncs both files. That
//! commit then waits for two or three `fsync`s, and every such commit sits on a latency path (a
//! registry write, a hub outbox append, an edge twin commit; BENCHMARKS.md, "Traffic light ›
//! Design choices"). [`BackgroundCheckpoint`] replaces that: the writer's commit only asks for a
//! checkpoint, and a thread with its own connection to the file runs it (`PASSIVE`: it never
//! waits for, nor blocks, the writer).
//!
//! Durability is unchanged: a commit is durable in the log as before (sqlite's `synchronous`
//! level decides when the log is synced), and the checkpoint uses the writer's `synchronous`
//! level, so it syncs the log before and the database file after copying, as sqlite's own would.
//! Should the thread fall behind or be gone, the writer checkpoints itself once the log reaches
//! [`Thresholds::backstop`] pages.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

/// When checkpoints run, in pages of the write-ahead log after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    /// A commit that leaves at least this many pages in the log asks the thread for a
    /// checkpoint (sqlite's own default for its automatic checkpoint).
    pub request: i32,
    /// A commit that leaves at least this many pages checkpoints by itself: the thread is behind.
    pub backstop: i32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            request: 1000,
            backstop: 10_000,
        }
    }
}

/// The checkpoint thread of one database file; stopped and joined when dropped. Keep it next to
/// the writer connection it was installed on.
pub(crate) struct BackgroundCheckpoint {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BackgroundCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundCheckpoint")
            .finish_non_exhaustive()
    }
}

/// What the writer tells the thread.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    requested: bool,
    stopped: bool,
}

impl Signal {
    fn lock(&self) -> std::sync::MutexGuard<'_, SignalState> {
        // Two flags: any state left behind by a panic is still meaningful.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request(&self) {
        let mut state = self.lock();
        if !state.requested {
            state.requested = true;
            self.changed.notify_one();
        }
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_one();
    }

    /// Waits for a request; `false` once stopped.
    fn next_request(&self) -> bool {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return false;
            }
            if state.requested {
                state.requested = false;
                return true;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl BackgroundCheckpoint {
    /// Moves the checkpoints of `writer` (a connection in WAL mode to the file at `path`) to a
    /// thread, with the default [`Thresholds`]. When the thread or its connection cannot be
    /// started, the reason is logged and sqlite's own automatic checkpoint stays in place.
    pub(crate) fn install(writer: &mut Connection, path: &Path) -> Option<BackgroundCheckpoint> {
        Self::install_with(writer, path, Thresholds::default())
    }

    /// [`install`](Self::install) with explicit thresholds.
    pub(crate) fn install_with(
        writer: &mut Connection,
        path: &Path,
        thresholds: Thresholds,
    ) -> Option<BackgroundCheckpoint> {
        match Self::start(writer, path, thresholds) {
            Ok(started) => Some(started),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot start the background WAL checkpoint; sqlite checkpoints inside commits");
                None
            }
        }
    }

    fn start(
        writer: &mut Connection,
        path: &Path,
        thresholds: Thresholds,
    ) -> Result<BackgroundCheckpoint, Box<dyn std::error::Error>> {
        let synchronous: i64 = writer.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "synchronous", synchronous)?;
        let signal = Arc::new(Signal::default());
        let thread = {
            let signal = Arc::clone(&signal);
            let path = path.to_owned();
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                // sqlite's checkpoint needs little stack; the default 2 MiB is address space only,
                // but there is no reason to reserve it.
                .stack_size(256 * 1024)
                .spawn(move || run(reader, &path, &signal))?
        };
        // Replaces sqlite's automatic checkpoint, which is itself a WAL hook.
        let hook_signal = Arc::clone(&signal);
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            if pages >= thresholds.backstop {
                wal.checkpoint_v2(CheckpointMode::PASSIVE)?;
            } else if pages >= thresholds.request {
                hook_signal.request();
            }
            Ok(())
        }))?;
        Ok(BackgroundCheckpoint {
            signal,
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundCheckpoint {
    fn drop(&mut self) {
        self.signal.stop();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the WAL checkpoint thread panicked");
        }
    }
}

/// The thread: one `PASSIVE` checkpoint per request until stopped.
fn run(conn: Connection, path: &Path, signal: &Signal) {
    while signal.next_request() {
        let started = Instant::now();
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((log, checkpointed)) => tracing::debug!(
                path = %path.display(),
                log,
                checkpointed,
                micros = started.elapsed().as_micros() as u64,
                "WAL checkpoint"
            ),
            // The writer's next request retries; the backstop covers a lasting failure.
            Err(error) => tracing::warn!(path = %path.display(), %error, "WAL checkpoint failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A file in a temporary directory with a table, in WAL mode, with `thresholds` installed
    /// (the default ones for `None`).
    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        writer: Connection,
        checkpoint: Option<BackgroundCheckpoint>,
    }

    fn fixture(thresholds: Option<Thresholds>) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let mut writer = Connection::open(&path).expect("open");
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .expect("normal");
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .expect("schema");
        let checkpoint =
            BackgroundCheckpoint::install_with(&mut writer, &path, thresholds.unwrap_or_default());
        assert!(checkpoint.is_some(), "the checkpoint thread starts");
        Fixture {
            _dir: dir,
            path,
            writer,
            checkpoint,
        }
    }

    /// One commit of one page-sized row.
    fn write_page(conn: &Connection, id: i64) {
        conn.execute("INSERT INTO t (id, body) VALUES (?1, zeroblob(4000))", [id])
            .expect("insert");
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// Polls `done` for up to 10 s.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        done()
    }

    #[test]
    fn the_thread_copies_the_log_into_the_database_and_the_writer_does_not() {
        let mut f = fixture(Some(Thresholds {
            request: 20,
            backstop: 1_000_000,
        }));
        let before = file_len(&f.path);
        for id in 0..40 {
            write_page(&f.writer, id);
        }
        // The rows reach the database file only through a checkpoint; the writer's hook never
        // runs one below the backstop, so this is the thread's.
        assert!(
            eventually(|| file_len(&f.path) >= before + 30 * 4000),
            "database file still {} bytes",
            file_len(&f.path)
        );
        f.checkpoint = None;
        let rows: i64 = f
            .writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 40);
    }

    #[test]
    fn without_requests_nothing_is_checkpointed_before_the_backstop_which_the_writer_runs() {
        let f = fixture(Some(Thresholds {
            request: 1_000_000,
            backstop: 200,
        }));
        let before = file_len(&f.path);
        for id in 0..20 {
            write_page(&f.writer, id);
        }
        // sqlite's own automatic checkpoint is replaced: the log grows (40–60 pages), the file
        // does not.
        assert_eq!(file_len(&f.path), before);
        // A commit of a row adds two or three log pages: 200 rows pass the backstop.
        for id in 20..200 {
            write_page(&f.writer, id);
        }
        // Past the backstop the commit itself checkpointed (synchronously: no waiting needed).
        assert!(
            file_len(&f.path) >= before + 60 * 4000,
            "{}",
            file_len(&f.path)
        );
    }

    #[test]
    fn dropping_stops_the_thread_and_the_file_stays_usable() {
        let mut f = fixture(None);
        write_page(&f.writer, 1);
        f.checkpoint = None;
        write_page(&f.writer, 2);
        let Fixture {
            _dir, path, writer, ..
        } = f;
        drop(writer);
        let reopened = Connection::open(&path).expect("reopen");
        let rows: i64 = reopened
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 2);
    }
}
