//! `round: {decimals}` — rounds half away from zero. With 0 decimals (the default) the result is
//! an int: `scale` always yields a float, and an `INT` property needs `round: {}` after it (the
//! twin refuses `25.3` for an int). Ints pass unchanged. Skipped on write: rounding has no inverse.

use crate::pipeline::error::Problem;
use crate::pipeline::number::require_number;
use crate::pipeline::spec::RoundSpec;
use crate::value::Value;

const MAX_DECIMALS: u8 = 15;

/// Floats at or beyond 2^63 do not fit an `i64`.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

#[derive(Debug, Clone)]
pub(crate) struct Round {
    decimals: u8,
}

impl Round {
    pub(crate) fn new(spec: &RoundSpec) -> Result<Self, Problem> {
        if spec.decimals > MAX_DECIMALS {
            return Err(Problem::config(
                "decimals",
                format!("must be between 0 and {MAX_DECIMALS}"),
            ));
        }
        Ok(Round {
            decimals: spec.decimals,
        })
    }

    pub(crate) fn read(&self, value: Value) -> Result<Value, Problem> {
        let x = require_number(&value)?;
        if let Value::Int(_) = value {
            return Ok(value);
        }
        if self.decimals == 0 {
            let whole = x.round();
            if whole.abs() >= I64_LIMIT {
                return Err(Problem::IntOverflow { value: x });
            }
            return Ok(Value::Int(whole as i64));
        }
        let scale = 10f64.powi(i32::from(self.decimals));
        let scaled = x * scale;
        // Past 2^53 an f64 has no fractional digits left to round at this scale.
        if !scaled.is_finite() || scaled.abs() >= 9_007_199_254_740_992.0 {
            return Ok(value);
        }
        Ok(Value::Float(scaled.round() / scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(decimals: u8) -> Round {
        Round::new(&RoundSpec { decimals }).expect("valid round")
    }

    #[test]
    fn zero_decimals_gives_an_int_rounding_half_away_from_zero() {
        let r = round(0);
        assert_eq!(r.read(Value::Float(25.3)), Ok(Value::Int(25)));
        assert_eq!(r.read(Value::Float(2.5)), Ok(Value::Int(3)));
        assert_eq!(r.read(Value::Float(-2.5)), Ok(Value::Int(-3)));
        assert_eq!(r.read(Value::Int(7)), Ok(Value::Int(7)));
    }

    #[test]
    fn decimals_keep_a_float_without_binary_noise_in_the_wire_form() {
        let r = round(1);
        let sum = 0.1 + 0.2; // 0.30000000000000004
        assert_eq!(
            r.read(Value::Float(sum)).map(|v| v.to_wire()),
            Ok("0.3".to_owned())
        );
        assert_eq!(
            round(2).read(Value::Float(-1.005_1)),
            Ok(Value::Float(-1.01))
        );
        // Too large to have fractional digits: unchanged.
        assert_eq!(round(3).read(Value::Float(1e300)), Ok(Value::Float(1e300)));
    }

    #[test]
    fn refuses_huge_values_for_ints_non_numbers_and_too_many_decimals() {
        assert!(matches!(
            round(0).read(Value::Float(1e19)),
            Err(Problem::IntOverflow { .. })
        ));
        assert!(matches!(
            round(0).read(Value::String("a".into())),
            Err(Problem::NotNumeric { .. })
        ));
        assert!(Round::new(&RoundSpec { decimals: 16 }).is_err());
    }
}
