//! `collectCycle` / `reportCycle` values.
//!
//! KubeEdge ≥ 1.18 reads these as milliseconds; older mappers (and many samples still around)
//! wrote nanoseconds, e.g. `10000000000` for ten seconds. A value of 10^7 or more would be a cycle
//! of almost three hours in milliseconds, which nobody means, so it is read as nanoseconds (10 ms
//! and up) and a warning says so. The warning is logged on every call, so read a cycle once per
//! device session, not once per cycle.

use std::time::Duration;

/// Raw cycle values at or above this are read as nanoseconds instead of milliseconds.
pub const NANOSECONDS_THRESHOLD: i64 = 10_000_000;

/// Interprets a raw `collectCycle` / `reportCycle` value. `None` when the value is absent, zero or
/// negative (KubeEdge's "use the mapper's default"). `field` names the field in the warning.
pub fn cycle_duration(raw: Option<i64>, field: &str) -> Option<Duration> {
    let raw = u64::try_from(raw?).ok().filter(|r| *r > 0)?;
    if raw >= NANOSECONDS_THRESHOLD.unsigned_abs() {
        let duration = Duration::from_nanos(raw);
        tracing::warn!(
            field,
            raw,
            read_as_ms = duration.as_millis() as u64,
            "cycle is 10^7 or more: read as nanoseconds (pre-1.18 KubeEdge units); write milliseconds"
        );
        Some(duration)
    } else {
        Some(Duration::from_millis(raw))
    }
}

/// The same value in milliseconds, the unit KubeEdge ≥ 1.18 expects: used when converting old
/// objects so that the output means what the input meant.
pub fn cycle_millis(raw: Option<i64>, field: &str) -> Option<i64> {
    cycle_duration(raw, field).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_milliseconds() {
        assert_eq!(
            cycle_duration(Some(1000), "collectCycle"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            cycle_duration(Some(9_999_999), "collectCycle"),
            Some(Duration::from_millis(9_999_999))
        );
    }

    #[test]
    fn large_values_are_nanoseconds() {
        assert_eq!(
            cycle_duration(Some(10_000_000_000), "reportCycle"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            cycle_duration(Some(NANOSECONDS_THRESHOLD), "reportCycle"),
            Some(Duration::from_millis(10))
        );
        assert_eq!(cycle_millis(Some(1_000_000_000), "reportCycle"), Some(1000));
    }

    #[test]
    fn absent_zero_and_negative_mean_default() {
        assert_eq!(cycle_duration(None, "collectCycle"), None);
        assert_eq!(cycle_duration(Some(0), "collectCycle"), None);
        assert_eq!(cycle_duration(Some(-5), "collectCycle"), None);
        assert_eq!(cycle_millis(Some(-5), "collectCycle"), None);
    }
}
