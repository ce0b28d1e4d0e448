//! `clamp: {min, max}` — keeps values in a range.
//!
//! Read: a value below `min` becomes `min`, above `max` becomes `max` (an int stays an int when the
//! bound is whole). Write: a desired value outside the range is refused rather than silently
//! changed, so the user learns the device will not take it.

use crate::pipeline::error::Problem;
use crate::pipeline::number::{bound_like, require_number};
use crate::pipeline::spec::ClampSpec;
use crate::value::Value;

#[derive(Debug, Clone)]
pub(crate) struct Clamp {
    min: Option<f64>,
    max: Option<f64>,
}

impl Clamp {
    pub(crate) fn new(spec: &ClampSpec) -> Result<Self, Problem> {
        for (field, bound) in [("min", spec.min), ("max", spec.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                return Err(Problem::config(field, "must be a finite number"));
            }
        }
        match (spec.min, spec.max) {
            (None, None) => Err(Problem::neither_set("min", "max")),
            (Some(min), Some(max)) if min > max => Err(Problem::config(
                "min",
                format!("({min}) must not be greater than `max` ({max})"),
            )),
            _ => Ok(Clamp {
                min: spec.min,
                max: spec.max,
            }),
        }
    }

    pub(crate) fn read(&self, value: Value) -> Result<Value, Problem> {
        let x = require_number(&value)?;
        Ok(match (self.min, self.max) {
            (Some(min), _) if x < min => bound_like(min, &value),
            (_, Some(max)) if x > max => bound_like(max, &value),
            _ => value,
        })
    }

    pub(crate) fn write(&self, desired: Value) -> Result<Value, Problem> {
        let x = require_number(&desired)?;
        let below = self.min.is_some_and(|min| x < min);
        let above = self.max.is_some_and(|max| x > max);
        if below || above {
            return Err(Problem::OutOfRange {
                value: x,
                range: self.range_text(),
            });
        }
        Ok(desired)
    }

    fn range_text(&self) -> String {
        let min = self.min.map_or("(-∞".to_owned(), |m| format!("[{m}"));
        let max = self.max.map_or("∞)".to_owned(), |m| format!("{m}]"));
        format!("{min}, {max}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clamp(min: Option<f64>, max: Option<f64>) -> Clamp {
        Clamp::new(&ClampSpec { min, max }).expect("valid clamp")
    }

    #[test]
    fn read_limits_to_the_bounds_and_keeps_ints_int() {
        let c = clamp(Some(-40.0), Some(125.0));
        assert_eq!(c.read(Value::Int(200)), Ok(Value::Int(125)));
        assert_eq!(c.read(Value::Float(-41.5)), Ok(Value::Float(-40.0)));
        assert_eq!(c.read(Value::Float(20.5)), Ok(Value::Float(20.5)));
        // The bounds themselves are inside.
        assert_eq!(c.read(Value::Int(125)), Ok(Value::Int(125)));
        assert_eq!(c.read(Value::Int(-40)), Ok(Value::Int(-40)));
        // A fractional bound turns a clamped int into a float.
        assert_eq!(
            clamp(Some(0.5), None).read(Value::Int(0)),
            Ok(Value::Float(0.5))
        );
    }

    #[test]
    fn one_bound_is_enough() {
        assert_eq!(
            clamp(None, Some(10.0)).read(Value::Int(-1_000)),
            Ok(Value::Int(-1_000))
        );
        assert_eq!(
            clamp(Some(0.0), None).read(Value::Int(1_000)),
            Ok(Value::Int(1_000))
        );
    }

    #[test]
    fn write_refuses_values_outside_the_range_and_says_which_range() {
        let c = clamp(Some(-40.0), Some(125.0));
        assert_eq!(c.write(Value::Int(125)), Ok(Value::Int(125)));
        let error = c.write(Value::Float(130.0)).expect_err("above max");
        assert_eq!(
            error.to_string(),
            "the desired value 130 is outside the allowed range [-40, 125]"
        );
        let error = clamp(Some(0.0), None)
            .write(Value::Int(-1))
            .expect_err("below min");
        assert_eq!(
            error.to_string(),
            "the desired value -1 is outside the allowed range [0, ∞)"
        );
    }

    #[test]
    fn bad_bounds_are_config_errors() {
        let error = Clamp::new(&ClampSpec {
            min: Some(5.0),
            max: Some(1.0),
        })
        .expect_err("min > max");
        assert_eq!(
            error.to_string(),
            "`min` (5) must not be greater than `max` (1)"
        );
        assert!(
            Clamp::new(&ClampSpec {
                min: None,
                max: None
            })
            .is_err()
        );
        assert!(
            Clamp::new(&ClampSpec {
                min: Some(f64::NAN),
                max: None
            })
            .is_err()
        );
        // min == max is a legal (if odd) constant.
        assert!(
            Clamp::new(&ClampSpec {
                min: Some(1.0),
                max: Some(1.0)
            })
            .is_ok()
        );
    }

    #[test]
    fn non_numeric_values_are_refused() {
        let c = clamp(Some(0.0), Some(1.0));
        assert!(matches!(
            c.read(Value::String("x".into())),
            Err(Problem::NotNumeric { .. })
        ));
        assert!(matches!(
            c.write(Value::Boolean(true)),
            Err(Problem::NotNumeric { .. })
        ));
    }
}
