//! Numeric views of [`Value`]s for the numeric steps. Lives here rather than on `Value` because the
//! pipeline is the only user and `model` belongs to another piece of work.

use std::cmp::Ordering;

use super::error::Problem;
use crate::value::Value;

/// The largest magnitude below which every integer is exactly representable as an `f64` (2^53).
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The type name of a value, as the DeviceModel spells types in lower case.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::String(_) => "string",
        Value::Boolean(_) => "boolean",
        Value::Bytes(_) => "bytes",
    }
}

/// The number in an `Int` or `Float` value, `None` for other types. Integers beyond ±2^53 are
/// rounded to the nearest `f64`.
pub(crate) fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(x) => Some(*x),
        _ => None,
    }
}

/// The finite number in a value, or the problem a numeric step reports.
pub(crate) fn require_number(value: &Value) -> Result<f64, Problem> {
    match as_number(value) {
        Some(x) => finite(x),
        None => Err(Problem::NotNumeric {
            value: value.to_wire(),
            type_name: type_name(value),
        }),
    }
}

/// `x` if it is finite, else [`Problem::NotFinite`].
pub(crate) fn finite(x: f64) -> Result<f64, Problem> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Problem::NotFinite { value: x })
    }
}

/// `x` as an `i64` when it is a whole number in range, else `None`.
pub(crate) fn as_whole_i64(x: f64) -> Option<i64> {
    (x.fract() == 0.0 && x.abs() < EXACT_INT_LIMIT).then_some(x as i64)
}

/// Compares two numeric values: integers exactly, anything else as `f64`. Non-numeric values
/// compare as 0 (callers check types first).
pub(crate) fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        _ => {
            let x = as_number(a).unwrap_or(0.0);
            let y = as_number(b).unwrap_or(0.0);
            x.total_cmp(&y)
        }
    }
}

/// A bound (of a clamp) as a value of the same kind as `like`: an `Int` stays an `Int` when the
/// bound is a whole number, otherwise the result is a `Float`.
pub(crate) fn bound_like(bound: f64, like: &Value) -> Value {
    match (like, as_whole_i64(bound)) {
        (Value::Int(_), Some(i)) => Value::Int(i),
        _ => Value::Float(bound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_from_ints_and_floats_only() {
        assert_eq!(as_number(&Value::Int(-3)), Some(-3.0));
        assert_eq!(as_number(&Value::Float(0.5)), Some(0.5));
        assert_eq!(as_number(&Value::Boolean(true)), None);
        assert_eq!(as_number(&Value::String("1".into())), None);
    }

    #[test]
    fn require_number_names_the_type_and_rejects_non_finite() {
        assert_eq!(
            require_number(&Value::String("on".into())),
            Err(Problem::NotNumeric {
                value: "on".into(),
                type_name: "string"
            })
        );
        assert_eq!(
            require_number(&Value::Bytes(b"x".to_vec())).map_err(|p| p.to_string()),
            Err("needs a number, got bytes \"x\"".to_owned())
        );
        assert!(matches!(
            require_number(&Value::Float(f64::NAN)),
            Err(Problem::NotFinite { .. })
        ));
        assert_eq!(require_number(&Value::Int(7)), Ok(7.0));
    }

    #[test]
    fn compares_ints_exactly_and_mixed_values_as_floats() {
        // Adjacent integers beyond 2^53 are equal as f64 but not as i64.
        let big = Value::Int(i64::MAX);
        let below = Value::Int(i64::MAX - 1);
        assert_eq!(compare(&big, &below), Ordering::Greater);
        assert_eq!(compare(&Value::Int(2), &Value::Float(2.5)), Ordering::Less);
    }

    #[test]
    fn bounds_keep_int_values_int_when_whole() {
        assert_eq!(bound_like(125.0, &Value::Int(200)), Value::Int(125));
        assert_eq!(bound_like(0.5, &Value::Int(0)), Value::Float(0.5));
        assert_eq!(bound_like(125.0, &Value::Float(200.0)), Value::Float(125.0));
        assert_eq!(as_whole_i64(1e300), None);
    }
}
