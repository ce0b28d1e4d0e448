//! Test helpers for mappers (feature `testkit`): a simulated driver, a minimal in-test edge,
//! the conformance suite every mapper crate runs, the check of a running mapper's pipelines
//! against `edgetwin pipeline test`'s prediction, and edgetwin's shared test kit
//! ([`edgetwin_testkit`]: brokers a test can restart, a cut/heal TCP proxy, KubeEdge fixtures,
//! database and OTLP servers).

pub mod conformance;
pub mod edge;
pub mod pipeline_check;

pub use crate::sim::{SimDriver, SimProtocol, SimSession, SimVisitor, WriteRecord};
pub use edge::{EdgeDevice, StateReport, TestEdge, TwinReport};
pub use edgetwin_testkit::{self as kit, BrokerKind, TestBroker};

use serde::de::DeserializeOwned;

use crate::driver::{DeviceConfig, Point, PointId};
use crate::{DeviceId, PropertyType};

/// A device as the runtime hands it to a driver, from `protocol` configData and one
/// `(property, type, visitor configData)` per point (all writable, no model limits).
///
/// # Panics
/// When a configData does not deserialise into the driver's types.
pub fn device_config<P: DeserializeOwned, V: DeserializeOwned>(
    name: &str,
    protocol: serde_json::Value,
    points: &[(impl AsRef<str>, PropertyType, serde_json::Value)],
) -> DeviceConfig<P, V> {
    DeviceConfig {
        id: DeviceId::new("default", name),
        protocol: serde_json::from_value(protocol).expect("protocol configData parses"),
        points: points
            .iter()
            .enumerate()
            .map(|(i, (property, ty, visitor))| Point {
                id: PointId(i),
                property: property.as_ref().to_owned(),
                ty: *ty,
                writable: true,
                limits: Default::default(),
                visitor: serde_json::from_value(visitor.clone())
                    .expect("visitors configData parses"),
            })
            .collect(),
    }
}
