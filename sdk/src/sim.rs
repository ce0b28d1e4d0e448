//! [`SimDriver`]: a simulated protocol, `sim`, for tests, examples and the benchmark (feature
//! `sim`, included in `testkit`).
//!
//! Devices live in memory in a shared world that the test keeps a handle on (the driver is
//! `Clone`): it can change a point as if the device did, make a device unreachable or slow,
//! inject read failures, and read the write log to count writes per change.
//!
//! ```yaml
//! protocol:
//!   protocolName: sim
//!   configData:
//!     latencyMs: 2          # every request takes this long (default 0)
//! properties:
//!   - name: level
//!     visitors:
//!       protocolName: sim
//!       configData:
//!         register: level   # the point's address in the simulated device (required)
//!         initial: 20       # value before anything is written (default: zero of the type)
//!         step: 1           # added on every read: a counter, so values change (default none)
//!         push: false       # pushed through `subscribe` instead of polled (default false)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use edgetwin_model::value::{PropertyType, Value};
use serde::Deserialize;

use crate::driver::{DeviceConfig, Driver, DriverError, Point, PointId, PushSender, Session};

/// `protocol.configData` of a `sim` device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimProtocol {
    /// Latency of every request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
}

/// `visitors.configData` of a `sim` property.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimVisitor {
    /// The point's address in the simulated device.
    pub register: String,
    /// The value before anything is written (a JSON scalar read as the property's type).
    #[serde(default)]
    pub initial: Option<serde_json::Value>,
    /// Added to a numeric value on every read.
    #[serde(default)]
    pub step: Option<f64>,
    /// Pushed through [`Session::subscribe`] instead of polled.
    #[serde(default)]
    pub push: bool,
}

/// One write the simulated device received.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    /// The register written.
    pub register: String,
    /// The value written.
    pub value: Value,
    /// When (wall clock, to compare with timestamps taken in another process).
    pub at: SystemTime,
}

#[derive(Debug, Default)]
struct SimDevice {
    points: BTreeMap<String, Value>,
    steps: BTreeMap<String, f64>,
    reachable: bool,
    latency: Option<Duration>,
    failing_reads: u32,
    /// Register → why writes to it are refused.
    refused_writes: BTreeMap<String, String>,
    /// Register → why reads of it are refused.
    refused_reads: BTreeMap<String, String>,
    /// Requests get no answer (they wait until the device answers again).
    hung: bool,
    writes: Vec<WriteRecord>,
    connects: u32,
    open_sessions: u32,
    /// Bumped when the device becomes unreachable: older sessions are dead.
    epoch: u64,
    pushers: Vec<(String, PointId, PushSender)>,
}

#[derive(Debug, Default)]
struct World {
    devices: HashMap<String, SimDevice>,
}

/// The simulated driver, and the test's handle on the simulated devices (clones share them).
/// Devices are keyed by `{namespace}/{name}`.
#[derive(Debug, Clone, Default)]
pub struct SimDriver {
    world: Arc<Mutex<World>>,
}

impl SimDriver {
    /// A driver with no devices yet (a device appears when the runtime first connects to it).
    pub fn new() -> Self {
        Self::default()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // The world holds plain data; a panicking test thread leaves it usable.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_device<R>(&self, device: &str, f: impl FnOnce(&mut SimDevice) -> R) -> R {
        let mut world = self.world();
        let entry = world
            .devices
            .entry(device.to_owned())
            .or_insert_with(|| SimDevice {
                reachable: true,
                ..SimDevice::default()
            });
        f(entry)
    }

    /// Sets a point as if the device changed it; pushed points are pushed at once.
    pub fn set_value(&self, device: &str, register: &str, value: Value) {
        self.with_device(device, |d| {
            d.points.insert(register.to_owned(), value.clone());
            d.pushers.retain(|(reg, point, push)| {
                if reg == register {
                    push.try_push(*point, value.clone()) || !push.is_closed()
                } else {
                    !push.is_closed()
                }
            });
        });
    }

    /// The current value of a point.
    pub fn value(&self, device: &str, register: &str) -> Option<Value> {
        self.with_device(device, |d| d.points.get(register).cloned())
    }

    /// Makes a device unreachable (connects fail, open sessions see a disconnect) or
    /// reachable again.
    pub fn set_reachable(&self, device: &str, reachable: bool) {
        self.with_device(device, |d| {
            if d.reachable && !reachable {
                d.epoch += 1;
                for (_, _, push) in d.pushers.drain(..) {
                    push.fail(DriverError::Disconnected("simulated link loss".into()));
                }
            }
            d.reachable = reachable;
        });
    }

    /// Makes every request to a device take `latency` (overrides `latencyMs`).
    pub fn set_latency(&self, device: &str, latency: Duration) {
        self.with_device(device, |d| d.latency = Some(latency));
    }

    /// Makes the next `count` reads of a device fail with an I/O error.
    pub fn fail_next_reads(&self, device: &str, count: u32) {
        self.with_device(device, |d| d.failing_reads = count);
    }

    /// Makes writes to `register` fail with [`DriverError::Rejected`]`(reason)` (as an interlock
    /// or an out-of-range check would), or accepts them again with `None`.
    pub fn refuse_writes(&self, device: &str, register: &str, reason: Option<&str>) {
        self.with_device(device, |d| match reason {
            Some(reason) => {
                d.refused_writes
                    .insert(register.to_owned(), reason.to_owned());
            }
            None => {
                d.refused_writes.remove(register);
            }
        });
    }

    /// Makes reads of `register` fail with [`DriverError::Rejected`]`(reason)` (as a device
    /// that refuses a point would), or answers them again with `None`.
    pub fn refuse_reads(&self, device: &str, register: &str, reason: Option<&str>) {
        self.with_device(device, |d| match reason {
            Some(reason) => {
                d.refused_reads
                    .insert(register.to_owned(), reason.to_owned());
            }
            None => {
                d.refused_reads.remove(register);
            }
        });
    }

    /// Makes a device stop answering (requests wait, sessions stay open) or answer again.
    pub fn set_hung(&self, device: &str, hung: bool) {
        self.with_device(device, |d| d.hung = hung);
    }

    /// Every write the device received, in order.
    pub fn writes(&self, device: &str) -> Vec<WriteRecord> {
        self.with_device(device, |d| d.writes.clone())
    }

    /// Every write of every device, keyed by device.
    pub fn all_writes(&self) -> BTreeMap<String, Vec<WriteRecord>> {
        self.world()
            .devices
            .iter()
            .map(|(name, d)| (name.clone(), d.writes.clone()))
            .collect()
    }

    /// How many sessions were opened to a device.
    pub fn connects(&self, device: &str) -> u32 {
        self.with_device(device, |d| d.connects)
    }

    /// How many sessions to a device are open now.
    pub fn open_sessions(&self, device: &str) -> u32 {
        self.with_device(device, |d| d.open_sessions)
    }
}

/// The zero value of a type, the value of a point nobody set.
fn zero(ty: PropertyType) -> Value {
    match ty {
        PropertyType::Int => Value::Int(0),
        PropertyType::Float | PropertyType::Double => Value::Float(0.0),
        PropertyType::Boolean => Value::Boolean(false),
        PropertyType::String | PropertyType::Stream => Value::String(String::new()),
        PropertyType::Bytes => Value::Bytes(Vec::new()),
    }
}

fn initial_value(point: &Point<SimVisitor>) -> Result<Value, DriverError> {
    let Some(initial) = &point.visitor.initial else {
        return Ok(zero(point.ty));
    };
    let text = match initial {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => initial.to_string(),
        other => {
            return Err(DriverError::config(format!(
                "property {}: initial: {other} is not a scalar",
                point.property
            )));
        }
    };
    point
        .ty
        .parse(&text)
        .map_err(|e| DriverError::config(format!("property {}: initial: {e}", point.property)))
}

impl Driver for SimDriver {
    const PROTOCOL: &'static str = "sim";
    type ProtocolConfig = SimProtocol;
    type VisitorConfig = SimVisitor;
    type Session = SimSession;

    fn validate(&self, device: &DeviceConfig<SimProtocol, SimVisitor>) -> Result<(), DriverError> {
        for point in &device.points {
            if point.visitor.register.is_empty() {
                return Err(DriverError::config(format!(
                    "property {}: visitors.configData.register is empty",
                    point.property
                )));
            }
            initial_value(point)?;
        }
        Ok(())
    }

    async fn connect(
        &self,
        device: &DeviceConfig<SimProtocol, SimVisitor>,
    ) -> Result<SimSession, DriverError> {
        let key = device.id.to_string();
        let latency = self.with_device(&key, |d| d.latency);
        let latency = latency.unwrap_or(Duration::from_millis(device.protocol.latency_ms));
        tokio::time::sleep(latency).await;
        let mut registers = Vec::with_capacity(device.points.len());
        for point in &device.points {
            registers.push((point.visitor.register.clone(), initial_value(point)?));
        }
        let epoch = self.with_device(&key, |d| {
            if !d.reachable {
                return Err(DriverError::io("simulated device unreachable"));
            }
            for ((register, initial), point) in registers.into_iter().zip(&device.points) {
                d.points.entry(register.clone()).or_insert(initial);
                if let Some(step) = point.visitor.step {
                    d.steps.insert(register, step);
                }
            }
            d.connects += 1;
            d.open_sessions += 1;
            Ok(d.epoch)
        })?;
        Ok(SimSession {
            driver: self.clone(),
            device: key,
            epoch,
            latency: Duration::from_millis(device.protocol.latency_ms),
            open: true,
        })
    }
}

/// A session to a simulated device.
#[derive(Debug)]
pub struct SimSession {
    driver: SimDriver,
    device: String,
    epoch: u64,
    latency: Duration,
    open: bool,
}

impl SimSession {
    /// The request's latency; while the device is hung, until it answers again.
    async fn delay(&self) {
        let latency = self
            .driver
            .with_device(&self.device, |d| d.latency)
            .unwrap_or(self.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        while self.driver.with_device(&self.device, |d| d.hung) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fails when the device went away since this session was opened.
    fn check_alive(&self, d: &SimDevice) -> Result<(), DriverError> {
        if d.reachable && d.epoch == self.epoch {
            Ok(())
        } else {
            Err(DriverError::Disconnected("simulated link loss".into()))
        }
    }

    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.driver.with_device(&self.device, |d| {
                d.open_sessions = d.open_sessions.saturating_sub(1)
            });
        }
    }
}

impl Drop for SimSession {
    fn drop(&mut self) {
        self.close();
    }
}

impl Session for SimSession {
    type Visitor = SimVisitor;

    async fn read(&mut self, points: &[&Point<SimVisitor>]) -> Vec<Result<Value, DriverError>> {
        self.delay().await;
        self.driver.with_device(&self.device, |d| {
            if let Err(err) = self.check_alive(d) {
                return vec![Err(err); points.len()];
            }
            if d.failing_reads > 0 {
                d.failing_reads -= 1;
                return vec![Err(DriverError::io("simulated read failure")); points.len()];
            }
            points
                .iter()
                .map(|point| {
                    let register = &point.visitor.register;
                    if let Some(reason) = d.refused_reads.get(register) {
                        return Err(DriverError::Rejected(reason.clone()));
                    }
                    let step = d.steps.get(register).copied();
                    let value = d
                        .points
                        .entry(register.clone())
                        .or_insert_with(|| zero(point.ty));
                    if let Some(step) = step {
                        match value {
                            Value::Int(i) => *i = i.wrapping_add(step as i64),
                            Value::Float(x) => *x += step,
                            _ => {}
                        }
                    }
                    Ok(value.clone())
                })
                .collect()
        })
    }

    async fn write(&mut self, point: &Point<SimVisitor>, value: &Value) -> Result<(), DriverError> {
        self.delay().await;
        self.driver.with_device(&self.device, |d| {
            self.check_alive(d)?;
            let register = point.visitor.register.clone();
            if let Some(reason) = d.refused_writes.get(&register) {
                return Err(DriverError::Rejected(reason.clone()));
            }
            d.points.insert(register.clone(), value.clone());
            d.writes.push(WriteRecord {
                register,
                value: value.clone(),
                at: SystemTime::now(),
            });
            Ok(())
        })
    }

    async fn subscribe(
        &mut self,
        points: &[&Point<SimVisitor>],
        push: PushSender,
    ) -> Result<Vec<PointId>, DriverError> {
        let pushed: Vec<_> = points.iter().filter(|p| p.visitor.push).collect();
        if pushed.is_empty() {
            return Err(DriverError::Unsupported("no point has push: true".into()));
        }
        self.driver.with_device(&self.device, |d| {
            self.check_alive(d)?;
            for point in &pushed {
                d.pushers
                    .push((point.visitor.register.clone(), point.id, push.clone()));
            }
            Ok(pushed.iter().map(|p| p.id).collect())
        })
    }

    async fn health(&mut self) -> Result<(), DriverError> {
        self.driver
            .with_device(&self.device, |d| self.check_alive(d))
    }

    async fn disconnect(mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{DeviceId, Pushed};

    fn device(
        points: Vec<(&str, PropertyType, SimVisitor)>,
    ) -> DeviceConfig<SimProtocol, SimVisitor> {
        DeviceConfig {
            id: DeviceId::new("default", "meter"),
            protocol: SimProtocol::default(),
            points: points
                .into_iter()
                .enumerate()
                .map(|(i, (name, ty, visitor))| Point {
                    id: PointId(i),
                    property: name.into(),
                    ty,
                    writable: true,
                    limits: Default::default(),
                    visitor,
                })
                .collect(),
        }
    }

    fn visitor(register: &str) -> SimVisitor {
        SimVisitor {
            register: register.into(),
            initial: None,
            step: None,
            push: false,
        }
    }

    #[tokio::test]
    async fn reads_writes_counters_and_the_write_log() {
        let sim = SimDriver::new();
        let config = device(vec![
            (
                "level",
                PropertyType::Int,
                SimVisitor {
                    initial: Some(serde_json::json!(20)),
                    ..visitor("level")
                },
            ),
            (
                "count",
                PropertyType::Int,
                SimVisitor {
                    step: Some(1.0),
                    ..visitor("count")
                },
            ),
        ]);
        sim.validate(&config).expect("valid");
        let mut session = sim.connect(&config).await.expect("connects");
        let points: Vec<_> = config.points.iter().collect();
        assert_eq!(
            session.read(&points).await,
            vec![Ok(Value::Int(20)), Ok(Value::Int(1))]
        );
        session
            .write(&config.points[0], &Value::Int(5))
            .await
            .expect("writes");
        assert_eq!(
            session.read(&points).await,
            vec![Ok(Value::Int(5)), Ok(Value::Int(2))]
        );
        let writes = sim.writes("default/meter");
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].value, Value::Int(5));
        assert_eq!(sim.connects("default/meter"), 1);
        assert_eq!(sim.open_sessions("default/meter"), 1);
        session.disconnect().await;
        assert_eq!(sim.open_sessions("default/meter"), 0);
    }

    #[tokio::test]
    async fn unreachable_devices_refuse_connects_and_kill_sessions() {
        let sim = SimDriver::new();
        let config = device(vec![("level", PropertyType::Int, visitor("level"))]);
        let mut session = sim.connect(&config).await.expect("connects");
        sim.set_reachable("default/meter", false);
        let points: Vec<_> = config.points.iter().collect();
        assert!(matches!(
            session.read(&points).await[0],
            Err(DriverError::Disconnected(_))
        ));
        assert!(matches!(
            sim.connect(&config).await,
            Err(DriverError::Io(_))
        ));
        sim.set_reachable("default/meter", true);
        let mut again = sim.connect(&config).await.expect("reachable again");
        assert_eq!(again.read(&points).await, vec![Ok(Value::Int(0))]);
        sim.fail_next_reads("default/meter", 1);
        assert!(matches!(
            again.read(&points).await[0],
            Err(DriverError::Io(_))
        ));
        assert_eq!(again.read(&points).await, vec![Ok(Value::Int(0))]);
    }

    #[tokio::test]
    async fn bad_initial_values_are_configuration_errors() {
        let sim = SimDriver::new();
        let config = device(vec![(
            "on",
            PropertyType::Boolean,
            SimVisitor {
                initial: Some(serde_json::json!("maybe")),
                ..visitor("on")
            },
        )]);
        let err = sim.validate(&config).expect_err("not a boolean");
        assert!(
            matches!(err, DriverError::Config(ref m) if m.contains("property on: initial")),
            "{err}"
        );
        let empty = device(vec![("on", PropertyType::Boolean, visitor(""))]);
        assert!(matches!(sim.validate(&empty), Err(DriverError::Config(_))));
    }

    #[tokio::test]
    async fn push_points_are_pushed_on_change() {
        let sim = SimDriver::new();
        let config = device(vec![
            (
                "button",
                PropertyType::Boolean,
                SimVisitor {
                    push: true,
                    ..visitor("button")
                },
            ),
            ("level", PropertyType::Int, visitor("level")),
        ]);
        let mut session = sim.connect(&config).await.expect("connects");
        let (push, mut rx) = PushSender::channel();
        let points: Vec<_> = config.points.iter().collect();
        let pushed = session.subscribe(&points, push).await.expect("subscribes");
        assert_eq!(pushed, vec![PointId(0)]);
        sim.set_value("default/meter", "button", Value::Boolean(true));
        sim.set_value("default/meter", "level", Value::Int(3));
        assert_eq!(
            rx.recv().await,
            Some(Pushed::Value(PointId(0), Value::Boolean(true)))
        );
        sim.set_reachable("default/meter", false);
        assert!(matches!(rx.recv().await, Some(Pushed::Failed(_))));
    }
}
