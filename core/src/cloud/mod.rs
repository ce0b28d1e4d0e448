//! The cloud side: the registry of Devices and DeviceModels (embedded or Kubernetes), the device
//! controller, and [`Cloud::start`](server::Cloud::start), which runs them with the hub the edge
//! nodes connect to.

pub mod capped_listener;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod loopback_tls;
pub mod registry;
pub mod server;
