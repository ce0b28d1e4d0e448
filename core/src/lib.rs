//! edgetwin core: the KubeEdge-compatible device model, the MQTT wire types, the twin engine,
//! the edge agent and the cloud side.
//!
//! `model`, `wire`, `twin` and `pipeline` are pure (no I/O) and always compiled; the edge agent
//! and the cloud side sit behind the `edge` and `cloud` cargo features, and the Kubernetes backend
//! behind `kube`, so that edge binaries never link kube-rs.

pub mod cloudlink;
pub mod hops;
pub mod model;
pub mod pipeline;
#[cfg(feature = "cli")]
pub mod scaffold;
pub mod twin;
pub mod wire;

#[cfg(feature = "cloud")]
pub mod cloud;
#[cfg(feature = "cloud")]
pub mod ctl;
#[cfg(feature = "edge")]
pub mod edge;
#[cfg(feature = "edge")]
mod stable_plans;
#[cfg(feature = "edge")]
pub mod store;
#[cfg(feature = "test-support")]
pub mod testsupport;
#[cfg(feature = "edge")]
pub mod tunnel;
#[cfg(feature = "edge")]
mod wal_checkpoint;
