//! [`Pipeline`]: runs samples through the built steps and desired values back through them.

use super::error::{PipelineError, StepRef};
use super::spec::PipelineSpec;
use super::steps::{Change, Flow, Step};
use crate::value::Value;

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

    /// Runs a sample that must be reported whatever the filters say: the read-back after a write
    /// (so the twin's reported value confirms the desired one even within a deadband), or a
    /// heartbeat. Values are converted as usual; `deadband` and `rateLimit` let it pass and take it
    /// as their reference; a `window` passes it on without adding it to its samples.
    pub fn report_now(&mut self, sample: Sample) -> Result<Value, PipelineError> {
        let at_ms = self.advance_clock(sample.at_ms);
        let mut value = sample.value;
        let mut changes = Vec::with_capacity(self.steps.len());
        for (index, step) in self.steps.iter().enumerate() {
            let (next, change) = step
                .read_forced(value, at_ms)
                .map_err(|problem| problem.at(step_ref(index, step)))?;
            value = next;
            changes.push((index, change));
        }
        self.commit(changes);
        Ok(value)
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
        let at_ms = self.advance_clock(at_ms);
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

    /// The time to use for an event at `at_ms`: never earlier than one seen before.
    fn advance_clock(&mut self, at_ms: u64) -> u64 {
        self.latest_ms = self.latest_ms.max(at_ms);
        self.latest_ms
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StepKind;

    fn pipeline(yaml: &str) -> Pipeline {
        let spec: PipelineSpec = serde_saphyr::from_str(yaml).expect("valid YAML");
        Pipeline::build(&spec).expect("valid pipeline")
    }

    fn at(step: usize, kind: StepKind) -> StepRef {
        StepRef { index: step, kind }
    }

    fn report(value: Value) -> Outcome {
        Outcome::Report {
            value,
            released_by: None,
        }
    }

    #[test]
    fn an_empty_pipeline_reports_every_value_as_read() {
        let mut p = Pipeline::build(&PipelineSpec::default()).expect("empty is valid");
        assert!(p.is_empty());
        let sample = Sample::new(Value::String("x".into()), 1);
        assert_eq!(p.process(sample), Ok(report(Value::String("x".into()))));
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.tick(u64::MAX), Ok(None));
        assert_eq!(p.on_write(Value::Int(3)), Ok(Value::Int(3)));
    }

    #[test]
    fn build_errors_name_the_step_and_the_field() {
        let spec: PipelineSpec =
            serde_saphyr::from_str("- scale: {factor: 2}\n- window: {size: 0, aggregate: mean}\n")
                .expect("valid YAML");
        let error = Pipeline::build(&spec).expect_err("size 0");
        assert_eq!(error.step, at(1, StepKind::Window));
        assert_eq!(
            error.to_string(),
            "pipeline[1] (window): `size` must be between 1 and 100000"
        );
    }

    #[test]
    fn a_temperature_register_is_scaled_limited_rounded_and_deadbanded() {
        let mut p = pipeline(
            "- scale: {factor: 0.1, offset: -40}\n\
             - clamp: {min: -40, max: 125}\n\
             - round: {decimals: 1}\n\
             - deadband: {absolute: 0.5}\n",
        );
        let mut read = |raw: i64, t: u64| p.process(Sample::new(Value::Int(raw), t));
        assert_eq!(read(653, 0), Ok(report(Value::Float(25.3))));
        assert_eq!(
            read(655, 1_000),
            Ok(Outcome::Suppressed {
                by: at(3, StepKind::Deadband)
            })
        );
        assert_eq!(read(659, 2_000), Ok(report(Value::Float(25.9))));
        // Far above the sensor's range: clamped to 125.
        assert_eq!(read(5_000, 3_000), Ok(report(Value::Float(125.0))));
    }

    #[test]
    fn an_int_property_gets_ints_from_scale_followed_by_round() {
        // `scale` yields floats; 25.3 would not be a valid INT, `round: {}` makes it 25.
        let mut p = pipeline("- scale: {factor: 0.1}\n- round: {}\n");
        assert_eq!(
            p.on_read(Sample::new(Value::Int(253), 0)),
            Ok(Some(Value::Int(25)))
        );
        assert_eq!(
            p.on_read(Sample::new(Value::Int(255), 1)),
            Ok(Some(Value::Int(26)))
        );
        // On write, round passes the desired int through and scale inverts it.
        assert_eq!(p.on_write(Value::Int(25)), Ok(Value::Float(250.0)));
    }

    #[test]
    fn write_undoes_map_and_scale_in_reverse_order_and_checks_clamp() {
        let p = pipeline(
            "- scale: {factor: 0.1, offset: -40}\n\
             - clamp: {min: -40, max: 125}\n\
             - round: {decimals: 1}\n\
             - deadband: {absolute: 0.5}\n",
        );
        assert_eq!(p.on_write(Value::Float(25.3)), Ok(Value::Float(653.0)));
        let error = p.on_write(Value::Int(130)).expect_err("above the clamp");
        assert_eq!(
            error.to_string(),
            "pipeline[1] (clamp): the desired value 130 is outside the allowed range [-40, 125]"
        );

        let lamp = pipeline("- scale: {factor: 2}\n- map: {\"0\": \"OFF\", \"2\": \"ON\"}\n");
        assert_eq!(
            lamp.on_write(Value::String("ON".into())),
            Ok(Value::Float(1.0))
        );
        let mut lamp = lamp;
        assert_eq!(
            lamp.on_read(Sample::new(Value::Int(1), 0)),
            Ok(Some(Value::String("ON".into())))
        );
    }

    #[test]
    fn runtime_errors_name_the_step_and_kind() {
        let mut p = pipeline("- map: {\"0\": \"OFF\", \"1\": \"ON\"}\n- scale: {factor: 2}\n");
        let error = p
            .process(Sample::new(Value::Int(1), 0))
            .expect_err("a label is not a number");
        assert_eq!(
            error.to_string(),
            "pipeline[1] (scale): needs a number, got string \"ON\""
        );
    }

    #[test]
    fn a_refused_sample_leaves_earlier_steps_as_they_were() {
        let mut p = pipeline("- deadband: {}\n- map: {\"0\": \"OFF\", \"1\": \"ON\"}\n");
        let mut read = |raw: i64| p.process(Sample::new(Value::Int(raw), 0));
        assert_eq!(read(1), Ok(report(Value::String("ON".into()))));
        assert_eq!(read(0), Ok(report(Value::String("OFF".into()))));
        let error = read(2).expect_err("2 is not in the map");
        assert_eq!(error.step, at(1, StepKind::Map));
        // Had the deadband taken 2 as its reference, 0 would count as a change.
        assert_eq!(
            read(0),
            Ok(Outcome::Suppressed {
                by: at(0, StepKind::Deadband)
            })
        );
    }

    #[test]
    fn tick_releases_held_values_when_their_deadline_comes() {
        let mut p = pipeline("- rateLimit: {minInterval: 1s}\n");
        let mut read = |raw: i64, t: u64| p.on_read(Sample::new(Value::Int(raw), t));
        assert_eq!(read(1, 0), Ok(Some(Value::Int(1))));
        assert_eq!(read(2, 100), Ok(None));
        assert_eq!(read(3, 200), Ok(None));
        assert_eq!(p.next_deadline(), Some(1_000));
        assert_eq!(p.tick(999), Ok(None));
        assert_eq!(
            p.tick(1_000),
            Ok(Some(Outcome::Report {
                value: Value::Int(3),
                released_by: Some(at(0, StepKind::RateLimit)),
            }))
        );
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.tick(5_000), Ok(None));
    }

    #[test]
    fn a_sample_also_releases_what_later_steps_hold() {
        // The deadband suppresses the sample at 1500, but by then the rate limit's held value is
        // due: the sample's run releases it.
        let mut p = pipeline("- deadband: {absolute: 5}\n- rateLimit: {minInterval: 1s}\n");
        p.on_read(Sample::new(Value::Int(0), 0)).expect("numeric");
        assert_eq!(
            p.process(Sample::new(Value::Int(10), 100)),
            Ok(Outcome::Suppressed {
                by: at(1, StepKind::RateLimit)
            })
        );
        assert_eq!(
            p.process(Sample::new(Value::Int(12), 1_500)),
            Ok(Outcome::Report {
                value: Value::Int(10),
                released_by: Some(at(1, StepKind::RateLimit)),
            })
        );
    }

    #[test]
    fn a_closed_window_goes_through_the_steps_after_it() {
        let mut p = pipeline(
            "- window: {period: 1s, aggregate: mean}\n\
             - deadband: {absolute: 1}\n",
        );
        for (raw, t) in [(10, 0), (20, 500)] {
            p.on_read(Sample::new(Value::Int(raw), t)).expect("numeric");
        }
        assert_eq!(p.next_deadline(), Some(1_000));
        let window = Some(at(0, StepKind::Window));
        assert_eq!(
            p.tick(1_000),
            Ok(Some(Outcome::Report {
                value: Value::Float(15.0),
                released_by: window
            }))
        );
        for (raw, t) in [(15, 1_100), (16, 1_200)] {
            p.on_read(Sample::new(Value::Int(raw), t)).expect("numeric");
        }
        // Mean 15.5 is within the deadband of 15: released by the window, suppressed after it.
        assert_eq!(
            p.tick(2_000),
            Ok(Some(Outcome::Suppressed {
                by: at(1, StepKind::Deadband)
            }))
        );
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn a_released_value_that_a_later_step_refuses_is_consumed() {
        let mut p = pipeline("- rateLimit: {minInterval: 1s}\n- map: {\"1\": \"ON\"}\n");
        p.on_read(Sample::new(Value::Int(1), 0)).expect("mapped");
        assert_eq!(p.on_read(Sample::new(Value::Int(7), 10)), Ok(None));
        let error = p.tick(1_000).expect_err("7 is not in the map");
        assert_eq!(error.step, at(1, StepKind::Map));
        // Otherwise every tick would fail again on the same value.
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.tick(2_000), Ok(None));
    }

    #[test]
    fn report_now_gets_a_read_back_past_the_filters_and_makes_it_the_reference() {
        let mut p = pipeline(
            "- scale: {factor: 0.1}\n\
             - deadband: {absolute: 0.5}\n\
             - rateLimit: {minInterval: 10s}\n\
             - window: {size: 3, aggregate: mean, mode: sliding}\n",
        );
        assert_eq!(
            p.on_read(Sample::new(Value::Int(251), 0)),
            Ok(Some(Value::Float(25.1)))
        );
        // 26.0 passes the deadband but the rate limit holds it until 10 s.
        assert_eq!(p.on_read(Sample::new(Value::Int(260), 50)), Ok(None));
        // The desired 25.8 was written; a plain read of it is within the deadband of 26.0…
        assert_eq!(p.on_read(Sample::new(Value::Int(258), 100)), Ok(None));
        // …but its read-back must reach the twin, and supersedes the held 26.0.
        let read_back = p.report_now(Sample::new(Value::Int(258), 200));
        assert_eq!(read_back, Ok(Value::Float(25.8)));
        assert_eq!(p.next_deadline(), None);
        // The window did not take the read-back: its mean is still over the periodic samples.
        assert_eq!(
            p.on_read(Sample::new(Value::Int(300), 10_200)),
            Ok(Some(Value::Float(27.55)))
        );
        let error = p
            .report_now(Sample::new(Value::String("x".into()), 10_300))
            .expect_err("not a number");
        assert_eq!(error.step, at(0, StepKind::Scale));
    }

    #[test]
    fn time_never_goes_back() {
        let mut p = pipeline("- rateLimit: {minInterval: 1s}\n");
        assert_eq!(
            p.on_read(Sample::new(Value::Int(1), 5_000)),
            Ok(Some(Value::Int(1)))
        );
        // A clock stepped back to 1000 counts as 5000: still within the interval.
        assert_eq!(p.on_read(Sample::new(Value::Int(2), 1_000)), Ok(None));
        assert_eq!(p.next_deadline(), Some(6_000));
    }

    #[test]
    fn next_deadline_is_the_earliest_of_the_steps() {
        let mut p = pipeline(
            "- rateLimit: {minInterval: 10s}\n\
             - window: {period: 1s, aggregate: last}\n",
        );
        p.on_read(Sample::new(Value::Int(1), 0)).expect("any type");
        // The window holds 1 until 1000.
        assert_eq!(p.next_deadline(), Some(1_000));
        p.on_read(Sample::new(Value::Int(2), 500))
            .expect("any type");
        // The rate limit holds 2 until 10000; the window still ends at 1000.
        assert_eq!(p.next_deadline(), Some(1_000));
        p.tick(1_000).expect("due");
        assert_eq!(p.next_deadline(), Some(10_000));
    }
}
