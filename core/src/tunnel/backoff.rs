//! Reconnect delays: exponential backoff with full jitter, without I/O.
//!
//! Attempt `n` (from 0) waits a uniformly random time in `[0, min(max, initial · 2ⁿ)]` ("full
//! jitter"): after a cloud restart, thousands of edge nodes spread their reconnects over the whole
//! window instead of arriving in waves. A link that stays established resets the schedule.

use std::time::Duration;

use rand::Rng;

/// The reconnect schedule's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// Where a client is in its reconnect schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        // 2^20 · initial already exceeds any sensible max; capping the exponent avoids overflow.
        let factor = 1u32 << self.attempt.min(20);
        self.config
            .initial
            .saturating_mul(factor)
            .min(self.config.max)
    }

    /// The delay before the next attempt, drawn from `rng`; advances the schedule.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts the schedule over (after a link was established).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn config() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }

    #[test]
    fn ceilings_double_up_to_the_max_and_reset() {
        let mut backoff = Backoff::new(config());
        let mut rng = StdRng::seed_from_u64(1);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay(&mut rng);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(backoff.attempts(), 8);
        backoff.reset();
        assert_eq!(backoff.ceiling().as_millis(), 100);
    }

    #[test]
    fn delays_stay_under_their_ceiling_and_spread_over_it() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut late = Vec::new();
        for _ in 0..200 {
            let mut backoff = Backoff::new(config());
            for attempt in 0..10 {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_delay(&mut rng);
                assert!(
                    delay <= ceiling,
                    "attempt {attempt}: {delay:?} > {ceiling:?}"
                );
                if attempt >= 5 {
                    late.push(delay.as_secs_f64());
                }
            }
        }
        // Full jitter: uniform over [0, 2 s] once capped, so both halves are well populated.
        let low = late.iter().filter(|d| **d < 1.0).count();
        let high = late.len() - low;
        assert!(
            low > 350 && high > 350,
            "low {low}, high {high} of {}",
            late.len()
        );
        let mean = late.iter().sum::<f64>() / late.len() as f64;
        assert!((0.8..1.2).contains(&mean), "mean {mean}");
    }

    #[test]
    fn clients_with_different_seeds_do_not_reconnect_in_lockstep() {
        let schedule = |seed| {
            let mut backoff = Backoff::new(config());
            let mut rng = StdRng::seed_from_u64(seed);
            (0..6)
                .map(|_| backoff.next_delay(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(3), schedule(3), "deterministic for one seed");
        assert_ne!(schedule(3), schedule(4));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::new(BackoffConfig {
            initial: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
        });
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..100 {
            backoff.next_delay(&mut rng);
        }
        assert!(backoff.ceiling() >= Duration::from_secs(u64::MAX / 4));
    }
}
