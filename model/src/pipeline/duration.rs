//! Durations in pipeline YAML: an integer number of milliseconds (`500`) or a string with units
//! (`"500ms"`, `"30s"`, `"1m30s"`, `"1.5h"`), as Go's `time.ParseDuration` spells them, so
//! KubeEdge users can write what they already know.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;

/// A duration with millisecond resolution, as written in a pipeline step.
///
/// Serialises to its shortest exact string (`"30s"`, `"1500ms"`, `"2h"`); deserialises from an
/// integer (milliseconds) or such a string. In the CRD schema it is
/// `x-kubernetes-int-or-string`, the one int-or-string form a structural schema allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationSpec {
    millis: u64,
}

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (write e.g. 500ms, 30s, 1m30s, 2h, or an integer number of milliseconds)"
)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationSpec {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        DurationSpec { millis }
    }

    /// The duration in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }
}

impl FromStr for DurationSpec {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.starts_with('-') {
            return Err(fail("it is negative"));
        }
        let mut rest = text;
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number = &rest[..number_len];
            rest = &rest[number_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit_ms = match &rest[..unit_len] {
                "ms" => 1,
                "s" => MS_PER_SECOND,
                "m" => MS_PER_MINUTE,
                "h" => MS_PER_HOUR,
                "" => return Err(fail("a unit is missing")),
                _ => return Err(fail("the unit is not one of ms, s, m, h")),
            };
            rest = &rest[unit_len..];
            let part = millis_of(number, unit_ms).map_err(fail)?;
            total = total
                .checked_add(part)
                .filter(|&t| t <= MAX_MILLIS)
                .ok_or_else(|| fail("it is too large"))?;
        }
        Ok(DurationSpec::from_millis(total))
    }
}

/// The largest duration accepted: far beyond any useful interval, and small enough that adding it
/// to a Unix time in milliseconds cannot overflow.
const MAX_MILLIS: u64 = u64::MAX / 4;

/// `number` (decimal digits with at most one `.`) times `unit_ms`, exactly, in whole milliseconds.
fn millis_of(number: &str, unit_ms: u64) -> Result<u64, &'static str> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let fraction = fraction.trim_end_matches('0');
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !number.bytes().any(|b| b.is_ascii_digit()) || !digits_ok(whole) || !digits_ok(fraction) {
        return Err("expected a number");
    }
    let too_large = "it is too large";
    let whole_ms = if whole.is_empty() {
        0
    } else {
        whole
            .parse::<u64>()
            .map_err(|_| too_large)?
            .checked_mul(unit_ms)
            .ok_or(too_large)?
    };
    if fraction.is_empty() {
        return Ok(whole_ms);
    }
    // A fraction longer than 18 digits cannot come to whole milliseconds with our units.
    let not_whole = "it is not a whole number of milliseconds";
    let scale = u32::try_from(fraction.len())
        .ok()
        .filter(|&n| n <= 18)
        .map(|n| 10u128.pow(n))
        .ok_or(not_whole)?;
    let numerator = fraction.parse::<u128>().map_err(|_| not_whole)? * u128::from(unit_ms);
    if numerator % scale != 0 {
        return Err(not_whole);
    }
    let fraction_ms = u64::try_from(numerator / scale).map_err(|_| too_large)?;
    whole_ms.checked_add(fraction_ms).ok_or(too_large)
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        match ms {
            0 => f.write_str("0ms"),
            _ if ms.is_multiple_of(MS_PER_HOUR) => write!(f, "{}h", ms / MS_PER_HOUR),
            _ if ms.is_multiple_of(MS_PER_MINUTE) => write!(f, "{}m", ms / MS_PER_MINUTE),
            _ if ms.is_multiple_of(MS_PER_SECOND) => write!(f, "{}s", ms / MS_PER_SECOND),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = DurationSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a duration: milliseconds as an integer, or a string such as \"500ms\" or \"30s\"",
        )
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Self::Value, E> {
        Ok(DurationSpec::from_millis(ms))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Self::Value, E> {
        u64::try_from(ms)
            .map(DurationSpec::from_millis)
            .map_err(|_| E::custom(format!("invalid duration {ms}: it is negative")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        text.parse().map_err(E::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Milliseconds as an integer, or a string with units ms, s, m, h (e.g. \"500ms\", \"30s\", \"1m30s\").",
            "x-kubernetes-int-or-string": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Result<u64, DurationError> {
        text.parse::<DurationSpec>().map(DurationSpec::as_millis)
    }

    #[test]
    fn parses_go_style_units_and_compounds() {
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms(" 1h0m0.25s "), Ok(3_600_250));
        assert_eq!(ms("0s"), Ok(0));
        // Decimal fractions are exact: 1.001 s is 1001 ms, not 1000.9999… in floating point.
        assert_eq!(ms("1.001s"), Ok(1_001));
        assert_eq!(ms("0.3s"), Ok(300));
        assert_eq!(ms(".5s"), Ok(500));
    }

    #[test]
    fn rejects_what_is_not_a_duration_with_a_reason() {
        for (input, reason) in [
            ("", "it is empty"),
            ("500", "a unit is missing"),
            ("5 s", "the unit is not one of ms, s, m, h"),
            ("10us", "the unit is not one of ms, s, m, h"),
            ("-5s", "it is negative"),
            ("s", "expected a number"),
            ("1.2.3s", "expected a number"),
            ("1.5ms", "it is not a whole number of milliseconds"),
            ("0.0001s", "it is not a whole number of milliseconds"),
            ("99999999999999999999h", "it is too large"),
        ] {
            let error = ms(input).expect_err(input);
            assert_eq!(error.reason, reason, "{input:?}");
            assert!(error.to_string().contains("500ms, 30s"), "{error}");
        }
    }

    #[test]
    fn displays_the_shortest_exact_form_and_round_trips() {
        for (millis, text) in [
            (0, "0ms"),
            (250, "250ms"),
            (1_500, "1500ms"),
            (30_000, "30s"),
            (90_000, "90s"),
            (120_000, "2m"),
            (7_200_000, "2h"),
        ] {
            let duration = DurationSpec::from_millis(millis);
            assert_eq!(duration.to_string(), text);
            assert_eq!(text.parse(), Ok(duration));
        }
    }

    #[test]
    fn deserialises_integers_as_milliseconds_and_strings_with_units() {
        let from_int: DurationSpec = serde_saphyr::from_str("750").expect("integer");
        assert_eq!(from_int.as_millis(), 750);
        let from_str: DurationSpec = serde_saphyr::from_str("\"2s\"").expect("string");
        assert_eq!(from_str.as_millis(), 2_000);
        let negative = serde_saphyr::from_str::<DurationSpec>("-3").expect_err("negative");
        assert!(negative.to_string().contains("negative"), "{negative}");
        let json = serde_json::to_string(&DurationSpec::from_millis(1_000)).expect("serialise");
        assert_eq!(json, "\"1s\"");
    }
}
