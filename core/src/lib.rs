//! edgetwin core: the edge agent, the cloud side and the `edgetwin` binary, around the pure
//! model (`edgetwin-model`: KubeEdge types, the wire, the twin engine, the pipeline).
//!
//! The edge agent and the cloud side sit behind the `edge` and `cloud` cargo features, and the
//! Kubernetes backend behind `kube`, so that edge binaries never link kube-rs.

#[cfg(feature = "cloud")]
pub mod cloud;
#[cfg(feature = "kube")]
pub mod crd;
#[cfg(feature = "cloud")]
pub mod ctl;
#[cfg(feature = "edge")]
pub mod edge;
#[cfg(feature = "edge")]
pub mod fd_budget;
#[cfg(feature = "edge")]
pub mod install;
#[cfg(feature = "edge")]
pub mod log_limit;
pub mod manifests;
#[cfg(feature = "cli")]
pub mod scaffold;
#[cfg(feature = "edge")]
mod stable_plans;
pub mod tunnel;
#[cfg(feature = "edge")]
mod wal_checkpoint;
