//! Retry pacing: exponential [`Backoff`] with jitter, and the per-device [`CircuitBreaker`].
//!
//! The breaker keeps one dead device from costing anything: after `failure_threshold`
//! consecutive transient failures it opens, and the device task sleeps until the backoff delay
//! has passed. Then it is half-open: one attempt (reconnect and read) is let through; success
//! closes it, failure opens it again for a longer delay (capped).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff: `initial`, doubled after each failure up to `max`, with ±20 % jitter so
/// that devices that failed together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    jitter: RandomState,
    draws: u64,
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            current: initial,
            jitter: RandomState::new(),
            draws: 0,
        }
    }

    /// The next delay; each call doubles the base delay up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        self.draws = self.draws.wrapping_add(1);
        let mut hasher = self.jitter.build_hasher();
        hasher.write_u64(self.draws);
        // A factor in [0.8, 1.2).
        let factor = 0.8 + (hasher.finish() % 4000) as f64 / 10_000.0;
        base.mul_f64(factor).min(self.max)
    }

    /// Starts again from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// The breaker's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused until the instant has passed.
    Open {
        /// When the next attempt is allowed.
        until: Instant,
    },
    /// One trial call is allowed; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// A per-device circuit breaker (closed → open → half-open) with exponential backoff.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    state: BreakerState,
    failures: u32,
    failure_threshold: u32,
    backoff: Backoff,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `failure_threshold` consecutive failures (at least 1)
    /// and stays open for delays given by `backoff`.
    pub fn new(failure_threshold: u32, backoff: Backoff) -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            failure_threshold: failure_threshold.max(1),
            backoff,
        }
    }

    /// The current state, moving from open to half-open once the delay has passed.
    pub fn state(&mut self, now: Instant) -> BreakerState {
        if let BreakerState::Open { until } = self.state
            && now >= until
        {
            self.state = BreakerState::HalfOpen;
        }
        self.state
    }

    /// Whether a call may go through now.
    pub fn allows(&mut self, now: Instant) -> bool {
        !matches!(self.state(now), BreakerState::Open { .. })
    }

    /// When the breaker lets the next call through (`None` when it does now).
    pub fn retry_at(&mut self, now: Instant) -> Option<Instant> {
        match self.state(now) {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Records a success: the breaker closes and the backoff starts over.
    pub fn record_success(&mut self) {
        self.state = BreakerState::Closed;
        self.failures = 0;
        self.backoff.reset();
    }

    /// Records a transient failure; returns `true` when this failure opened the breaker.
    pub fn record_failure(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        let open = match self.state(now) {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.failures >= self.failure_threshold,
            BreakerState::Open { .. } => false,
        };
        if open {
            self.state = BreakerState::Open {
                until: now + self.backoff.next_delay(),
            };
        }
        open
    }

    /// Opens the breaker right away (the session is known to be gone).
    pub fn trip(&mut self, now: Instant) {
        self.failures = self.failures.max(self.failure_threshold);
        self.state = BreakerState::Open {
            until: now + self.backoff.next_delay(),
        };
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay()).collect();
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*delay >= base.mul_f64(0.8), "{delay:?} vs {base:?}");
            assert!(*delay <= base.mul_f64(1.2).min(Duration::from_millis(1000)));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn breaker_opens_after_threshold_then_half_opens_and_closes() {
        let start = Instant::now();
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let mut breaker = CircuitBreaker::new(3, backoff);
        assert!(!breaker.record_failure(start));
        assert!(!breaker.record_failure(start));
        assert!(breaker.allows(start));
        assert!(breaker.record_failure(start));
        assert!(!breaker.allows(start));
        let until = breaker.retry_at(start).expect("open");
        assert!(until >= start + Duration::from_millis(800));

        // After the delay one trial goes through; its failure reopens for longer.
        assert_eq!(breaker.state(until), BreakerState::HalfOpen);
        assert!(breaker.record_failure(until));
        let again = breaker.retry_at(until).expect("open again");
        assert!(again - until >= Duration::from_millis(1600));

        assert_eq!(breaker.state(again), BreakerState::HalfOpen);
        breaker.record_success();
        assert_eq!(breaker.state(again), BreakerState::Closed);
        assert_eq!(breaker.failures(), 0);
    }

    #[test]
    fn trip_opens_immediately() {
        let now = Instant::now();
        let mut breaker = CircuitBreaker::new(
            5,
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
        );
        breaker.trip(now);
        assert!(!breaker.allows(now));
        assert!(breaker.allows(now + Duration::from_millis(13)));
    }
}
