//! `scale: {factor, offset}` — a linear conversion, e.g. a raw register to degrees.
//!
//! Read: `value × factor + offset`, always a float. Write: `(desired − offset) / factor`, also a
//! float; a result within 1e-9 (relative) of a whole number is snapped to it, because raw values
//! behind a scale are usually integer registers and, in binary floating point,
//! `25.3 / 0.1 = 252.99999999999997`.

use crate::pipeline::error::Problem;
use crate::pipeline::number::{finite, require_number};
use crate::pipeline::spec::ScaleSpec;
use crate::value::Value;

/// How close (relative) to a whole number a written value must be to be snapped to it.
const SNAP_TOLERANCE: f64 = 1e-9;

#[derive(Debug, Clone)]
pub(crate) struct Scale {
    factor: f64,
    offset: f64,
}

impl Scale {
    pub(crate) fn new(spec: &ScaleSpec) -> Result<Self, Problem> {
        if !spec.factor.is_finite() || spec.factor == 0.0 {
            return Err(Problem::config(
                "factor",
                "must be a finite number other than 0 (a scale must be reversible)",
            ));
        }
        if !spec.offset.is_finite() {
            return Err(Problem::config("offset", "must be a finite number"));
        }
        Ok(Scale {
            factor: spec.factor,
            offset: spec.offset,
        })
    }

    pub(crate) fn read(&self, value: &Value) -> Result<Value, Problem> {
        let x = require_number(value)?;
        finite(x * self.factor + self.offset).map(Value::Float)
    }

    pub(crate) fn write(&self, desired: &Value) -> Result<Value, Problem> {
        let y = require_number(desired)?;
        let raw = finite((y - self.offset) / self.factor)?;
        Ok(Value::Float(snap_to_whole(raw)))
    }
}

fn snap_to_whole(x: f64) -> f64 {
    let whole = x.round();
    if (x - whole).abs() <= SNAP_TOLERANCE * whole.abs().max(1.0) {
        whole
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn scale(factor: f64, offset: f64) -> Scale {
        Scale::new(&ScaleSpec { factor, offset }).expect("valid scale")
    }

    #[test]
    fn reads_ints_and_floats_as_scaled_floats() {
        let s = scale(0.1, -40.0);
        assert_eq!(s.read(&Value::Int(650)), Ok(Value::Float(25.0)));
        assert_eq!(s.read(&Value::Float(0.0)), Ok(Value::Float(-40.0)));
    }

    #[test]
    fn write_inverts_and_snaps_float_dust_to_the_register_value() {
        let s = scale(0.1, 0.0);
        // 25.3 / 0.1 is 252.99999999999997 in f64; the register wants 253.
        assert_eq!(s.write(&Value::Float(25.3)), Ok(Value::Float(253.0)));
        // A genuinely fractional result is left alone for the driver to judge.
        assert_eq!(s.write(&Value::Float(25.35)), Ok(Value::Float(253.5)));
        assert_eq!(scale(2.0, 1.0).write(&Value::Int(7)), Ok(Value::Float(3.0)));
    }

    #[test]
    fn factor_zero_and_non_finite_numbers_are_config_errors() {
        for (factor, offset, field) in [
            (0.0, 0.0, "factor"),
            (f64::NAN, 0.0, "factor"),
            (1.0, f64::INFINITY, "offset"),
        ] {
            let error = Scale::new(&ScaleSpec { factor, offset }).expect_err("invalid");
            assert!(
                matches!(error, Problem::Config { field: f, .. } if f == field),
                "{error}"
            );
        }
    }

    #[test]
    fn non_numeric_values_and_overflow_are_refused() {
        let s = scale(1e300, 0.0);
        assert!(matches!(
            s.read(&Value::Boolean(true)),
            Err(Problem::NotNumeric { .. })
        ));
        assert!(matches!(
            s.read(&Value::Float(1e300)),
            Err(Problem::NotFinite { .. })
        ));
        assert!(matches!(
            scale(1e-300, 0.0).write(&Value::Float(1e300)),
            Err(Problem::NotFinite { .. })
        ));
    }

    fn nonzero_factor() -> impl Strategy<Value = f64> {
        prop_oneof![-1e6..-1e-6_f64, 1e-6..1e6_f64]
    }

    proptest! {
        /// on_write(on_read(x)) ≈ x for any factor ≠ 0. The error bound: computing `x·f + o` and
        /// undoing it costs a few ulps of |x| + |o/f|, and snapping moves a result by at most
        /// 1e-9 relative.
        #[test]
        fn write_inverts_read(x in -1e9..1e9_f64, factor in nonzero_factor(), offset in -1e6..1e6_f64) {
            let s = scale(factor, offset);
            let read = s.read(&Value::Float(x)).expect("finite");
            let Value::Float(back) = s.write(&read).expect("finite") else { panic!("float expected") };
            let tolerance = 8.0 * f64::EPSILON * (x.abs() + (offset / factor).abs())
                + SNAP_TOLERANCE * x.abs().max(1.0);
            prop_assert!((back - x).abs() <= tolerance, "x={x} back={back} tolerance={tolerance}");
        }

        /// Register-style scaling (decimal factors, integer offsets, 16/17-bit raw values) comes
        /// back to exactly the same integer.
        #[test]
        fn integer_registers_round_trip_exactly(
            raw in -65_536_i64..65_536,
            mantissa in 1_i32..10,
            exponent in -3_i32..=3,
            offset in -1_000_i32..1_000,
        ) {
            let factor = f64::from(mantissa) * 10f64.powi(exponent);
            let s = scale(factor, f64::from(offset));
            let read = s.read(&Value::Int(raw)).expect("finite");
            prop_assert_eq!(s.write(&read).expect("finite"), Value::Float(raw as f64));
        }
    }
}
