//! Test helpers (partial).
pub mod broker;
pub mod edge;
pub mod sim;
pub use broker::TestBroker;
pub use edge::TestEdge;
pub use sim::SimDriver;
