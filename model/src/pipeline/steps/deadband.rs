//! `deadband: {absolute: 0.5}` / `{percent: 1}` / `{}` — report on change.
//!
//! A value goes on when it differs from the last value *this step passed on* (not the last
//! sample, so a slow drift is reported once it adds up) by more than the band:
//! * `absolute: b` — the band is `b` in the value's units;
//! * `percent: p` — the band is `p` % of the last value passed on; around 0 the band shrinks to 0,
//!   so any change away from exactly 0 is reported;
//! * `{}` — the band is 0: any change is reported.
//!
//! "More than": a difference equal to the band is suppressed. The first value always goes on.
//! Non-numeric values (and a change of type between number and non-number) go on when they
//! differ at all.

use crate::pipeline::error::Problem;
use crate::pipeline::number::{as_number, finite};
use crate::pipeline::spec::DeadbandSpec;
use crate::value::Value;

use super::Flow;

#[derive(Debug, Clone)]
pub(crate) struct Deadband {
    band: Band,
    last_passed: Option<Value>,
}

#[derive(Debug, Clone, Copy)]
enum Band {
    Absolute(f64),
    Percent(f64),
}

/// The state change: the value passed on becomes the reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change(Option<Value>);

impl Deadband {
    pub(crate) fn new(spec: &DeadbandSpec) -> Result<Self, Problem> {
        let check = |field, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(Problem::config(field, "must be a finite number ≥ 0"))
            }
        };
        let band = match (spec.absolute, spec.percent) {
            (Some(_), Some(_)) => return Err(Problem::both_set("absolute", "percent")),
            (Some(b), None) => Band::Absolute(check("absolute", b)?),
            (None, Some(p)) => Band::Percent(check("percent", p)?),
            (None, None) => Band::Absolute(0.0),
        };
        Ok(Deadband {
            band,
            last_passed: None,
        })
    }

    pub(crate) fn read(&self, value: Value) -> Result<(Flow, Change), Problem> {
        if let Some(x) = as_number(&value) {
            finite(x)?;
        }
        let changed = match &self.last_passed {
            None => true,
            Some(last) => match (as_number(last), as_number(&value)) {
                (Some(previous), Some(current)) => {
                    let band = match self.band {
                        Band::Absolute(b) => b,
                        Band::Percent(p) => previous.abs() * p / 100.0,
                    };
                    (current - previous).abs() > band
                }
                _ => *last != value,
            },
        };
        Ok(if changed {
            (Flow::Pass(value.clone()), Change(Some(value)))
        } else {
            (Flow::Hold, Change(None))
        })
    }

    /// Passes a value that must be reported and takes it as the new reference.
    pub(crate) fn read_forced(&self, value: Value) -> Result<(Value, Change), Problem> {
        if let Some(x) = as_number(&value) {
            finite(x)?;
        }
        Ok((value.clone(), Change(Some(value))))
    }

    pub(crate) fn apply(&mut self, change: Change) {
        if let Change(Some(value)) = change {
            self.last_passed = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadband(absolute: Option<f64>, percent: Option<f64>) -> Deadband {
        Deadband::new(&DeadbandSpec { absolute, percent }).expect("valid deadband")
    }

    /// Feeds values one by one, applying changes as the pipeline would; returns what went on.
    fn run(step: &mut Deadband, values: &[Value]) -> Vec<Option<Value>> {
        values
            .iter()
            .map(|v| {
                let (flow, change) = step.read(v.clone()).expect("numeric");
                step.apply(change);
                match flow {
                    Flow::Pass(v) => Some(v),
                    _ => None,
                }
            })
            .collect()
    }

    /// Feeds floats; returns the ones that went on, `None` for the suppressed ones.
    fn run_floats(step: &mut Deadband, xs: &[f64]) -> Vec<Option<f64>> {
        let values: Vec<Value> = xs.iter().copied().map(Value::Float).collect();
        run(step, &values)
            .into_iter()
            .map(|v| match v {
                Some(Value::Float(x)) => Some(x),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn absolute_band_compares_with_the_last_value_passed_on_not_the_last_sample() {
        let mut d = deadband(Some(0.5), None);
        let out = run_floats(&mut d, &[20.0, 20.3, 20.5, 20.6, 20.2, 21.0]);
        // 20.3 and 20.5 are within 0.5 of 20.0 (a difference equal to the band is suppressed);
        // 20.6 is not. Then 20.2 and 21.0 are within 0.5 of 20.6, the new reference.
        assert_eq!(out, [Some(20.0), None, None, Some(20.6), None, None]);
        // A drift by small steps is reported once it adds up.
        let mut drift = deadband(Some(1.0), None);
        let out = run_floats(&mut drift, &[0.0, 0.4, 0.8, 1.2, 1.6]);
        assert_eq!(out, [Some(0.0), None, None, Some(1.2), None]);
    }

    #[test]
    fn percent_band_is_relative_to_the_last_value_and_zero_around_zero() {
        let mut d = deadband(None, Some(10.0));
        let out = run_floats(&mut d, &[100.0, 109.0, 111.0, 121.0, 123.0]);
        // After 111 the band is 11.1: 121 (10 away) is suppressed, 123 (12 away) is not.
        assert_eq!(out, [Some(100.0), None, Some(111.0), None, Some(123.0)]);
        // Around 0 the band is 10 % of 0 = 0: any change away from 0 is reported; from a small
        // value the band is small.
        let mut z = deadband(None, Some(10.0));
        let out = run_floats(&mut z, &[0.0, 0.0, 0.001, 0.00105, 0.0012]);
        assert_eq!(out, [Some(0.0), None, Some(0.001), None, Some(0.0012)]);
        // Negative values use the magnitude.
        let mut n = deadband(None, Some(10.0));
        let out = run_floats(&mut n, &[-100.0, -91.0, -89.0]);
        assert_eq!(out, [Some(-100.0), None, Some(-89.0)]);
    }

    #[test]
    fn empty_deadband_reports_on_change_for_any_type() {
        let mut d = deadband(None, None);
        let values = [
            Value::Int(1),
            Value::Int(1),
            Value::Float(1.0),
            Value::Int(2),
            Value::String("on".into()),
            Value::String("on".into()),
            Value::String("off".into()),
            Value::Boolean(true),
            Value::Boolean(true),
        ];
        let out = run(&mut d, &values);
        assert_eq!(
            out,
            vec![
                Some(Value::Int(1)),
                None,
                None, // 1.0 is the same number as 1
                Some(Value::Int(2)),
                Some(Value::String("on".into())),
                None,
                Some(Value::String("off".into())),
                Some(Value::Boolean(true)),
                None,
            ]
        );
    }

    #[test]
    fn a_suppressed_read_changes_nothing() {
        let d = deadband(Some(1.0), None);
        let (_, change) = d.read(Value::Int(5)).expect("numeric");
        assert_eq!(change, Change(Some(Value::Int(5))));
        let mut d = d;
        d.apply(change);
        let (flow, change) = d.read(Value::Int(6)).expect("numeric");
        assert_eq!((flow, change), (Flow::Hold, Change(None)));
    }

    #[test]
    fn a_forced_value_passes_and_becomes_the_reference() {
        let mut d = deadband(Some(1.0), None);
        run_floats(&mut d, &[20.0]);
        let (value, change) = d.read_forced(Value::Float(20.4)).expect("numeric");
        assert_eq!(value, Value::Float(20.4));
        d.apply(change);
        // 21.2 is more than 1 from 20 but not from the forced 20.4.
        assert_eq!(run_floats(&mut d, &[21.2, 21.5]), [None, Some(21.5)]);
    }

    #[test]
    fn bad_bands_and_non_finite_values_are_refused() {
        assert!(
            Deadband::new(&DeadbandSpec {
                absolute: Some(1.0),
                percent: Some(1.0)
            })
            .is_err()
        );
        assert!(
            Deadband::new(&DeadbandSpec {
                absolute: Some(-1.0),
                percent: None
            })
            .is_err()
        );
        assert!(
            Deadband::new(&DeadbandSpec {
                absolute: None,
                percent: Some(f64::NAN)
            })
            .is_err()
        );
        let d = deadband(Some(1.0), None);
        assert!(matches!(
            d.read(Value::Float(f64::INFINITY)),
            Err(Problem::NotFinite { .. })
        ));
    }
}
