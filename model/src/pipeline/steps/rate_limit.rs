//! `rateLimit: {maxPerSecond: 2}` / `{minInterval: 500ms}` — at most one value per interval.
//!
//! A value that arrives at least one interval after the last value passed on goes on at once.
//! One that arrives sooner is held; a newer held value replaces an older one (the latest wins,
//! so the device's current state is what ends up reported). The held value is released when the
//! interval is over: by the runtime's timer (`Pipeline::tick` at `Pipeline::next_deadline`), or
//! by the next sample or tick that comes after that time. A value that arrives after the
//! interval replaces the held one. So nothing is lost except values superseded by newer ones.

use crate::pipeline::error::Problem;
use crate::pipeline::spec::RateLimitSpec;
use crate::value::Value;

use super::Flow;

const MAX_PER_SECOND: f64 = 1_000.0;

#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    interval_ms: u64,
    last_passed_at: Option<u64>,
    held: Option<Value>,
}

/// The state change a read or a release asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// A value went on at this time; nothing is held any more.
    Passed { at_ms: u64 },
    /// This value is held (replacing any held before).
    Held(Value),
}

impl RateLimit {
    pub(crate) fn new(spec: &RateLimitSpec) -> Result<Self, Problem> {
        let interval_ms = match (spec.max_per_second, spec.min_interval) {
            (Some(_), Some(_)) => return Err(Problem::both_set("maxPerSecond", "minInterval")),
            (None, None) => return Err(Problem::neither_set("maxPerSecond", "minInterval")),
            (Some(rate), None) => {
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_PER_SECOND) {
                    return Err(Problem::config(
                        "maxPerSecond",
                        format!("must be more than 0 and at most {MAX_PER_SECOND}"),
                    ));
                }
                // Round the interval up so the rate is never exceeded.
                (1_000.0 / rate).ceil() as u64
            }
            (None, Some(interval)) => {
                if interval.as_millis() == 0 {
                    return Err(Problem::config("minInterval", "must be more than 0"));
                }
                interval.as_millis()
            }
        };
        Ok(RateLimit {
            interval_ms,
            last_passed_at: None,
            held: None,
        })
    }

    fn next_allowed(&self) -> Option<u64> {
        self.last_passed_at
            .map(|t| t.saturating_add(self.interval_ms))
    }

    pub(crate) fn read(&self, value: Value, at_ms: u64) -> (Flow, Change) {
        match self.next_allowed() {
            Some(next) if at_ms < next => (Flow::Hold, Change::Held(value)),
            _ => (Flow::Pass(value), Change::Passed { at_ms }),
        }
    }

    /// Passes a value that must be reported; it counts as the value of this interval and
    /// supersedes any held value.
    pub(crate) fn read_forced(&self, value: Value, at_ms: u64) -> (Value, Change) {
        (value, Change::Passed { at_ms })
    }

    pub(crate) fn deadline(&self) -> Option<u64> {
        self.held.as_ref().and(self.next_allowed())
    }

    pub(crate) fn release_due(&self, now_ms: u64) -> Option<(Value, Change)> {
        let due = self.deadline().is_some_and(|deadline| now_ms >= deadline);
        let held = self.held.as_ref().filter(|_| due)?;
        Some((held.clone(), Change::Passed { at_ms: now_ms }))
    }

    pub(crate) fn apply(&mut self, change: Change) {
        match change {
            Change::Passed { at_ms } => {
                self.last_passed_at = Some(at_ms);
                self.held = None;
            }
            Change::Held(value) => self.held = Some(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::duration::DurationSpec;

    fn every(ms: u64) -> RateLimit {
        RateLimit::new(&RateLimitSpec {
            max_per_second: None,
            min_interval: Some(DurationSpec::from_millis(ms)),
        })
        .expect("valid rate limit")
    }

    fn read(step: &mut RateLimit, value: i64, at_ms: u64) -> Option<Value> {
        let (flow, change) = step.read(Value::Int(value), at_ms);
        step.apply(change);
        match flow {
            Flow::Pass(v) => Some(v),
            _ => None,
        }
    }

    fn release(step: &mut RateLimit, now_ms: u64) -> Option<Value> {
        let (value, change) = step.release_due(now_ms)?;
        step.apply(change);
        Some(value)
    }

    #[test]
    fn passes_one_value_per_interval() {
        let mut r = every(1_000);
        assert_eq!(read(&mut r, 1, 0), Some(Value::Int(1)));
        assert_eq!(read(&mut r, 2, 999), None);
        // Exactly one interval later is allowed, and it supersedes the held 2.
        assert_eq!(read(&mut r, 3, 1_000), Some(Value::Int(3)));
        assert_eq!(r.deadline(), None);
        assert_eq!(release(&mut r, 5_000), None);
    }

    #[test]
    fn the_latest_held_value_is_released_when_the_interval_is_over() {
        let mut r = every(1_000);
        read(&mut r, 1, 0);
        assert_eq!(read(&mut r, 2, 100), None);
        assert_eq!(read(&mut r, 3, 200), None);
        assert_eq!(r.deadline(), Some(1_000));
        assert_eq!(release(&mut r, 999), None);
        assert_eq!(release(&mut r, 1_000), Some(Value::Int(3)));
        // Released once only, and the next interval counts from the release.
        assert_eq!(release(&mut r, 1_001), None);
        assert_eq!(read(&mut r, 4, 1_500), None);
        assert_eq!(r.deadline(), Some(2_000));
    }

    #[test]
    fn a_late_timer_restarts_the_interval_from_the_release() {
        let mut r = every(1_000);
        read(&mut r, 1, 0);
        read(&mut r, 2, 10);
        assert_eq!(release(&mut r, 1_700), Some(Value::Int(2)));
        assert_eq!(read(&mut r, 3, 2_000), None);
        assert_eq!(r.deadline(), Some(2_700));
    }

    #[test]
    fn a_forced_value_supersedes_the_held_one_and_starts_an_interval() {
        let mut r = every(1_000);
        read(&mut r, 1, 0);
        read(&mut r, 2, 100);
        let (value, change) = r.read_forced(Value::Int(3), 200);
        assert_eq!(value, Value::Int(3));
        r.apply(change);
        assert_eq!(r.deadline(), None);
        assert_eq!(read(&mut r, 4, 1_100), None);
        assert_eq!(r.deadline(), Some(1_200));
    }

    #[test]
    fn max_per_second_rounds_the_interval_up() {
        let spec = |rate| RateLimitSpec {
            max_per_second: Some(rate),
            min_interval: None,
        };
        let r = RateLimit::new(&spec(3.0)).expect("valid");
        assert_eq!(r.interval_ms, 334);
        assert_eq!(
            RateLimit::new(&spec(0.2)).expect("valid").interval_ms,
            5_000
        );
        for bad in [0.0, -1.0, 1_001.0, f64::NAN] {
            assert!(RateLimit::new(&spec(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn needs_exactly_one_of_rate_and_interval_and_a_nonzero_interval() {
        let both = RateLimitSpec {
            max_per_second: Some(1.0),
            min_interval: Some(DurationSpec::from_millis(10)),
        };
        assert!(RateLimit::new(&both).is_err());
        let neither = RateLimitSpec {
            max_per_second: None,
            min_interval: None,
        };
        assert!(RateLimit::new(&neither).is_err());
        let zero = RateLimitSpec {
            max_per_second: None,
            min_interval: Some(DurationSpec::from_millis(0)),
        };
        assert!(RateLimit::new(&zero).is_err());
    }
}
