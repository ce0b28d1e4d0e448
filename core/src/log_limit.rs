//! One log line per interval for an error that can repeat in a tight loop (an accept loop out of
//! descriptors, a flood of refused connections): the first occurrence is logged at once, later
//! ones at most once per [`INTERVAL`] with the number left out since, so a flood costs a few lines,
//! not gigabytes of log.

use std::time::{Duration, Instant};

/// At most one line per this interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The state of one repeated error.
#[derive(Debug, Default)]
pub struct Repeated {
    last: Option<Instant>,
    suppressed: u64,
}

impl Repeated {
    /// A limiter that logs the next occurrence.
    pub fn new() -> Self {
        Repeated::default()
    }

    /// Whether this occurrence is to be logged now: `Some(n)` with the number of occurrences left
    /// out since the last line, or `None` (counted, not logged).
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let mut repeated = Repeated::new();
        let start = Instant::now();
        assert_eq!(repeated.due(start), Some(0));
        for millis in 1..1000 {
            assert_eq!(repeated.due(start + Duration::from_millis(millis)), None);
        }
        assert_eq!(repeated.due(start + INTERVAL), Some(999));
        assert_eq!(repeated.due(start + INTERVAL), None);
    }
}
