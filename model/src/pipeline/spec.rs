//! The pipeline as declared in YAML: `spec.properties[].pipeline` of a Device, a list of steps.
//!
//! Each step is an object with exactly one key naming its kind:
//!
//! ```yaml
//! pipeline:
//! - scale: {factor: 0.1, offset: -40}
//! - clamp: {min: -40, max: 125}
//! - deadband: {absolute: 0.5}
//! - window: {size: 10, aggregate: mean}
//! - rateLimit: {minInterval: 500ms}
//! - round: {decimals: 1}
//! - map: {"0": "OFF", "1": "ON"}
//! ```
//!
//! In Rust a step is the enum [`StepSpec`]; on the wire (and in the JSON schema) it is an object
//! with one optional property per kind, because a Kubernetes structural schema admits no untyped
//! `oneOf`. "Exactly one key" is checked when the YAML is read, with the YAML's line and column.
//! Values are checked by [`Pipeline::build`](super::Pipeline::build), naming the step.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DurationSpec;

/// A property's pipeline: the steps a value read from the device goes through, in order, before it
/// is reported. On write the reversible steps are undone in reverse order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct PipelineSpec(pub Vec<StepSpec>);

/// One step of a pipeline: in YAML an object with exactly one of the keys `scale`, `clamp`,
/// `round`, `deadband`, `window`, `rateLimit`, `map`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "StepObject", into = "StepObject")]
pub enum StepSpec {
    /// `scale: {factor, offset}`: reports `value × factor + offset`.
    Scale(ScaleSpec),
    /// `clamp: {min, max}`: limits values read to a range; refuses desired values outside it.
    Clamp(ClampSpec),
    /// `round: {decimals}`: rounds to a number of decimals (0 gives an int).
    Round(RoundSpec),
    /// `deadband: {absolute}` / `{percent}` / `{}`: reports only changes bigger than the band.
    Deadband(DeadbandSpec),
    /// `window: {size | period, aggregate, mode}`: aggregates several samples into one value.
    Window(WindowSpec),
    /// `rateLimit: {maxPerSecond}` / `{minInterval}`: at most one value per interval.
    RateLimit(RateLimitSpec),
    /// `map: {"0": "OFF", "1": "ON"}`: replaces values by labels; labels map back on write.
    Map(MapSpec),
}

/// The kind of a step: the key it is written under in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// `scale`
    Scale,
    /// `clamp`
    Clamp,
    /// `round`
    Round,
    /// `deadband`
    Deadband,
    /// `window`
    Window,
    /// `rateLimit`
    RateLimit,
    /// `map`
    Map,
}

impl StepKind {
    /// The YAML key of this kind.
    pub fn key(self) -> &'static str {
        match self {
            StepKind::Scale => "scale",
            StepKind::Clamp => "clamp",
            StepKind::Round => "round",
            StepKind::Deadband => "deadband",
            StepKind::Window => "window",
            StepKind::RateLimit => "rateLimit",
            StepKind::Map => "map",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl StepSpec {
    /// The kind of this step.
    pub fn kind(&self) -> StepKind {
        match self {
            StepSpec::Scale(_) => StepKind::Scale,
            StepSpec::Clamp(_) => StepKind::Clamp,
            StepSpec::Round(_) => StepKind::Round,
            StepSpec::Deadband(_) => StepKind::Deadband,
            StepSpec::Window(_) => StepKind::Window,
            StepSpec::RateLimit(_) => StepKind::RateLimit,
            StepSpec::Map(_) => StepKind::Map,
        }
    }
}

/// `scale`: on read `value × factor + offset` (always a float); on write the inverse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    /// Multiplier; must not be 0 (the step must be reversible). Default 1.
    #[serde(default = "one")]
    pub factor: f64,
    /// Added after multiplying. Default 0.
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

/// `clamp`: on read values below `min` become `min` and above `max` become `max`; on write a
/// desired value outside `[min, max]` is refused. At least one bound is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClampSpec {
    /// Lower bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// `round`: rounds half away from zero to `decimals` decimals; with 0 decimals (the default) the
/// result is an int, which is how a scaled value fits an `INT` property. Skipped on write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoundSpec {
    /// Decimals to keep, 0 to 15. Default 0.
    #[serde(default)]
    #[schemars(range(max = 15))]
    pub decimals: u8,
}

/// `deadband`: a value is reported only when it differs from the last value this step passed on
/// by more than the band. `{}` reports on any change (and is what non-numeric values get).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadbandSpec {
    /// Band in the value's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub absolute: Option<f64>,
    /// Band as a percentage of the last value passed on (`1` means 1 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub percent: Option<f64>,
}

/// `window`: aggregates samples over the last `size` samples or over a `period` of time.
/// Exactly one of `size` and `period`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WindowSpec {
    /// Number of samples per window (1 to 100 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub size: Option<u32>,
    /// Length of a window in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<DurationSpec>,
    /// How the samples of a window become one value.
    pub aggregate: Aggregate,
    /// Tumbling (default: one value per window) or sliding (one value per sample).
    #[serde(default)]
    pub mode: WindowMode,
}

/// How a window's samples become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Aggregate {
    /// The smallest sample (keeps its type).
    Min,
    /// The largest sample (keeps its type).
    Max,
    /// The arithmetic mean (a float).
    Mean,
    /// The sum (an int when every sample is an int and it fits, else a float).
    Sum,
    /// The most recent sample; works for any type (down-sampling).
    Last,
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Mean => "mean",
            Aggregate::Sum => "sum",
            Aggregate::Last => "last",
        })
    }
}

/// Whether windows follow each other or slide with every sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowMode {
    /// Windows follow each other without overlap; one value per window.
    #[default]
    Tumbling,
    /// A moving window over the most recent samples; one value per sample.
    Sliding,
}

/// `rateLimit`: at most one value per interval; the latest value kept back is released when the
/// interval is over. Exactly one of `maxPerSecond` and `minInterval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Values per second (may be fractional: 0.2 is one every 5 s); at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1_000))]
    pub max_per_second: Option<f64>,
    /// Shortest time between two values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<DurationSpec>,
}

/// `map`: raw value (its wire form, e.g. `"0"`, `"true"`) → label. Quote both sides in YAML:
/// Kubernetes reads unquoted `ON`/`OFF` as booleans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MapSpec(pub BTreeMap<String, String>);

/// The YAML/JSON shape of a step: one optional property per kind, exactly one of them set.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StepObject {
    /// `value × factor + offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<ScaleSpec>,
    /// Limit to `[min, max]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clamp: Option<ClampSpec>,
    /// Round to `decimals`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    round: Option<RoundSpec>,
    /// Report only changes bigger than a band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadband: Option<DeadbandSpec>,
    /// Aggregate over samples or time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<WindowSpec>,
    /// At most one value per interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimitSpec>,
    /// Replace values by labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    map: Option<MapSpec>,
}

impl TryFrom<StepObject> for StepSpec {
    type Error = String;

    fn try_from(object: StepObject) -> Result<Self, Self::Error> {
        let StepObject {
            scale,
            clamp,
            round,
            deadband,
            window,
            rate_limit,
            map,
        } = object;
        let mut steps: Vec<StepSpec> = [
            scale.map(StepSpec::Scale),
            clamp.map(StepSpec::Clamp),
            round.map(StepSpec::Round),
            deadband.map(StepSpec::Deadband),
            window.map(StepSpec::Window),
            rate_limit.map(StepSpec::RateLimit),
            map.map(StepSpec::Map),
        ]
        .into_iter()
        .flatten()
        .collect();
        match steps.len() {
            1 => Ok(steps.remove(0)),
            0 => Err(format!(
                "a pipeline step needs one of the keys {}",
                ALL_KINDS.map(StepKind::key).join(", ")
            )),
            _ => Err(format!(
                "a pipeline step has exactly one key, found {}; write each step as its own list item",
                steps
                    .iter()
                    .map(|s| s.kind().key())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
}

const ALL_KINDS: [StepKind; 7] = [
    StepKind::Scale,
    StepKind::Clamp,
    StepKind::Round,
    StepKind::Deadband,
    StepKind::Window,
    StepKind::RateLimit,
    StepKind::Map,
];

impl From<StepSpec> for StepObject {
    fn from(step: StepSpec) -> Self {
        let mut object = StepObject::default();
        match step {
            StepSpec::Scale(s) => object.scale = Some(s),
            StepSpec::Clamp(s) => object.clamp = Some(s),
            StepSpec::Round(s) => object.round = Some(s),
            StepSpec::Deadband(s) => object.deadband = Some(s),
            StepSpec::Window(s) => object.window = Some(s),
            StepSpec::RateLimit(s) => object.rate_limit = Some(s),
            StepSpec::Map(s) => object.map = Some(s),
        }
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<PipelineSpec, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_kind_of_step() {
        let spec = parse(
            r#"
- scale: {factor: 0.1, offset: -40}
- clamp: {min: -40, max: 125}
- round: {decimals: 1}
- deadband: {percent: 1}
- window: {period: 30s, aggregate: max, mode: sliding}
- rateLimit: {minInterval: 500}
- map: {"0": "OFF", "1": "ON"}
"#,
        )
        .expect("valid pipeline");
        let expected = PipelineSpec(vec![
            StepSpec::Scale(ScaleSpec {
                factor: 0.1,
                offset: -40.0,
            }),
            StepSpec::Clamp(ClampSpec {
                min: Some(-40.0),
                max: Some(125.0),
            }),
            StepSpec::Round(RoundSpec { decimals: 1 }),
            StepSpec::Deadband(DeadbandSpec {
                absolute: None,
                percent: Some(1.0),
            }),
            StepSpec::Window(WindowSpec {
                size: None,
                period: Some(DurationSpec::from_millis(30_000)),
                aggregate: Aggregate::Max,
                mode: WindowMode::Sliding,
            }),
            StepSpec::RateLimit(RateLimitSpec {
                max_per_second: None,
                min_interval: Some(DurationSpec::from_millis(500)),
            }),
            StepSpec::Map(MapSpec(BTreeMap::from([
                ("0".to_owned(), "OFF".to_owned()),
                ("1".to_owned(), "ON".to_owned()),
            ]))),
        ]);
        assert_eq!(spec, expected);
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let spec =
            parse("- scale: {offset: 3}\n- round: {}\n- window: {size: 4, aggregate: mean}\n")
                .expect("valid pipeline");
        assert_eq!(
            spec.0,
            vec![
                StepSpec::Scale(ScaleSpec {
                    factor: 1.0,
                    offset: 3.0
                }),
                StepSpec::Round(RoundSpec { decimals: 0 }),
                StepSpec::Window(WindowSpec {
                    size: Some(4),
                    period: None,
                    aggregate: Aggregate::Mean,
                    mode: WindowMode::Tumbling,
                }),
            ]
        );
    }

    #[test]
    fn a_step_with_no_key_or_two_keys_is_refused_with_its_line() {
        let none = parse("- scale: {factor: 2}\n- {}\n").expect_err("empty step");
        assert!(none.contains("line 2"), "{none}");
        assert!(
            none.contains(
                "needs one of the keys scale, clamp, round, deadband, window, rateLimit, map"
            ),
            "{none}"
        );
        let two = parse("- scale: {factor: 2}\n  clamp: {min: 0}\n").expect_err("two keys");
        assert!(two.contains("found scale and clamp"), "{two}");
    }

    #[test]
    fn typos_are_refused_with_the_known_keys() {
        let error = parse("- scael: {factor: 2}\n").expect_err("typo in kind");
        assert!(error.contains("unknown field `scael`"), "{error}");
        assert!(error.contains("rateLimit"), "{error}");
        let error = parse("- window: {size: 2, aggregate: median}\n").expect_err("bad aggregate");
        assert!(error.contains("median"), "{error}");
        let error = parse("- rateLimit: {minInterval: 5 s}\n").expect_err("bad duration");
        assert!(error.contains("invalid duration"), "{error}");
    }

    #[test]
    fn serialises_back_to_the_same_shape() {
        let yaml = r#"
- scale: {factor: 2, offset: 1}
- window: {period: 90s, aggregate: last}
- rateLimit: {maxPerSecond: 2}
- map: {"true": "ON", "false": "OFF"}
"#;
        let spec = parse(yaml).expect("valid pipeline");
        let json = serde_json::to_value(&spec).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!([
                {"scale": {"factor": 2.0, "offset": 1.0}},
                {"window": {"period": "90s", "aggregate": "last", "mode": "tumbling"}},
                {"rateLimit": {"maxPerSecond": 2.0}},
                {"map": {"false": "OFF", "true": "ON"}},
            ])
        );
        let back: PipelineSpec = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, spec);
    }
}
