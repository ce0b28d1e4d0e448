//! `window: {size: N | period: T, aggregate, mode}` — aggregates samples.
//!
//! * **Tumbling** (default), one value per window, windows do not overlap:
//!   - `size: N`: every N-th sample goes on as the aggregate of the last N; a partial window
//!     waits for more samples (it has no deadline).
//!   - `period: T`: windows are the intervals `[k·T, (k+1)·T)` of the sample time, so with Unix
//!     times a `1m` window is a wall-clock minute. A window is released when it is over: by the
//!     first sample of a later window, or by the runtime's timer at its end. Empty windows
//!     release nothing.
//! * **Sliding**, one value per sample: the aggregate of the last N samples (`size`) or of the
//!   samples in `(t − T, t]` (`period`), including the current one. From the first sample on, a
//!   sliding window aggregates what it has, so a value is reported right after start-up.
//!
//! Aggregates: `min`, `max` (keep the sample's type), `mean` (float), `sum` (int while every
//! sample is an int and the sum fits, else float) need numbers; `last` takes any type.
//! A sliding window recomputes its aggregate over its samples for every sample, so its cost and
//! memory grow with the window (fine for the hundreds to thousands of samples edge properties
//! see; a tumbling window keeps only a running aggregate).

use std::collections::VecDeque;

use crate::pipeline::error::Problem;
use crate::pipeline::number::{compare, require_number};
use crate::pipeline::spec::{Aggregate, WindowMode, WindowSpec};
use crate::value::Value;

use super::Flow;

/// The largest count window accepted.
const MAX_SIZE: u32 = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct Window {
    extent: Extent,
    aggregate: Aggregate,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum Extent {
    Samples(usize),
    Period(u64),
}

#[derive(Debug, Clone)]
enum State {
    /// The window being filled, if any.
    Tumbling(Option<Bucket>),
    /// The samples in the window, oldest first, with their times.
    Sliding(VecDeque<(u64, Value)>),
}

/// An open tumbling window: its number (for time windows `at / period`) and running aggregate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    index: u64,
    count: usize,
    acc: Acc,
}

/// The state change a read or a release asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Tumbling: the open window is now this one (or none).
    Open(Option<Bucket>),
    /// Sliding: add this sample and drop the ones that fall out of the window.
    Push { at_ms: u64, value: Value },
}

impl Window {
    pub(crate) fn new(spec: &WindowSpec) -> Result<Self, Problem> {
        let extent = match (spec.size, spec.period) {
            (Some(_), Some(_)) => return Err(Problem::both_set("size", "period")),
            (None, None) => return Err(Problem::neither_set("size", "period")),
            (Some(size), None) => {
                if size == 0 || size > MAX_SIZE {
                    return Err(Problem::config(
                        "size",
                        format!("must be between 1 and {MAX_SIZE}"),
                    ));
                }
                Extent::Samples(size as usize)
            }
            (None, Some(period)) => {
                if period.as_millis() == 0 {
                    return Err(Problem::config("period", "must be more than 0"));
                }
                Extent::Period(period.as_millis())
            }
        };
        let state = match spec.mode {
            WindowMode::Tumbling => State::Tumbling(None),
            WindowMode::Sliding => State::Sliding(VecDeque::new()),
        };
        Ok(Window {
            extent,
            aggregate: spec.aggregate,
            state,
        })
    }

    pub(crate) fn read(&self, value: Value, at_ms: u64) -> Result<(Flow, Change), Problem> {
        match &self.state {
            State::Tumbling(open) => self.read_tumbling(open.as_ref(), value, at_ms),
            State::Sliding(samples) => {
                let mut acc = Acc::new(self.aggregate);
                for (_, kept) in self.kept(samples, at_ms) {
                    acc.push(kept)?;
                }
                acc.push(&value)?;
                let flow = acc.result().map_or(Flow::Hold, Flow::Pass);
                Ok((flow, Change::Push { at_ms, value }))
            }
        }
    }

    fn read_tumbling(
        &self,
        open: Option<&Bucket>,
        value: Value,
        at_ms: u64,
    ) -> Result<(Flow, Change), Problem> {
        match self.extent {
            Extent::Samples(size) => {
                let mut bucket = open
                    .cloned()
                    .unwrap_or_else(|| Bucket::new(0, self.aggregate));
                bucket.push(&value)?;
                if bucket.count >= size {
                    let flow = bucket.acc.result().map_or(Flow::Hold, Flow::Pass);
                    Ok((flow, Change::Open(None)))
                } else {
                    Ok((Flow::Hold, Change::Open(Some(bucket))))
                }
            }
            Extent::Period(period) => {
                let index = at_ms / period;
                match open {
                    Some(bucket) if bucket.index == index => {
                        let mut bucket = bucket.clone();
                        bucket.push(&value)?;
                        Ok((Flow::Hold, Change::Open(Some(bucket))))
                    }
                    _ => {
                        let mut fresh = Bucket::new(index, self.aggregate);
                        fresh.push(&value)?;
                        // The sample starts a later window: the open one, if any, is over.
                        let flow = open
                            .and_then(|closed| closed.acc.result())
                            .map_or(Flow::Hold, Flow::Release);
                        Ok((flow, Change::Open(Some(fresh))))
                    }
                }
            }
        }
    }

    /// The stored samples that are still in the window of a sample arriving at `at_ms`.
    fn kept<'a>(
        &self,
        samples: &'a VecDeque<(u64, Value)>,
        at_ms: u64,
    ) -> impl Iterator<Item = &'a (u64, Value)> {
        samples
            .iter()
            .skip(outdated(self.extent, samples, at_ms, Incoming::NotStored))
    }

    pub(crate) fn deadline(&self) -> Option<u64> {
        match (&self.state, self.extent) {
            (State::Tumbling(Some(bucket)), Extent::Period(period)) => {
                Some(bucket.index.saturating_add(1).saturating_mul(period))
            }
            _ => None,
        }
    }

    pub(crate) fn release_due(&self, now_ms: u64) -> Option<(Value, Change)> {
        let State::Tumbling(Some(bucket)) = &self.state else {
            return None;
        };
        if self.deadline().is_some_and(|deadline| now_ms >= deadline) {
            bucket.acc.result().map(|v| (v, Change::Open(None)))
        } else {
            None
        }
    }

    pub(crate) fn apply(&mut self, change: Change) {
        match (&mut self.state, change) {
            (State::Tumbling(open), Change::Open(bucket)) => *open = bucket,
            (State::Sliding(samples), Change::Push { at_ms, value }) => {
                samples.push_back((at_ms, value));
                let excess = outdated(self.extent, samples, at_ms, Incoming::Stored);
                samples.drain(..excess);
            }
            // A tumbling change for a sliding window or the reverse is never produced.
            _ => {}
        }
    }
}

/// Whether the newest sample is already among the stored ones.
#[derive(Clone, Copy, PartialEq)]
enum Incoming {
    Stored,
    NotStored,
}

/// How many of the oldest `samples` fall out of a sliding window that ends with a sample at
/// `at_ms`: beyond the last `size`, or at least one period old (the window is `(at − T, at]`).
fn outdated(
    extent: Extent,
    samples: &VecDeque<(u64, Value)>,
    at_ms: u64,
    incoming: Incoming,
) -> usize {
    match extent {
        Extent::Samples(size) => {
            let total = samples.len() + usize::from(incoming == Incoming::NotStored);
            total.saturating_sub(size)
        }
        Extent::Period(period) => samples
            .iter()
            .take_while(|(t, _)| t.saturating_add(period) <= at_ms)
            .count(),
    }
}

impl Bucket {
    fn new(index: u64, aggregate: Aggregate) -> Self {
        Bucket {
            index,
            count: 0,
            acc: Acc::new(aggregate),
        }
    }

    fn push(&mut self, value: &Value) -> Result<(), Problem> {
        self.acc.push(value)?;
        self.count += 1;
        Ok(())
    }
}

/// A running aggregate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Acc {
    Min(Option<Value>),
    Max(Option<Value>),
    /// `int` is the exact sum while every sample is an int and it fits.
    Sum {
        int: Option<i64>,
        float: f64,
        any: bool,
    },
    Mean {
        total: f64,
        count: u64,
    },
    Last(Option<Value>),
}

impl Acc {
    fn new(aggregate: Aggregate) -> Self {
        match aggregate {
            Aggregate::Min => Acc::Min(None),
            Aggregate::Max => Acc::Max(None),
            Aggregate::Sum => Acc::Sum {
                int: Some(0),
                float: 0.0,
                any: false,
            },
            Aggregate::Mean => Acc::Mean {
                total: 0.0,
                count: 0,
            },
            Aggregate::Last => Acc::Last(None),
        }
    }

    fn push(&mut self, value: &Value) -> Result<(), Problem> {
        if let Acc::Last(last) = self {
            *last = Some(value.clone());
            return Ok(());
        }
        let x = require_number(value)?;
        match self {
            Acc::Min(min) => {
                if min.as_ref().is_none_or(|m| compare(value, m).is_lt()) {
                    *min = Some(value.clone());
                }
            }
            Acc::Max(max) => {
                if max.as_ref().is_none_or(|m| compare(value, m).is_gt()) {
                    *max = Some(value.clone());
                }
            }
            Acc::Sum { int, float, any } => {
                *int = match (*int, value) {
                    (Some(sum), Value::Int(i)) => sum.checked_add(*i),
                    _ => None,
                };
                *float += x;
                *any = true;
            }
            Acc::Mean { total, count } => {
                *total += x;
                *count += 1;
            }
            Acc::Last(_) => {}
        }
        Ok(())
    }

    /// The aggregate, `None` before the first sample.
    fn result(&self) -> Option<Value> {
        match self {
            Acc::Min(v) | Acc::Max(v) | Acc::Last(v) => v.clone(),
            Acc::Sum { any: false, .. } | Acc::Mean { count: 0, .. } => None,
            Acc::Sum { int: Some(i), .. } => Some(Value::Int(*i)),
            Acc::Sum { float, .. } => Some(Value::Float(*float)),
            Acc::Mean { total, count } => Some(Value::Float(*total / *count as f64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::duration::DurationSpec;

    fn window(
        size: Option<u32>,
        period_ms: Option<u64>,
        aggregate: Aggregate,
        mode: WindowMode,
    ) -> Window {
        Window::new(&WindowSpec {
            size,
            period: period_ms.map(DurationSpec::from_millis),
            aggregate,
            mode,
        })
        .expect("valid window")
    }

    /// What a read did: `Some(v)` when a value went on (passed or released), else `None`.
    fn read(w: &mut Window, value: Value, at_ms: u64) -> Option<Value> {
        let (flow, change) = w.read(value, at_ms).expect("valid value");
        w.apply(change);
        match flow {
            Flow::Pass(v) | Flow::Release(v) => Some(v),
            Flow::Hold => None,
        }
    }

    fn ints(w: &mut Window, values: &[i64]) -> Vec<Option<Value>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| read(w, Value::Int(*v), i as u64))
            .collect()
    }

    #[test]
    fn tumbling_count_window_emits_once_per_n_samples() {
        let mut w = window(Some(3), None, Aggregate::Mean, WindowMode::Tumbling);
        let out = ints(&mut w, &[1, 2, 6, 10, 20, 30, 7]);
        assert_eq!(
            out,
            vec![
                None,
                None,
                Some(Value::Float(3.0)),
                None,
                None,
                Some(Value::Float(20.0)),
                None
            ]
        );
        // A partial count window has no deadline: it waits for samples.
        assert_eq!(w.deadline(), None);
        assert_eq!(w.release_due(u64::MAX), None);
    }

    #[test]
    fn every_aggregate_over_a_count_window() {
        let values = [Value::Int(4), Value::Float(-1.5), Value::Int(9)];
        for (aggregate, expected) in [
            (Aggregate::Min, Value::Float(-1.5)),
            (Aggregate::Max, Value::Int(9)),
            (Aggregate::Mean, Value::Float(23.0 / 6.0)),
            (Aggregate::Sum, Value::Float(11.5)),
            (Aggregate::Last, Value::Int(9)),
        ] {
            let mut w = window(Some(3), None, aggregate, WindowMode::Tumbling);
            let out: Vec<_> = values.iter().map(|v| read(&mut w, v.clone(), 0)).collect();
            assert_eq!(out, vec![None, None, Some(expected)], "{aggregate}");
        }
    }

    #[test]
    fn sum_stays_int_until_it_overflows() {
        let mut w = window(Some(2), None, Aggregate::Sum, WindowMode::Tumbling);
        assert_eq!(ints(&mut w, &[2, 3]), vec![None, Some(Value::Int(5))]);
        let mut w = window(Some(2), None, Aggregate::Sum, WindowMode::Tumbling);
        let out = ints(&mut w, &[i64::MAX, 1]);
        assert_eq!(out[1], Some(Value::Float(i64::MAX as f64 + 1.0)));
    }

    #[test]
    fn min_and_max_keep_ints_exact_beyond_f64_precision() {
        let mut w = window(Some(2), None, Aggregate::Max, WindowMode::Tumbling);
        let out = ints(&mut w, &[i64::MAX - 1, i64::MAX]);
        assert_eq!(out[1], Some(Value::Int(i64::MAX)));
    }

    #[test]
    fn tumbling_period_window_releases_when_a_later_window_starts() {
        let mut w = window(None, Some(1_000), Aggregate::Max, WindowMode::Tumbling);
        assert_eq!(read(&mut w, Value::Int(5), 100), None);
        assert_eq!(read(&mut w, Value::Int(9), 999), None);
        assert_eq!(w.deadline(), Some(1_000));
        // 1000 is the first instant of the next window [1000, 2000): [0, 1000) is released.
        assert_eq!(read(&mut w, Value::Int(1), 1_000), Some(Value::Int(9)));
        // Skipping empty windows: [2000, 3000) and [3000, 4000) had no samples, release nothing.
        assert_eq!(read(&mut w, Value::Int(3), 4_500), Some(Value::Int(1)));
        assert_eq!(w.deadline(), Some(5_000));
    }

    #[test]
    fn tumbling_period_window_is_released_by_the_timer_at_its_end() {
        let mut w = window(None, Some(1_000), Aggregate::Mean, WindowMode::Tumbling);
        read(&mut w, Value::Int(2), 1_200);
        read(&mut w, Value::Int(4), 1_300);
        assert_eq!(w.release_due(1_999), None);
        let (value, change) = w.release_due(2_000).expect("due");
        assert_eq!(value, Value::Float(3.0));
        w.apply(change);
        assert_eq!(w.deadline(), None);
        assert_eq!(w.release_due(10_000), None);
    }

    #[test]
    fn sliding_count_window_reports_every_sample_from_the_first() {
        let mut w = window(Some(3), None, Aggregate::Mean, WindowMode::Sliding);
        let out = ints(&mut w, &[3, 6, 9, 12, 0]);
        let means = [3.0, 4.5, 6.0, 9.0, 7.0];
        assert_eq!(
            out,
            means
                .iter()
                .map(|m| Some(Value::Float(*m)))
                .collect::<Vec<_>>()
        );
        assert_eq!(w.deadline(), None);
    }

    #[test]
    fn sliding_period_window_covers_the_last_period_up_to_now() {
        let mut w = window(None, Some(1_000), Aggregate::Max, WindowMode::Sliding);
        assert_eq!(read(&mut w, Value::Int(9), 0), Some(Value::Int(9)));
        assert_eq!(read(&mut w, Value::Int(4), 500), Some(Value::Int(9)));
        assert_eq!(read(&mut w, Value::Int(6), 999), Some(Value::Int(9)));
        // At 1000 the sample from 0 is exactly one period old: out of (0, 1000].
        assert_eq!(read(&mut w, Value::Int(1), 1_000), Some(Value::Int(6)));
        assert_eq!(read(&mut w, Value::Int(2), 5_000), Some(Value::Int(2)));
        let State::Sliding(samples) = &w.state else {
            panic!("sliding")
        };
        assert_eq!(samples.len(), 1, "old samples are dropped");
    }

    #[test]
    fn numeric_aggregates_refuse_other_types_and_last_takes_anything() {
        let w = window(Some(2), None, Aggregate::Mean, WindowMode::Tumbling);
        assert!(matches!(
            w.read(Value::String("x".into()), 0),
            Err(Problem::NotNumeric { .. })
        ));
        let mut last = window(Some(2), None, Aggregate::Last, WindowMode::Tumbling);
        read(&mut last, Value::String("a".into()), 0);
        assert_eq!(
            read(&mut last, Value::Bytes(b"b".to_vec()), 1),
            Some(Value::Bytes(b"b".to_vec()))
        );
    }

    #[test]
    fn a_refused_sample_leaves_the_window_as_it_was() {
        let mut w = window(Some(2), None, Aggregate::Sum, WindowMode::Tumbling);
        read(&mut w, Value::Int(1), 0);
        assert!(w.read(Value::Boolean(true), 1).is_err());
        assert_eq!(read(&mut w, Value::Int(2), 2), Some(Value::Int(3)));
    }

    #[test]
    fn bad_specs_are_config_errors() {
        let spec = |size, period: Option<u64>| WindowSpec {
            size,
            period: period.map(DurationSpec::from_millis),
            aggregate: Aggregate::Mean,
            mode: WindowMode::Tumbling,
        };
        for (bad, field) in [
            (spec(None, None), "size"),
            (spec(Some(2), Some(5)), "size"),
            (spec(Some(0), None), "size"),
            (spec(Some(MAX_SIZE + 1), None), "size"),
            (spec(None, Some(0)), "period"),
        ] {
            let error = Window::new(&bad).expect_err("invalid");
            assert!(
                matches!(error, Problem::Config { field: f, .. } if f == field),
                "{error}"
            );
        }
    }
}
