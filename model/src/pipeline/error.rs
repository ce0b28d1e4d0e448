//! Pipeline errors. Every error names the step it comes from (`pipeline[2] (deadband)`), both when
//! a pipeline is built from its spec and when a value goes through it.

use std::fmt;

use super::spec::StepKind;

/// One step of a pipeline: its position in the list and its kind. Displays as
/// `pipeline[2] (deadband)`, the way a field path names it in the Device YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepRef {
    /// Position in the pipeline, from 0.
    pub index: usize,
    /// What the step does.
    pub kind: StepKind,
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipeline[{}] ({})", self.index, self.kind)
    }
}

/// A step refused its configuration or a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{step}: {problem}")]
pub struct PipelineError {
    /// The step that failed.
    pub step: StepRef,
    /// What went wrong.
    pub problem: Problem,
}

/// What went wrong in a step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The step's configuration is invalid (found when the pipeline is built).
    #[error("`{field}` {reason}")]
    Config {
        /// The offending field of the step, e.g. `factor` or `min`.
        field: &'static str,
        /// Why, e.g. "must not be 0".
        reason: String,
    },
    /// A numeric step got a value that is not a number.
    #[error("needs a number, got {type_name} {value:?}")]
    NotNumeric {
        /// The value in its wire form.
        value: String,
        /// Its type: `string`, `boolean` or `bytes`.
        type_name: &'static str,
    },
    /// A value or a result is NaN or infinite.
    #[error("{value} is not a finite number")]
    NotFinite {
        /// The value.
        value: f64,
    },
    /// A result does not fit a 64-bit integer.
    #[error("{value} does not fit a 64-bit integer")]
    IntOverflow {
        /// The value that does not fit.
        value: f64,
    },
    /// A `map` step has no entry for the value read.
    #[error("no entry for {value:?} (the map's keys are {keys})")]
    Unmapped {
        /// The value in its wire form.
        value: String,
        /// The keys of the map, comma-separated.
        keys: String,
    },
    /// On write: a desired value is outside a `clamp` step's range.
    #[error("the desired value {value} is outside the allowed range {range}")]
    OutOfRange {
        /// The desired value (in the step's units).
        value: f64,
        /// The range, e.g. `[-40, 125]` or `[0, ∞)`.
        range: String,
    },
    /// On write: no entry of a `map` step has the desired value as its label.
    #[error("no entry maps to {value:?} (the map's labels are {labels})")]
    NoInverse {
        /// The desired value in its wire form.
        value: String,
        /// The labels of the map, comma-separated.
        labels: String,
    },
    /// On write: several entries of a `map` step have the desired value as their label.
    #[error("{value:?} is the label of several keys ({keys}), so it cannot be written")]
    AmbiguousInverse {
        /// The desired value in its wire form.
        value: String,
        /// The keys that map to it, comma-separated.
        keys: String,
    },
}

impl Problem {
    /// A configuration problem with `field`.
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Problem::Config {
            field,
            reason: reason.into(),
        }
    }

    /// `first` and `second` are alternatives, but both are set.
    pub(crate) fn both_set(first: &'static str, second: &'static str) -> Self {
        Problem::config(
            first,
            format!("and `{second}` cannot both be set; choose one"),
        )
    }

    /// `first` and `second` are alternatives, and neither is set.
    pub(crate) fn neither_set(first: &'static str, second: &'static str) -> Self {
        Problem::config(first, format!("or `{second}` is required"))
    }

    /// Attaches the step this problem happened in.
    pub(crate) fn at(self, step: StepRef) -> PipelineError {
        PipelineError {
            step,
            problem: self,
        }
    }
}
