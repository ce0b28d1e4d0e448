//! Test helpers for mappers (feature `testkit`): a simulated driver, an in-process broker, a
//! minimal in-test edge, the conformance suite every mapper crate runs, and the check of a running
//! mapper's pipelines against `edgetwin pipeline test`'s prediction.

pub mod broker;
pub mod conformance;
pub mod edge;
pub mod pipeline_check;

pub use crate::sim::{SimDriver, SimProtocol, SimSession, SimVisitor, WriteRecord};
pub use broker::TestBroker;
pub use edge::{EdgeDevice, StateReport, TestEdge, TwinReport};
