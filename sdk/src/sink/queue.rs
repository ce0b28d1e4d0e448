//! The bounded, ordered queue in front of every sink, and the worker that drains it in batches.
//!
//! Samples leave in the order they were read. The worker takes what is waiting, up to the
//! destination's batch size, and delivers it in one go (one SQL transaction, one HTTP request, one
//! Redis pipeline); nothing waits for a batch to fill, so a quiet sink sends single samples at
//! once and a busy one sends larger batches. A delivery that fails for a transient reason (the
//! server is down, a timeout) is retried with backoff and blocks the samples behind it, so order
//! is kept. A delivery the destination refuses for good (a value it cannot store) is not retried:
//! the batch is delivered again one sample at a time so that only the refused samples are dropped,
//! each counted in `edgetwin_mapper_sink_rejected_total{sink}`.
//!
//! Memory is bounded twice: by the number of waiting samples and by their approximate size. When
//! either bound is reached the **oldest** waiting sample is dropped (for telemetry the newest value
//! matters most), counted in `edgetwin_mapper_sink_dropped_total{sink}`, with a warning on the
//! first drop and then every [`WARN_EVERY`] drops.
//!
//! Health: a sink is *down* from a failed delivery until the next successful one; the queue keeps
//! the first reason of the failing streak, which device tasks show as the device's state
//! (`unhealthy`, "sink …: reason") and `edgetwin_mapper_sink_up{sink}` shows as 0.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use super::Sample;
use crate::breaker::Backoff;

/// A warning is logged on the first drop and then once per this many drops.
pub const WARN_EVERY: u64 = 1000;

/// Why a delivery did not (fully) arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// How many samples at the front of the batch did arrive (they are not sent again).
    pub delivered: usize,
    /// What went wrong, for logs and the device state. Never contains credentials.
    pub reason: String,
    /// The destination refused the data itself: sending it again cannot succeed.
    pub permanent: bool,
}

impl DeliveryError {
    /// A failure worth retrying (server down, timeout, overload), nothing delivered.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            delivered: 0,
            reason: reason.into(),
            permanent: false,
        }
    }

    /// The destination refused the data; retrying cannot help. Nothing delivered.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            delivered: 0,
            reason: reason.into(),
            permanent: true,
        }
    }

    /// The same failure after `delivered` samples of the batch arrived.
    pub fn after(mut self, delivered: usize) -> Self {
        self.delivered = delivered;
        self
    }
}

/// Delivers batches of samples to a destination.
pub trait Deliver: Send + 'static {
    /// Most samples one delivery takes.
    const MAX_BATCH: usize;

    /// Sends `batch` (1 to [`Deliver::MAX_BATCH`] samples, in order).
    fn deliver(
        &mut self,
        batch: &[Sample],
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// The limits of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most samples waiting.
    pub samples: usize,
    /// Most bytes waiting (by [`Sample::approx_bytes`]).
    pub bytes: usize,
}

/// The series a queue and its worker update.
#[derive(Debug, Clone, Default)]
pub struct QueueMetrics {
    /// Samples delivered.
    pub sent: Counter,
    /// Failed delivery attempts (each is retried).
    pub errors: Counter,
    /// Samples dropped because the queue was full.
    pub dropped: Counter,
    /// Samples the destination refused for good.
    pub rejected: Counter,
    /// Samples waiting.
    pub queued: Gauge,
    /// 1 while deliveries succeed, 0 from a failure until the next success.
    pub up: Gauge,
}

#[derive(Debug, Default)]
struct Waiting {
    samples: VecDeque<Sample>,
    bytes: usize,
    /// Samples taken by the worker and not yet delivered (or given up).
    in_flight: usize,
    /// The first reason of the current failing streak; `None` while the sink is up.
    failure: Option<String>,
}

/// The shared end of a sink's queue: device tasks push, the worker pops.
#[derive(Debug)]
pub struct SinkQueue {
    name: String,
    limits: QueueLimits,
    waiting: Mutex<Waiting>,
    ready: Notify,
    metrics: QueueMetrics,
}

impl SinkQueue {
    /// An empty queue within `limits` (at least one sample is always kept).
    pub fn new(name: String, limits: QueueLimits, metrics: QueueMetrics) -> Arc<Self> {
        metrics.up.set(1);
        Arc::new(Self {
            name,
            limits,
            waiting: Mutex::new(Waiting::default()),
            ready: Notify::new(),
            metrics,
        })
    }

    /// The sink's name (used in metrics and logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends a sample, dropping the oldest waiting ones while a limit is exceeded. Never
    /// blocks on I/O.
    pub fn push(&self, sample: Sample) {
        let mut dropped = 0;
        {
            let mut waiting = self.lock();
            waiting.bytes += sample.approx_bytes();
            waiting.samples.push_back(sample);
            while waiting.samples.len() > 1
                && (waiting.samples.len() > self.limits.samples.max(1)
                    || waiting.bytes > self.limits.bytes)
            {
                if let Some(old) = waiting.samples.pop_front() {
                    waiting.bytes -= old.approx_bytes();
                    dropped += 1;
                }
            }
            self.metrics.queued.set(waiting.samples.len() as i64);
        }
        if dropped > 0 {
            let before = self.metrics.dropped.get();
            self.metrics.dropped.inc_by(dropped);
            let total = before + dropped;
            if before == 0 || total / WARN_EVERY > before / WARN_EVERY {
                tracing::warn!(
                    sink = %self.name,
                    dropped_total = total,
                    capacity = self.limits.samples,
                    capacity_bytes = self.limits.bytes,
                    "sink queue full: dropping the oldest samples"
                );
            }
        }
        self.ready.notify_one();
    }

    /// Samples waiting (not counting a batch being delivered).
    pub fn len(&self) -> usize {
        self.lock().samples.len()
    }

    /// Whether no sample is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether nothing is waiting and nothing is being delivered.
    pub fn is_idle(&self) -> bool {
        let waiting = self.lock();
        waiting.samples.is_empty() && waiting.in_flight == 0
    }

    /// Why the sink is down (the first reason of the failing streak), or `None` while it is up.
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// Waits for at least one sample, then takes up to `max` of them.
    async fn pop_batch(&self, max: usize) -> Vec<Sample> {
        loop {
            {
                let mut waiting = self.lock();
                if !waiting.samples.is_empty() {
                    let take = waiting.samples.len().min(max.max(1));
                    let batch: Vec<Sample> = waiting.samples.drain(..take).collect();
                    waiting.bytes -= batch.iter().map(Sample::approx_bytes).sum::<usize>();
                    waiting.in_flight = batch.len();
                    self.metrics.queued.set(waiting.samples.len() as i64);
                    return batch;
                }
            }
            self.ready.notified().await;
        }
    }

    fn set_in_flight(&self, samples: usize) {
        self.lock().in_flight = samples;
    }

    fn set_up(&self) {
        let recovered = self.lock().failure.take();
        if let Some(reason) = recovered {
            self.metrics.up.set(1);
            tracing::info!(sink = %self.name, previous_failure = %reason, "sink delivers again");
        }
    }

    fn set_down(&self, reason: &str) {
        let mut waiting = self.lock();
        if waiting.failure.is_none() {
            waiting.failure = Some(reason.to_owned());
            self.metrics.up.set(0);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Owned samples and counters are valid whatever a panicking holder was doing.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drains `queue` into `destination` forever (the task is aborted at shutdown).
pub async fn run_worker<D: Deliver>(
    queue: Arc<SinkQueue>,
    mut destination: D,
    mut backoff: Backoff,
) {
    let metrics = queue.metrics.clone();
    loop {
        let mut batch = queue.pop_batch(D::MAX_BATCH).await;
        // After a permanent refusal of several samples, the rest of the batch goes one by one
        // so that only the refused samples are dropped.
        let mut one_by_one = false;
        while !batch.is_empty() {
            let size = if one_by_one { 1 } else { batch.len() };
            let result = destination.deliver(&batch[..size]).await;
            let (delivered, failure) = match result {
                Ok(()) => (size, None),
                Err(err) => (err.delivered.min(size), Some(err)),
            };
            metrics.sent.inc_by(delivered as u64);
            batch.drain(..delivered);
            queue.set_in_flight(batch.len());
            let Some(err) = failure else {
                queue.set_up();
                backoff.reset();
                continue;
            };
            if err.permanent {
                if size - delivered > 1 {
                    one_by_one = true;
                    continue;
                }
                metrics.rejected.inc();
                if let Some(refused) = batch.first() {
                    tracing::warn!(
                        sink = %queue.name(),
                        device = %refused.device,
                        property = %refused.property,
                        reason = %err.reason,
                        "sink refused a sample; it is dropped"
                    );
                }
                batch.remove(0);
                queue.set_in_flight(batch.len());
                queue.set_up();
                continue;
            }
            metrics.errors.inc();
            queue.set_down(&err.reason);
            let delay = backoff.next_delay();
            tracing::warn!(
                sink = %queue.name(),
                reason = %err.reason,
                retry_in = ?delay,
                in_flight = batch.len(),
                waiting = queue.len(),
                "sink delivery failed; retrying"
            );
            tokio::time::sleep(delay).await;
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

    fn queue(samples: usize, bytes: usize) -> (Arc<SinkQueue>, QueueMetrics) {
        let metrics = QueueMetrics::default();
        let queue = SinkQueue::new(
            "test".into(),
            QueueLimits { samples, bytes },
            metrics.clone(),
        );
        (queue, metrics)
    }

    fn waiting(queue: &SinkQueue) -> Vec<i64> {
        queue
            .lock()
            .samples
            .iter()
            .map(|s| s.timestamp_ms)
            .collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let (queue, metrics) = queue(3, usize::MAX);
        for n in 0..5 {
            queue.push(sample(n));
        }
        assert_eq!(metrics.dropped.get(), 2);
        assert_eq!(metrics.queued.get(), 3);
        assert_eq!(waiting(&queue), vec![2, 3, 4]);
    }

    #[test]
    fn the_byte_limit_bounds_large_samples_too() {
        let size = sample(0).approx_bytes();
        let (queue, metrics) = queue(1000, size * 3);
        for n in 0..10 {
            queue.push(sample(n));
        }
        assert_eq!(waiting(&queue), vec![7, 8, 9]);
        assert_eq!(metrics.dropped.get(), 7);
        assert_eq!(queue.lock().bytes, size * 3);
        // A single sample larger than the limit is still kept (it is the newest).
        let (tiny, _) = super::tests::queue(10, 1);
        tiny.push(sample(1));
        assert_eq!(waiting(&tiny), vec![1]);
    }

    /// Fails the first `failures` attempts, refuses the samples in `refused` for good, and
    /// forwards the others to a channel; records the size of every attempted batch.
    struct Flaky {
        failures: usize,
        refused: Vec<i64>,
        out: mpsc::UnboundedSender<i64>,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Deliver for Flaky {
        const MAX_BATCH: usize = 4;

        async fn deliver(&mut self, batch: &[Sample]) -> Result<(), DeliveryError> {
            self.batches.lock().expect("batches").push(batch.len());
            if self.failures > 0 {
                self.failures -= 1;
                return Err(DeliveryError::transient("down"));
            }
            if batch.iter().any(|s| self.refused.contains(&s.timestamp_ms)) {
                return Err(DeliveryError::permanent("bad value"));
            }
            for s in batch {
                self.out
                    .send(s.timestamp_ms)
                    .map_err(|e| DeliveryError::transient(e.to_string()))?;
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_worker_retries_batches_in_order_until_delivered() {
        let (queue, metrics) = queue(100, usize::MAX);
        for n in 0..10 {
            queue.push(sample(n));
        }
        let (out, mut delivered) = mpsc::unbounded_channel();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let worker = tokio::spawn(run_worker(
            Arc::clone(&queue),
            Flaky {
                failures: 3,
                refused: vec![],
                out,
                batches: Arc::clone(&batches),
            },
            sink_backoff(),
        ));
        let mut got = Vec::new();
        while got.len() < 10 {
            got.push(delivered.recv().await.expect("delivered"));
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(metrics.errors.get(), 3);
        assert_eq!(metrics.sent.get(), 10);
        assert_eq!(metrics.up.get(), 1);
        // Batches of at most 4: the first is tried 4 times.
        assert_eq!(*batches.lock().expect("batches"), vec![4, 4, 4, 4, 4, 2]);
        worker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_down_sink_reports_its_first_failure_until_it_delivers() {
        let (queue, metrics) = queue(100, usize::MAX);
        let (out, mut delivered) = mpsc::unbounded_channel();
        let worker = tokio::spawn(run_worker(
            Arc::clone(&queue),
            Flaky {
                failures: 2,
                refused: vec![],
                out,
                batches: Arc::default(),
            },
            sink_backoff(),
        ));
        queue.push(sample(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(queue.failure().as_deref(), Some("down"));
        assert_eq!(metrics.up.get(), 0);
        assert_eq!(delivered.recv().await, Some(1));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(queue.failure(), None);
        assert_eq!(metrics.up.get(), 1);
        worker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_sample_is_dropped_alone_and_counted() {
        let (queue, metrics) = queue(100, usize::MAX);
        for n in 0..6 {
            queue.push(sample(n));
        }
        let (out, mut delivered) = mpsc::unbounded_channel();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let worker = tokio::spawn(run_worker(
            Arc::clone(&queue),
            Flaky {
                failures: 0,
                refused: vec![2],
                out,
                batches: Arc::clone(&batches),
            },
            sink_backoff(),
        ));
        let mut got = Vec::new();
        while got.len() < 5 {
            got.push(delivered.recv().await.expect("delivered"));
        }
        assert_eq!(got, vec![0, 1, 3, 4, 5]);
        assert_eq!(metrics.rejected.get(), 1);
        assert_eq!(metrics.errors.get(), 0);
        // [0..4) refused as a whole, then one by one; then [4, 5] as a batch.
        assert_eq!(*batches.lock().expect("batches"), vec![4, 1, 1, 1, 1, 2]);
        worker.abort();
    }
}
