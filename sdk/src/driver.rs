//! The protocol seam: what a driver implements, and nothing else.
//!
//! A [`Driver`] is the factory of one protocol (one per mapper binary). For each device it serves,
//! the runtime deserialises the device's free-form configuration into the driver's typed
//! [`Driver::ProtocolConfig`] and [`Driver::VisitorConfig`] (see [`crate::config`]), then calls
//! [`Driver::connect`] to open a [`Session`]. The session reads several points in one call (the
//! driver may coalesce them into one request), writes one point, and optionally pushes values the
//! device sends on its own ([`Session::subscribe`]).
//!
//! The driver never touches MQTT, timers, retries or twin state: the runtime owns all of that.
//! Errors say what kind of failure happened ([`DriverError`]) so that the runtime can decide:
//! configuration errors are never retried (the device is marked `unhealthy` with the message),
//! transient ones are retried with backoff behind a circuit breaker, and a rejected request fails
//! only that point.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use edgetwin_model::value::{Limits, PropertyType, Value};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// A device's identity: its namespace and name (KubeEdge ≥ 1.17 topics use `{namespace}/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId {
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl DeviceId {
    /// A device id from its namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The index of a point in [`DeviceConfig::points`]; stable for the life of a session, so a
/// driver may key cached request plans by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PointId(pub usize);

/// One property of a device as the driver sees it: its name, type, whether it may be written,
/// and the typed visitor configuration telling the driver where it lives on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<V> {
    /// Position in [`DeviceConfig::points`].
    pub id: PointId,
    /// The property name (`spec.properties[].name`).
    pub property: String,
    /// The DeviceModel type of the property.
    pub ty: PropertyType,
    /// `false` for `accessMode: ReadOnly` properties: the runtime never writes those.
    pub writable: bool,
    /// The DeviceModel's `minimum` / `maximum` of the property (empty when unset): a negative
    /// minimum tells a driver that the device stores the value signed.
    pub limits: Limits,
    /// The merged and deserialised `visitors.configData`.
    pub visitor: V,
}

/// Everything a driver needs to open a session to one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig<P, V> {
    /// The device.
    pub id: DeviceId,
    /// The merged and deserialised `protocol.configData`.
    pub protocol: P,
    /// The device's properties that have an access configuration, in spec order.
    pub points: Vec<Point<V>>,
}

impl<P, V> DeviceConfig<P, V> {
    /// The point with the given id.
    pub fn point(&self, id: PointId) -> Option<&Point<V>> {
        self.points.get(id.0)
    }

    /// The point of a property, by name.
    pub fn point_by_name(&self, property: &str) -> Option<&Point<V>> {
        self.points.iter().find(|p| p.property == property)
    }
}

/// A protocol: the factory of sessions. One value serves every device of the protocol, so it is
/// the place for state shared across devices (a [`crate::SharedBus`] per serial line, a client
/// pool, a simulated chip).
pub trait Driver: Send + Sync + 'static {
    /// The protocol name devices select with `spec.protocol.protocolName` (e.g. `modbus`).
    const PROTOCOL: &'static str;

    /// Other names that select this protocol (e.g. `ble` next to KubeEdge's `bluetooth`).
    const PROTOCOL_ALIASES: &'static [&'static str] = &[];

    /// The typed `protocol.configData` (model-level `protocolConfigData` merged under it).
    type ProtocolConfig: DeserializeOwned + fmt::Debug + Send + Sync + 'static;

    /// The typed `properties[].visitors.configData` (model property visitors merged under it).
    type VisitorConfig: DeserializeOwned + fmt::Debug + Send + Sync + 'static;

    /// The per-device connection.
    type Session: Session<Visitor = Self::VisitorConfig>;

    /// Checks a device's configuration beyond what serde checks (value ranges, combinations),
    /// before any connection is attempted. Return [`DriverError::Config`] naming the field.
    fn validate(
        &self,
        device: &DeviceConfig<Self::ProtocolConfig, Self::VisitorConfig>,
    ) -> Result<(), DriverError> {
        let _ = device;
        Ok(())
    }

    /// Opens a session to a device. Called again (with backoff) after a transient failure.
    fn connect(
        &self,
        device: &DeviceConfig<Self::ProtocolConfig, Self::VisitorConfig>,
    ) -> impl Future<Output = Result<Self::Session, DriverError>> + Send;
}

/// Whether a device whose protocol is `name` belongs to driver `D` ([`Driver::PROTOCOL`] or
/// one of its [`Driver::PROTOCOL_ALIASES`]).
pub fn serves_protocol<D: Driver>(name: Option<&str>) -> bool {
    name.is_some_and(|name| name == D::PROTOCOL || D::PROTOCOL_ALIASES.contains(&name))
}

/// An open connection to one device. The runtime drives one session from one task: calls never
/// overlap, so `&mut self` needs no locking.
pub trait Session: Send + 'static {
    /// The driver's visitor configuration type.
    type Visitor: fmt::Debug + Send + Sync + 'static;

    /// Reads several points in one call. The result has one entry per point, in the same order.
    /// A driver should coalesce adjacent points into one request where its protocol allows.
    fn read(
        &mut self,
        points: &[&Point<Self::Visitor>],
    ) -> impl Future<Output = Vec<Result<Value, DriverError>>> + Send;

    /// Writes one point. The value has the point's type (the runtime parses the desired string).
    fn write(
        &mut self,
        point: &Point<Self::Visitor>,
        value: &Value,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Asks the device to push the values of some points (OPC-UA monitored items, BLE
    /// notifications). Returns the ids of the points that will be pushed through `push`; the
    /// runtime stops polling those. The default supports no push at all.
    fn subscribe(
        &mut self,
        points: &[&Point<Self::Visitor>],
        push: PushSender,
    ) -> impl Future<Output = Result<Vec<PointId>, DriverError>> + Send {
        let _ = (points, push);
        async { Err(DriverError::Unsupported("subscribe".into())) }
    }

    /// Whether the device is healthy. `Err` with a transient error makes the runtime reconnect;
    /// any other error marks the device `unhealthy` with the message. Default: healthy.
    fn health(&mut self) -> impl Future<Output = Result<(), DriverError>> + Send {
        async { Ok(()) }
    }

    /// Closes the session (the device is removed, reconfigured or the mapper stops).
    fn disconnect(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Why a driver call failed. The variant decides what the runtime does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The device's configuration is wrong. Never retried: the device is marked `unhealthy`
    /// with this message until its spec changes.
    #[error("configuration error: {0}")]
    Config(String),
    /// A transport failure (socket, serial line, D-Bus). Retried with backoff; repeated failures
    /// open the device's circuit breaker and the session is reopened.
    #[error("I/O error: {0}")]
    Io(String),
    /// The device did not answer in time. Handled like [`DriverError::Io`].
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The session is gone (the peer closed it). The runtime reconnects with backoff.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The device answered but refused this request (e.g. a Modbus exception, an out-of-range
    /// value). Only this point fails; the session stays up.
    #[error("rejected by the device: {0}")]
    Rejected(String),
    /// The operation is not supported by this driver or this point.
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl DriverError {
    /// A configuration error.
    pub fn config(message: impl fmt::Display) -> Self {
        Self::Config(message.to_string())
    }

    /// A transport error.
    pub fn io(message: impl fmt::Display) -> Self {
        Self::Io(message.to_string())
    }

    /// Whether retrying later may succeed (I/O, timeout, disconnect): these feed the circuit
    /// breaker and lead to a reconnect.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DriverError::Io(_) | DriverError::Timeout(_) | DriverError::Disconnected(_)
        )
    }

    /// A short machine-readable name of the kind, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::Config(_) => "config",
            DriverError::Io(_) => "io",
            DriverError::Timeout(_) => "timeout",
            DriverError::Disconnected(_) => "disconnected",
            DriverError::Rejected(_) => "rejected",
            DriverError::Unsupported(_) => "unsupported",
        }
    }
}

impl From<std::io::Error> for DriverError {
    fn from(err: std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::NotConnected
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => DriverError::Disconnected(err.to_string()),
            _ => DriverError::Io(err.to_string()),
        }
    }
}

/// What a subscribed device pushed.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// A new value of a point.
    Value(PointId, Value),
    /// The push channel broke (e.g. the BLE link dropped); the runtime reconnects.
    Failed(DriverError),
}

/// The handle a driver uses to push values from a subscription. Cheap to clone; usable from
/// callbacks (`try_push`) and async code (`push`).
#[derive(Debug, Clone)]
pub struct PushSender {
    tx: mpsc::Sender<Pushed>,
}

/// How many pushed values may wait for the device task before `try_push` drops new ones.
pub(crate) const PUSH_CAPACITY: usize = 1024;

impl PushSender {
    /// A sender and the receiver the runtime reads.
    pub(crate) fn channel() -> (PushSender, mpsc::Receiver<Pushed>) {
        let (tx, rx) = mpsc::channel(PUSH_CAPACITY);
        (PushSender { tx }, rx)
    }

    /// Pushes a value, waiting when the runtime is behind. Returns `false` once the session
    /// has been closed by the runtime: the driver should stop pushing.
    pub async fn push(&self, point: PointId, value: Value) -> bool {
        self.tx.send(Pushed::Value(point, value)).await.is_ok()
    }

    /// Pushes a value without waiting; the value is dropped (and `false` returned) when the
    /// runtime is behind by [`PUSH_CAPACITY`] values or the session is closed.
    pub fn try_push(&self, point: PointId, value: Value) -> bool {
        self.tx.try_send(Pushed::Value(point, value)).is_ok()
    }

    /// Reports that the subscription broke; the runtime reconnects the session.
    pub fn fail(&self, error: DriverError) {
        // A full channel still ends the session: the runtime reads the failure after the values.
        let _ = self.tx.try_send(Pushed::Failed(error));
    }

    /// Whether the runtime has closed this session's push channel.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_io_timeout_and_disconnect() {
        assert!(DriverError::io("reset").is_transient());
        assert!(DriverError::Timeout(Duration::from_millis(5)).is_transient());
        assert!(DriverError::Disconnected("gone".into()).is_transient());
        assert!(!DriverError::config("pin: missing").is_transient());
        assert!(!DriverError::Rejected("illegal address".into()).is_transient());
        assert!(!DriverError::Unsupported("write".into()).is_transient());
    }

    #[test]
    fn io_errors_map_to_disconnect_or_io() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            DriverError::from(reset),
            DriverError::Disconnected(_)
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(DriverError::from(refused), DriverError::Io(_)));
    }

    #[tokio::test]
    async fn push_sender_delivers_and_notices_close() {
        let (push, mut rx) = PushSender::channel();
        assert!(push.try_push(PointId(1), Value::Int(7)));
        assert!(push.push(PointId(2), Value::Boolean(true)).await);
        push.fail(DriverError::Disconnected("link lost".into()));
        assert_eq!(
            rx.recv().await,
            Some(Pushed::Value(PointId(1), Value::Int(7)))
        );
        assert_eq!(
            rx.recv().await,
            Some(Pushed::Value(PointId(2), Value::Boolean(true)))
        );
        assert!(matches!(rx.recv().await, Some(Pushed::Failed(_))));
        drop(rx);
        assert!(push.is_closed());
        assert!(!push.try_push(PointId(1), Value::Int(8)));
    }

    #[test]
    fn a_driver_serves_its_protocol_and_its_aliases() {
        struct Radio;
        struct Link;
        impl Session for Link {
            type Visitor = ();
            async fn read(&mut self, points: &[&Point<()>]) -> Vec<Result<Value, DriverError>> {
                vec![Ok(Value::Int(0)); points.len()]
            }
            async fn write(&mut self, _: &Point<()>, _: &Value) -> Result<(), DriverError> {
                Ok(())
            }
        }
        impl Driver for Radio {
            const PROTOCOL: &'static str = "bluetooth";
            const PROTOCOL_ALIASES: &'static [&'static str] = &["ble"];
            type ProtocolConfig = ();
            type VisitorConfig = ();
            type Session = Link;
            async fn connect(&self, _: &DeviceConfig<(), ()>) -> Result<Link, DriverError> {
                Ok(Link)
            }
        }
        assert!(serves_protocol::<Radio>(Some("bluetooth")));
        assert!(serves_protocol::<Radio>(Some("ble")));
        assert!(!serves_protocol::<Radio>(Some("BLE")));
        assert!(!serves_protocol::<Radio>(Some("modbus")));
        assert!(!serves_protocol::<Radio>(None));
    }

    #[test]
    fn device_config_finds_points() {
        let config = DeviceConfig {
            id: DeviceId::new("default", "lamp"),
            protocol: (),
            points: vec![Point {
                id: PointId(0),
                property: "power".into(),
                ty: PropertyType::Boolean,
                writable: true,
                limits: Default::default(),
                visitor: 17u32,
            }],
        };
        assert_eq!(config.id.to_string(), "default/lamp");
        assert_eq!(config.point(PointId(0)).map(|p| p.visitor), Some(17));
        assert!(config.point(PointId(1)).is_none());
        assert_eq!(
            config.point_by_name("power").map(|p| p.id),
            Some(PointId(0))
        );
        assert!(config.point_by_name("missing").is_none());
    }
}
