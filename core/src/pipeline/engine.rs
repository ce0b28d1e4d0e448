//! [`Pipeline`]: runs samples through the built steps and desired values back through them.

use super::error::{PipelineError, StepRef};
use super::spec::PipelineSpec;
use super::steps::{Change, Flow, Step};
use crate::model::Value;

/// A value read from a device and when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The value as read (after the driver, before the pipeline).
    pub value: Value,
    /// When it was read, in milliseconds on the caller's clock (Unix time in ms is the natural
    /// choice: time windows then align to wall-clock seconds, minutes and hours).
    pub at_ms: u64,
}

impl Sample {
    /// A sample of `value` read at `at_ms`.
    pub fn new(value: Value, at_ms: u64) -> Self {
        Sample { value, at_ms }
    }
}

/// What the pipeline made of a sample or a timer tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A value to report.
    Report {
        /// The value.
        value: Value,
        /// `None` when the value comes from this sample; otherwise the step that released a
        /// value it held earlier (a closed time window, a rate-limited value).
        released_by: Option<StepRef>,
    },
    /// Nothing to report: this step suppressed the value or holds it for later.
    Suppressed {
        /// The step that kept the value back.
        by: StepRef,
    },
}

impl Outcome {
    /// The value to report, if any.
    pub fn into_reported(self) -> Option<Value> {
        match self {
            Outcome::Report { value, .. } => Some(value),
            Outcome::Suppressed { .. } => None,
        }
    }
}

/// A property's pipeline, built from its [`PipelineSpec`], with the state of its stateful steps.
///
/// Pure: no clock, no I/O. The caller passes the time of each sample and calls [`tick`] when
/// [`next_deadline`] comes, so that held values (a closed time window, a rate-limited value) are
/// reported without waiting for the next sample.
///
/// A sample is all or nothing: when a step refuses it (a string into `scale`, an unmapped value),
/// the steps before keep the state they had, as if the sample had never been read. Time never
/// goes back: a sample older than one seen before is taken as read at the latest time seen.
///
/// [`tick`]: Pipeline::tick
/// [`next_deadline`]: Pipeline::next_deadline
#[derive(Debug, Clone)]
pub struct Pipeline {
    steps: Vec<Step>,
    latest_ms: u64,
}

/// Where a value is while a run goes through the steps.
enum Flowing {
    /// A value goes on; `released_by` is the step that released it, if it was held earlier.
    Carried {
        value: Value,
        released_by: Option<StepRef>,
    },
    /// The sample was kept back by this step (later steps may still release something).
    Held(StepRef),
    /// A tick before anything was released.
    Idle,
}

impl Pipeline {
    /// Validates the spec and builds the pipeline. Errors name the step (`pipeline[2] (window)`)
    /// and the field.
    pub fn build(spec: &PipelineSpec) -> Result<Pipeline, PipelineError> {
        let steps = spec
            .0
            .iter()
            .enumerate()
            .map(|(index, step)| {
                Step::build(step).map_err(|problem| {
                    problem.at(StepRef {
                        index,
                        kind: step.kind(),
                    })
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Pipeline {
            steps,
            latest_ms: 0,
        })
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the pipeline has no steps (every value is reported as read).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs a sample through the steps and says what to report and, if nothing, why.
    pub fn process(&mut self, sample: Sample) -> Result<Outcome, PipelineError> {
        let start = Flowing::Carried {
            value: sample.value,
            released_by: None,
        };
        Ok(match self.run(start, sample.at_ms)? {
            Flowing::Carried { value, released_by } => Outcome::Report { value, released_by },
            Flowing::Held(by) => Outcome::Suppressed { by },
            // A run only leaves `Carried` for `Held`, and `Held` only for `Carried`.
            Flowing::Idle => unreachable!("a sample ends carried or held, never idle"),
        })
    }

    /// Runs a sample through the steps; the value to report, if any.
    pub fn on_read(&mut self, sample: Sample) -> Result<Option<Value>, PipelineError> {
        self.process(sample).map(Outcome::into_reported)
    }

    /// Lets time pass to `now_ms` without a sample: steps whose deadline has come release what
    /// they hold, and it goes through the rest of the pipeline. `None` when nothing was due.
    pub fn tick(&mut self, now_ms: u64) -> Result<Option<Outcome>, PipelineError> {
        Ok(match self.run(Flowing::Idle, now_ms)? {
            Flowing::Carried { value, released_by } => Some(Outcome::Report { value, released_by }),
            Flowing::Held(by) => Some(Outcome::Suppressed { by }),
            Flowing::Idle => None,
        })
    }

    /// The earliest time at which [`tick`](Pipeline::tick) would release a held value, if any
    /// step holds one. The runtime sets its timer to this after every sample and tick.
    pub fn next_deadline(&self) -> Option<u64> {
        self.steps.iter().filter_map(Step::deadline).min()
    }

    /// Turns a desired value (as reported, e.g. `"ON"` or 25.3 °C) into the value to write to the
    /// device (e.g. 1 or 253), undoing `map` and `scale` in reverse order and checking `clamp`
    /// ranges. `round` and the stateful steps pass values through.
    pub fn on_write(&self, desired: Value) -> Result<Value, PipelineError> {
        self.steps
            .iter()
            .enumerate()
            .rev()
            .try_fold(desired, |value, (index, step)| {
                step.write(value)
                    .map_err(|problem| problem.at(step_ref(index, step)))
            })
    }

    /// The shared loop of `process` and `tick`. A value flows from step to step; where a step
    /// holds it, each later step may release what it holds by itself. State changes are applied
    /// only when the run succeeds, except that a value released on the way is consumed even when
    /// a later step refuses it (otherwise it would be refused again at every tick).
    fn run(&mut self, start: Flowing, at_ms: u64) -> Result<Flowing, PipelineError> {
        let at_ms = at_ms.max(self.latest_ms);
        self.latest_ms = at_ms;
        let mut flowing = start;
        let mut changes: Vec<(usize, Change)> = Vec::new();
        let mut releases: Vec<(usize, Change)> = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            let here = step_ref(index, step);
            flowing = match flowing {
                Flowing::Carried { value, released_by } => match step.read(value, at_ms) {
                    Ok((flow, change)) => {
                        changes.push((index, change));
                        match flow {
                            Flow::Pass(value) => Flowing::Carried { value, released_by },
                            Flow::Hold => Flowing::Held(here),
                            Flow::Release(value) => Flowing::Carried {
                                value,
                                released_by: Some(here),
                            },
                        }
                    }
                    Err(problem) => {
                        self.commit(releases);
                        return Err(problem.at(here));
                    }
                },
                kept_back @ (Flowing::Held(_) | Flowing::Idle) => match step.release_due(at_ms) {
                    Some((value, change)) => {
                        releases.push((index, change));
                        Flowing::Carried {
                            value,
                            released_by: Some(here),
                        }
                    }
                    None => kept_back,
                },
            };
        }
        changes.append(&mut releases);
        self.commit(changes);
        Ok(flowing)
    }

    fn commit(&mut self, changes: Vec<(usize, Change)>) {
        for (index, change) in changes {
            if let Some(step) = self.steps.get_mut(index) {
                step.apply(change);
            }
        }
    }
}

fn step_ref(index: usize, step: &Step) -> StepRef {
    StepRef {
        index,
        kind: step.kind(),
    }
}
