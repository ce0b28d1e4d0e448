//! A peer process a test talks to line by line (pymodbus, asyncua, our simulators): it prints a
//! line `READY …` when it serves, then answers each command line on its stdin with one JSON line
//! on its stdout. It is killed (SIGKILL, by pid) when dropped.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a peer gets to print `READY`.
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long a peer gets to answer a command.
pub const ANSWER: Duration = Duration::from_secs(10);

/// A running peer with its control channel.
pub struct PeerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    ready: String,
}

impl std::fmt::Debug for PeerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerProcess")
            .field("pid", &self.child.id())
            .field("ready", &self.ready)
            .finish()
    }
}

impl PeerProcess {
    /// Starts `command` (stdin and stdout piped, stderr inherited) and waits for its `READY` line.
    ///
    /// # Panics
    /// When the peer cannot start, exits, or prints no `READY` within [`STARTUP`].
    pub async fn start(mut command: Command) -> PeerProcess {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("peer {command:?} does not start: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = tokio::time::timeout(STARTUP, async {
            loop {
                match stdout.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(rest) = line.strip_prefix("READY") {
                            return rest.trim_start().to_owned();
                        }
                    }
                    other => panic!("peer exited before READY: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("peer printed no READY within {STARTUP:?}"));
        PeerProcess {
            child,
            stdin,
            stdout,
            ready,
        }
    }

    /// What followed `READY` (e.g. `tcp 127.0.0.1:PORT`, an endpoint URL).
    pub fn ready(&self) -> &str {
        &self.ready
    }

    /// The peer's process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends one command line and returns the JSON answer.
    ///
    /// # Panics
    /// When the peer does not answer within [`ANSWER`], answers something that is not JSON, or
    /// answers `{"error": …}`.
    pub async fn command(&mut self, line: &str) -> Json {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("peer stdin");
        self.stdin.flush().await.expect("peer stdin");
        let answer = tokio::time::timeout(ANSWER, self.stdout.next_line())
            .await
            .expect("peer answers in time")
            .expect("peer stdout")
            .expect("peer still running");
        let json: Json = serde_json::from_str(&answer).expect("JSON answer");
        assert!(json.get("error").is_none(), "{line}: {json}");
        json
    }

    /// Kills the peer (SIGKILL) and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
