//! Test helpers for mappers (feature `testkit`): a simulated driver, an in-process broker, a
//! minimal in-test edge and the conformance suite every mapper crate runs.

pub mod broker;
pub mod conformance;
pub mod edge;

pub use crate::sim::{SimDriver, SimProtocol, SimSession, SimVisitor, WriteRecord};
pub use broker::TestBroker;
pub use edge::{EdgeDevice, StateReport, TestEdge, TwinReport};
