//! Test helpers for mappers (feature `testkit`): a simulated driver, a minimal in-test edge,
//! the conformance suite every mapper crate runs, and edgetwin's shared test kit
//! ([`edgetwin_testkit`]: brokers a test can restart, a cut/heal TCP proxy, KubeEdge fixtures).

pub mod conformance;
pub mod edge;

pub use crate::sim::{SimDriver, SimProtocol, SimSession, SimVisitor, WriteRecord};
pub use edge::{EdgeDevice, StateReport, TestEdge, TwinReport};
pub use edgetwin_testkit::{self as kit, BrokerKind, TestBroker};
