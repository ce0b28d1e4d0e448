//! The bounded, ordered queue in front of every sink, and the worker that drains it.
//!
//! Samples leave in the order they were read. A failed delivery is retried with backoff and
//! blocks the samples behind it (order is kept). When the queue is full the **oldest** waiting
//! sample is dropped: for telemetry the newest value matters most. Every drop is counted in
//! `edgetwin_mapper_sink_dropped_total{sink}`, and a warning is logged on the first drop and
//! then every [`WARN_EVERY`] drops.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use super::Sample;
use crate::breaker::Backoff;

/// A warning is logged on the first drop and then once per this many drops.
pub const WARN_EVERY: u64 = 1000;

/// Delivers one sample to a destination.
pub trait Deliver: Send + 'static {
    /// Sends the sample; `Err` describes why it did not arrive (it will be retried).
    fn deliver(&mut self, sample: &Sample) -> impl Future<Output = Result<(), String>> + Send;
}

/// The shared end of a sink's queue: device tasks push, the worker pops.
#[derive(Debug)]
pub struct SinkQueue {
    name: String,
    capacity: usize,
    items: Mutex<VecDeque<Sample>>,
    ready: Notify,
    dropped: Counter,
}

impl SinkQueue {
    /// An empty queue holding at most `capacity` samples (at least 1).
    pub fn new(name: String, capacity: usize, dropped: Counter) -> Arc<Self> {
        Arc::new(Self {
            name,
            capacity: capacity.max(1),
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            dropped,
        })
    }

    /// The sink's name (used in metrics and logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends a sample, dropping the oldest waiting one when full. Never blocks on I/O.
    pub fn push(&self, sample: Sample) {
        let dropped_one = {
            let mut items = self.lock();
            let full = items.len() >= self.capacity;
            if full {
                items.pop_front();
            }
            items.push_back(sample);
            full
        };
        if dropped_one {
            self.dropped.inc();
            let total = self.dropped.get();
            if total == 1 || total.is_multiple_of(WARN_EVERY) {
                tracing::warn!(
                    sink = %self.name,
                    dropped_total = total,
                    capacity = self.capacity,
                    "sink queue full: dropping the oldest samples"
                );
            }
        }
        self.ready.notify_one();
    }

    /// Samples waiting (not counting one being delivered).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no sample is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn pop(&self) -> Sample {
        loop {
            if let Some(sample) = self.lock().pop_front() {
                return sample;
            }
            self.ready.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // A VecDeque of owned samples is valid whatever a panicking holder was doing.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counters a worker updates.
#[derive(Debug, Clone, Default)]
pub struct WorkerCounters {
    /// Samples delivered.
    pub sent: Counter,
    /// Failed attempts.
    pub errors: Counter,
}

/// Drains `queue` into `destination` forever (the task is aborted at shutdown).
pub async fn run_worker<D: Deliver>(
    queue: Arc<SinkQueue>,
    mut destination: D,
    counters: WorkerCounters,
    mut backoff: Backoff,
) {
    loop {
        let sample = queue.pop().await;
        loop {
            match destination.deliver(&sample).await {
                Ok(()) => {
                    counters.sent.inc();
                    backoff.reset();
                    break;
                }
                Err(reason) => {
                    counters.errors.inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        sink = %queue.name(),
                        %reason,
                        retry_in = ?delay,
                        waiting = queue.len(),
                        "sink delivery failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// The default retry pacing of sinks: 100 ms doubling up to 10 s.
pub fn sink_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use edgetwin_model::value::{PropertyType, Value};
    use tokio::sync::mpsc;

    use super::*;
    use crate::driver::DeviceId;

    fn sample(n: i64) -> Sample {
        Sample {
            device: DeviceId::new("default", "meter"),
            property: "count".into(),
            ty: PropertyType::Int,
            value: Value::Int(n),
            timestamp_ms: n,
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let dropped = Counter::default();
        let queue = SinkQueue::new("test".into(), 3, dropped.clone());
        for n in 0..5 {
            queue.push(sample(n));
        }
        assert_eq!(dropped.get(), 2);
        let left: Vec<_> = queue.lock().iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(left, vec![2, 3, 4]);
    }

    /// Fails the first `failures` attempts, then forwards samples to a channel.
    struct Flaky {
        failures: usize,
        out: mpsc::UnboundedSender<i64>,
    }

    impl Deliver for Flaky {
        async fn deliver(&mut self, sample: &Sample) -> Result<(), String> {
            if self.failures > 0 {
                self.failures -= 1;
                return Err("down".into());
            }
            self.out
                .send(sample.timestamp_ms)
                .map_err(|e| e.to_string())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_retries_in_order_until_delivered() {
        let queue = SinkQueue::new("flaky".into(), 100, Counter::default());
        let (out, mut delivered) = mpsc::unbounded_channel();
        let counters = WorkerCounters::default();
        let worker = tokio::spawn(run_worker(
            Arc::clone(&queue),
            Flaky { failures: 3, out },
            counters.clone(),
            sink_backoff(),
        ));
        for n in 0..10 {
            queue.push(sample(n));
        }
        let mut got = Vec::new();
        while got.len() < 10 {
            got.push(delivered.recv().await.expect("delivered"));
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(counters.errors.get(), 3);
        assert_eq!(counters.sent.get(), 10);
        worker.abort();
    }
}
