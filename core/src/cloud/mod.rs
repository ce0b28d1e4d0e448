//! The cloud side: the registry of Devices and DeviceModels (embedded or Kubernetes), and — in
//! later issues — the device controller and the hub the edge nodes connect to.

pub mod dashboard;
pub mod registry;
