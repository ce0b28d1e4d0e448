//! The data section of a property: an ordered pipeline of steps applied to every value read from
//! the device before it is reported, and undone (where that means something) for every desired
//! value before it is written.
//!
//! Declared per property in the Device YAML (`spec.properties[].pipeline`, see [`PipelineSpec`]
//! and `docs/data-pipeline.md`), built once with [`Pipeline::build`], then driven by the mapper
//! runtime:
//!
//! * [`Pipeline::on_read`] / [`Pipeline::process`] for each sample read;
//! * [`Pipeline::tick`] when [`Pipeline::next_deadline`] comes, so held values (a closed time
//!   window, a rate-limited value) are reported without waiting for the next sample;
//! * [`Pipeline::on_write`] for each desired value, and [`Pipeline::report_now`] for the read-back
//!   that follows the write (and for heartbeats): it must be reported whatever the filters say.
//!
//! Pure: no tokio, no I/O, no clock. Times are milliseconds passed in by the caller.
//! [`preview`] runs a pipeline over recorded samples (`edgetwin pipeline test`).

mod duration;
mod engine;
mod error;
mod literal;
mod number;
pub mod preview;
mod spec;
mod steps;

pub use duration::{DurationError, DurationSpec};
pub use engine::{Outcome, Pipeline, Sample};
pub use error::{PipelineError, Problem, StepRef};
pub use spec::{
    Aggregate, ClampSpec, DeadbandSpec, MapSpec, PipelineSpec, RateLimitSpec, RoundSpec, ScaleSpec,
    StepKind, StepSpec, WindowMode, WindowSpec,
};
