//! The KubeEdge DeviceTwin wire: MQTT topics, JSON payloads and the cloud↔edge envelope.

pub mod topic;

pub use topic::{DeviceId, Topic, TopicError};
