//! The steps. Stateless steps (`scale`, `clamp`, `round`, `map`) transform one value and most of
//! them have an inverse for the write path. Stateful steps (`deadband`, `window`, `rateLimit`)
//! decide *whether* and *when* a value goes on; they are skipped on write.
//!
//! A stateful step never mutates while it looks at a value: `read` returns a [`Flow`] and a
//! [`Change`], and the pipeline applies the changes only once the whole pipeline has accepted the
//! sample. That keeps a sample that a later step refuses from leaving traces in earlier steps.

mod clamp;
mod deadband;
mod map;
mod rate_limit;
mod round;
mod scale;
mod window;

use super::error::Problem;
use super::spec::{StepKind, StepSpec};
use crate::value::Value;

/// What a step does with the value it is given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Flow {
    /// Passes on a value computed from the input.
    Pass(Value),
    /// Keeps the input back: suppressed, or held in a window or a rate limit.
    Hold,
    /// Keeps the input back and releases an earlier value instead (a closed window, a held value).
    Release(Value),
}

/// A state change a stateful step asks for, applied when the pipeline commits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Nothing to change.
    None,
    /// `deadband` state change.
    Deadband(deadband::Change),
    /// `window` state change.
    Window(window::Change),
    /// `rateLimit` state change.
    RateLimit(rate_limit::Change),
}

/// A built, validated step with its state.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Scale(scale::Scale),
    Clamp(clamp::Clamp),
    Round(round::Round),
    Map(map::MapStep),
    Deadband(deadband::Deadband),
    Window(window::Window),
    RateLimit(rate_limit::RateLimit),
}

impl Step {
    /// Validates a step's spec and builds the step.
    pub(crate) fn build(spec: &StepSpec) -> Result<Step, Problem> {
        Ok(match spec {
            StepSpec::Scale(s) => Step::Scale(scale::Scale::new(s)?),
            StepSpec::Clamp(s) => Step::Clamp(clamp::Clamp::new(s)?),
            StepSpec::Round(s) => Step::Round(round::Round::new(s)?),
            StepSpec::Map(s) => Step::Map(map::MapStep::new(s)?),
            StepSpec::Deadband(s) => Step::Deadband(deadband::Deadband::new(s)?),
            StepSpec::Window(s) => Step::Window(window::Window::new(s)?),
            StepSpec::RateLimit(s) => Step::RateLimit(rate_limit::RateLimit::new(s)?),
        })
    }

    /// The kind of this step.
    pub(crate) fn kind(&self) -> StepKind {
        match self {
            Step::Scale(_) => StepKind::Scale,
            Step::Clamp(_) => StepKind::Clamp,
            Step::Round(_) => StepKind::Round,
            Step::Map(_) => StepKind::Map,
            Step::Deadband(_) => StepKind::Deadband,
            Step::Window(_) => StepKind::Window,
            Step::RateLimit(_) => StepKind::RateLimit,
        }
    }

    /// Looks at a value read at `at_ms` (never earlier than any time seen before).
    pub(crate) fn read(&self, value: Value, at_ms: u64) -> Result<(Flow, Change), Problem> {
        match self {
            Step::Deadband(s) => s.read(value).map(|(f, c)| (f, Change::Deadband(c))),
            Step::Window(s) => s.read(value, at_ms).map(|(f, c)| (f, Change::Window(c))),
            Step::RateLimit(s) => {
                let (flow, change) = s.read(value, at_ms);
                Ok((flow, Change::RateLimit(change)))
            }
            Step::Scale(_) | Step::Clamp(_) | Step::Round(_) | Step::Map(_) => {
                Ok((Flow::Pass(self.convert(value)?), Change::None))
            }
        }
    }

    /// Like `read`, for a value that must be reported: filters let it pass and take it as their
    /// reference; a window passes it on without adding it (it is not one of the periodic samples).
    pub(crate) fn read_forced(&self, value: Value, at_ms: u64) -> Result<(Value, Change), Problem> {
        match self {
            Step::Deadband(s) => s.read_forced(value).map(|(v, c)| (v, Change::Deadband(c))),
            Step::RateLimit(s) => {
                let (value, change) = s.read_forced(value, at_ms);
                Ok((value, Change::RateLimit(change)))
            }
            Step::Window(_) => Ok((value, Change::None)),
            Step::Scale(_) | Step::Clamp(_) | Step::Round(_) | Step::Map(_) => {
                Ok((self.convert(value)?, Change::None))
            }
        }
    }

    /// What a stateless step makes of a value; stateful steps never change values.
    fn convert(&self, value: Value) -> Result<Value, Problem> {
        match self {
            Step::Scale(s) => s.read(&value),
            Step::Clamp(s) => s.read(value),
            Step::Round(s) => s.read(value),
            Step::Map(s) => s.read(&value),
            Step::Deadband(_) | Step::Window(_) | Step::RateLimit(_) => Ok(value),
        }
    }

    /// The value this step releases by itself at `now_ms`, if one is due.
    pub(crate) fn release_due(&self, now_ms: u64) -> Option<(Value, Change)> {
        match self {
            Step::Window(s) => s.release_due(now_ms).map(|(v, c)| (v, Change::Window(c))),
            Step::RateLimit(s) => s
                .release_due(now_ms)
                .map(|(v, c)| (v, Change::RateLimit(c))),
            _ => None,
        }
    }

    /// When this step will next release a value by itself, if it holds one.
    pub(crate) fn deadline(&self) -> Option<u64> {
        match self {
            Step::Window(s) => s.deadline(),
            Step::RateLimit(s) => s.deadline(),
            _ => None,
        }
    }

    /// Applies a change returned by `read` or `release_due` of this same step.
    pub(crate) fn apply(&mut self, change: Change) {
        match (self, change) {
            (Step::Deadband(s), Change::Deadband(c)) => s.apply(c),
            (Step::Window(s), Change::Window(c)) => s.apply(c),
            (Step::RateLimit(s), Change::RateLimit(c)) => s.apply(c),
            // `Change::None`, or a change for another kind of step, which the pipeline never
            // produces: nothing to do.
            _ => {}
        }
    }

    /// Undoes this step for a desired value on its way to the device. Stateful steps and `round`
    /// pass it through unchanged.
    pub(crate) fn write(&self, value: Value) -> Result<Value, Problem> {
        match self {
            Step::Scale(s) => s.write(&value),
            Step::Clamp(s) => s.write(value),
            Step::Map(s) => s.write(&value),
            Step::Round(_) | Step::Deadband(_) | Step::Window(_) | Step::RateLimit(_) => Ok(value),
        }
    }
}
