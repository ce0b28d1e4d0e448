//! The GPIO [`Driver`]: each property of a device is one line; a session holds the device's
//! lines, reads and writes them (writes through the [`Interlock`]), and pushes input edges.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use edgetwin_sdk::Value;
use edgetwin_sdk::{
    DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, PushSender, Session,
};
use tokio::task::JoinHandle;

#[cfg(feature = "cdev")]
use crate::chip::cdev::CdevChip;
#[cfg(feature = "rpi")]
use crate::chip::rpi::RpiChip;
use crate::chip::sim::SimGpio;
use crate::chip::{
    Bias, EdgeStream, GpioChip, GpioError, InputLine, InputRequest, LineOptions, OutputLine,
    OutputRequest,
};
use crate::config::{
    BackendKind, Direction, GpioProtocol, GpioVisitor, holds_level, level_of, value_of,
};
use crate::interlock::Interlock;
use crate::platform;

/// The chip of lines that name none.
pub const DEFAULT_CHIP: &str = "gpiochip0";

type Config = DeviceConfig<GpioProtocol, GpioVisitor>;

/// Why `chip` is refused with the rpi backend.
const RPI_TAKES_NO_CHIP: &str = "the rpi backend uses the Pi's own controller with BCM numbers: remove chip, or use backend cdev";

/// The GPIO driver. One value serves every GPIO device of the mapper; its simulated chips are
/// shared with whoever holds [`GpioDriver::sim`] (tests, the `--sim-http` endpoint).
#[derive(Debug, Clone)]
pub struct GpioDriver {
    default_backend: BackendKind,
    sim: SimGpio,
}

impl GpioDriver {
    /// A driver whose devices use `default_backend` unless they name one.
    pub fn new(default_backend: BackendKind) -> Self {
        GpioDriver {
            default_backend,
            sim: SimGpio::new(),
        }
    }

    /// A driver whose default backend suits this board: `rpi` on a Raspberry Pi, `sim`
    /// elsewhere (logged with the reason).
    pub fn detect() -> Self {
        let (backend, why) = platform::default_backend();
        tracing::info!(%backend, reason = %why, "default GPIO backend");
        Self::new(backend)
    }

    /// The same driver over the given simulated chips.
    pub fn with_sim(mut self, sim: SimGpio) -> Self {
        self.sim = sim;
        self
    }

    /// The simulated chips (shared with the driver).
    pub fn sim(&self) -> &SimGpio {
        &self.sim
    }

    /// The backend of devices that name none.
    pub fn default_backend(&self) -> BackendKind {
        self.default_backend
    }

    fn open_chip(&self, backend: BackendKind, chip: &str) -> Result<Arc<dyn GpioChip>, GpioError> {
        match backend {
            BackendKind::Sim => Ok(Arc::new(self.sim.chip(chip))),
            #[cfg(feature = "cdev")]
            BackendKind::Cdev => Ok(Arc::new(CdevChip::new(chip))),
            #[cfg(feature = "rpi")]
            BackendKind::Rpi => Ok(Arc::new(RpiChip::open()?)),
            #[allow(unreachable_patterns)] // reachable when a backend feature is off
            other => Err(GpioError::Unavailable(format!(
                "backend {other} is not built into this mapper (cargo feature {other})"
            ))),
        }
    }
}

/// Where and how one property lives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinePlan {
    chip: String,
    line: u32,
    direction: Direction,
    active_low: bool,
    bias: Option<Bias>,
    initial: bool,
    debounce: Option<Duration>,
}

/// A device's configuration, checked.
#[derive(Debug)]
struct DevicePlan {
    backend: BackendKind,
    lines: Vec<LinePlan>,
    interlock: Interlock,
}

/// A configuration error naming the device, the property and the field.
fn config_error(
    device: &DeviceId,
    property: Option<&str>,
    field: &str,
    message: impl std::fmt::Display,
) -> DriverError {
    let property = property
        .map(|p| format!(", property {p}"))
        .unwrap_or_default();
    let field = if field.is_empty() {
        String::new()
    } else {
        format!(" {field}:")
    };
    DriverError::Config(format!("device {device}{property}:{field} {message}"))
}

impl DevicePlan {
    fn new(device: &Config, default_backend: BackendKind) -> Result<DevicePlan, DriverError> {
        let id = &device.id;
        let protocol = &device.protocol;
        let backend = protocol.backend.unwrap_or(default_backend);
        if backend == BackendKind::Rpi && protocol.chip.is_some() {
            return Err(config_error(
                id,
                None,
                "protocol.configData.chip",
                RPI_TAKES_NO_CHIP,
            ));
        }
        let mut lines = Vec::with_capacity(device.points.len());
        let mut taken: HashMap<(String, u32), &str> = HashMap::new();
        for point in &device.points {
            let plan = line_plan(id, protocol, backend, point)?;
            if let Some(other) = taken.insert((plan.chip.clone(), plan.line), &point.property) {
                return Err(config_error(
                    id,
                    Some(&point.property),
                    "visitors.configData.pin",
                    format!(
                        "line {} of {} is already used by property {other}",
                        plan.line, plan.chip
                    ),
                ));
            }
            lines.push(plan);
        }
        let names: Vec<String> = device.points.iter().map(|p| p.property.clone()).collect();
        let interlock = Interlock::compile(&protocol.interlock, &names)
            .map_err(|m| config_error(id, None, "", format!("protocol.configData.{m}")))?;
        interlock
            .check_state(|index| {
                let line = &lines[index];
                (line.direction == Direction::Out).then_some(line.initial)
            })
            .map_err(|m| {
                config_error(
                    id,
                    None,
                    "protocol.configData.interlock",
                    format!("the initial levels of the outputs break a rule: {m}"),
                )
            })?;
        Ok(DevicePlan {
            backend,
            lines,
            interlock,
        })
    }
}

fn line_plan(
    id: &DeviceId,
    protocol: &GpioProtocol,
    backend: BackendKind,
    point: &Point<GpioVisitor>,
) -> Result<LinePlan, DriverError> {
    let fail =
        |field: &str, message: String| config_error(id, Some(&point.property), field, message);
    let visitor = &point.visitor;
    if !holds_level(point.ty) {
        return Err(config_error(
            id,
            Some(&point.property),
            "",
            format!(
                "type {:?} cannot carry a GPIO level: use STRING (ON/OFF), BOOLEAN or INT (1/0)",
                point.ty
            ),
        ));
    }
    let line = match (visitor.pin, visitor.line) {
        (Some(n), None) | (None, Some(n)) => n,
        (Some(_), Some(_)) => {
            return Err(fail(
                "visitors.configData",
                "give pin or line, not both (they are synonyms)".into(),
            ));
        }
        (None, None) => {
            return Err(fail(
                "visitors.configData.pin",
                "missing: give the BCM number on a Raspberry Pi, or the line offset on the chip (pin or line)".into(),
            ));
        }
    };
    if backend == BackendKind::Rpi && visitor.chip.is_some() {
        return Err(fail("visitors.configData.chip", RPI_TAKES_NO_CHIP.into()));
    }
    let chip = visitor
        .chip
        .clone()
        .or_else(|| protocol.chip.clone())
        .unwrap_or_else(|| DEFAULT_CHIP.to_owned());
    let direction = visitor.direction.unwrap_or(if point.writable {
        Direction::Out
    } else {
        Direction::In
    });
    if direction == Direction::In && point.writable {
        return Err(fail(
            "visitors.configData.direction",
            "an input cannot be written: make the property ReadOnly (accessMode) or use direction out".into(),
        ));
    }
    if direction == Direction::In && visitor.initial.is_some() {
        return Err(fail(
            "visitors.configData.initial",
            "only outputs have an initial level".into(),
        ));
    }
    if direction == Direction::Out && visitor.debounce.is_some() {
        return Err(fail(
            "visitors.configData.debounce",
            "only inputs are debounced".into(),
        ));
    }
    let debounce = visitor
        .debounce
        .map(|d| Duration::from_millis(d.as_millis()))
        .filter(|d| !d.is_zero());
    Ok(LinePlan {
        chip,
        line,
        direction,
        active_low: visitor.active_low,
        bias: visitor.bias,
        initial: visitor.initial.is_some_and(|s| s.0),
        debounce,
    })
}

/// A GPIO failure in a session, as the runtime understands it.
fn driver_error(device: &DeviceId, property: &str, err: GpioError) -> DriverError {
    let message = format!("device {device}, property {property}: {err}");
    match err {
        GpioError::Unavailable(_) | GpioError::NoSuchLine { .. } | GpioError::Unsupported(_) => {
            DriverError::Config(message)
        }
        GpioError::NoSuchChip { .. } | GpioError::Busy { .. } | GpioError::Io { .. } => {
            DriverError::Io(message)
        }
    }
}

impl Driver for GpioDriver {
    const PROTOCOL: &'static str = "gpio";
    type ProtocolConfig = GpioProtocol;
    type VisitorConfig = GpioVisitor;
    type Session = GpioSession;

    fn validate(&self, device: &Config) -> Result<(), DriverError> {
        DevicePlan::new(device, self.default_backend).map(|_| ())
    }

    async fn connect(&self, device: &Config) -> Result<GpioSession, DriverError> {
        let plan = DevicePlan::new(device, self.default_backend)?;
        let mut chips: BTreeMap<&str, Arc<dyn GpioChip>> = BTreeMap::new();
        let mut lines = Vec::with_capacity(plan.lines.len());
        for (point, line) in device.points.iter().zip(&plan.lines) {
            let fail = |err| driver_error(&device.id, &point.property, err);
            let chip = match chips.get(line.chip.as_str()) {
                Some(chip) => Arc::clone(chip),
                None => {
                    let chip = self.open_chip(plan.backend, &line.chip).map_err(fail)?;
                    chips.insert(&line.chip, Arc::clone(&chip));
                    chip
                }
            };
            let options = LineOptions {
                line: line.line,
                active_low: line.active_low,
                bias: line.bias,
                consumer: format!("{}:{}", device.id, point.property),
            };
            let held = match line.direction {
                Direction::Out => Line::Output(
                    chip.request_output(&OutputRequest {
                        options,
                        initial: line.initial,
                    })
                    .map_err(fail)?,
                ),
                Direction::In => {
                    let request = InputRequest {
                        options,
                        debounce: line.debounce,
                        edges: true,
                    };
                    let mut input =
                        request_input(chip.as_ref(), &request, &point.property).map_err(fail)?;
                    let edges = input.edges();
                    Line::Input { line: input, edges }
                }
            };
            lines.push(held);
        }
        tracing::info!(
            device = %device.id,
            backend = %plan.backend,
            lines = lines.len(),
            interlock = %plan.interlock,
            "GPIO lines requested"
        );
        Ok(GpioSession {
            device: device.id.clone(),
            lines,
            properties: device.points.iter().map(|p| p.property.clone()).collect(),
            interlock: plan.interlock,
            watchers: Vec::new(),
        })
    }
}

/// Requests an input with edge detection; where the chip cannot watch the line (no interrupt),
/// requests it plain so that it is polled instead, and says so.
fn request_input(
    chip: &dyn GpioChip,
    request: &InputRequest,
    property: &str,
) -> Result<Box<dyn InputLine>, GpioError> {
    match chip.request_input(request) {
        Err(err @ (GpioError::Io { .. } | GpioError::Unsupported(_))) => {
            let plain = InputRequest {
                edges: false,
                debounce: None,
                ..request.clone()
            };
            // Whatever stops the plain request (a busy line) is the error to report.
            let line = chip.request_input(&plain)?;
            tracing::warn!(
                property,
                chip = chip.name(),
                line = request.options.line,
                error = %err,
                "edge detection is not available on this line: it is polled, without debounce"
            );
            Ok(line)
        }
        other => other,
    }
}

/// One held line of a session.
enum Line {
    Output(Box<dyn OutputLine>),
    Input {
        line: Box<dyn InputLine>,
        /// Taken by `subscribe`.
        edges: Option<EdgeStream>,
    },
}

impl Line {
    fn get(&self) -> Result<bool, GpioError> {
        match self {
            Line::Output(line) => line.get(),
            Line::Input { line, .. } => line.get(),
        }
    }
}

/// The lines of one device.
pub struct GpioSession {
    device: DeviceId,
    /// By point index.
    lines: Vec<Line>,
    /// Property names by point index.
    properties: Vec<String>,
    interlock: Interlock,
    /// Tasks pushing input edges; stopped with the session.
    watchers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for GpioSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioSession")
            .field("device", &self.device)
            .field("lines", &self.lines.len())
            .field("interlock", &self.interlock)
            .finish()
    }
}

impl GpioSession {
    fn line(&self, point: &Point<GpioVisitor>) -> Result<&Line, DriverError> {
        self.lines.get(point.id.0).ok_or_else(|| {
            DriverError::Rejected(format!(
                "property {} has no line in this session",
                point.property
            ))
        })
    }

    fn read_one(&self, point: &Point<GpioVisitor>) -> Result<Value, DriverError> {
        let active = self
            .line(point)?
            .get()
            .map_err(|e| driver_error(&self.device, &point.property, e))?;
        Ok(value_of(active, point.ty))
    }
}

impl Session for GpioSession {
    type Visitor = GpioVisitor;

    async fn read(&mut self, points: &[&Point<GpioVisitor>]) -> Vec<Result<Value, DriverError>> {
        points.iter().map(|point| self.read_one(point)).collect()
    }

    async fn write(
        &mut self,
        point: &Point<GpioVisitor>,
        value: &Value,
    ) -> Result<(), DriverError> {
        let index = point.id.0;
        if !matches!(self.lines.get(index), Some(Line::Output(_))) {
            return Err(DriverError::Rejected(format!(
                "property {} is an input: it cannot be written",
                point.property
            )));
        }
        let active = level_of(value).map_err(DriverError::Rejected)?;
        let verdict = self.interlock.check(index, active, |other| {
            self.lines[other].get().map_err(|e| {
                // Fail closed: without the current state the write cannot be proven safe.
                let reading = format!("{} (read for the interlock)", self.properties[other]);
                driver_error(&self.device, &reading, e)
            })
        })?;
        if let Err(refusal) = verdict {
            tracing::warn!(device = %self.device, property = %point.property, %refusal, "write refused");
            return Err(DriverError::Rejected(refusal.to_string()));
        }
        match &mut self.lines[index] {
            Line::Output(line) => line
                .set(active)
                .map_err(|e| driver_error(&self.device, &point.property, e)),
            Line::Input { .. } => Err(DriverError::Rejected(format!(
                "property {} is an input: it cannot be written",
                point.property
            ))),
        }
    }

    async fn subscribe(
        &mut self,
        points: &[&Point<GpioVisitor>],
        push: PushSender,
    ) -> Result<Vec<PointId>, DriverError> {
        let mut pushed = Vec::new();
        for point in points {
            let Some(Line::Input { line, edges }) = self.lines.get_mut(point.id.0) else {
                continue;
            };
            let Some(mut stream) = edges.take() else {
                continue;
            };
            // Pushed points are no longer polled: the first value comes from here too.
            let first = line
                .get()
                .map_err(|e| driver_error(&self.device, &point.property, e))?;
            push.try_push(point.id, value_of(first, point.ty));
            let (id, ty, push) = (point.id, point.ty, push.clone());
            let context = format!("device {}, property {}", self.device, point.property);
            self.watchers.push(tokio::spawn(async move {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(edge) => {
                            if !push.push(id, value_of(edge.active, ty)).await {
                                return;
                            }
                        }
                        Err(err) => {
                            push.fail(DriverError::Io(format!("{context}: {err}")));
                            return;
                        }
                    }
                }
            }));
            pushed.push(point.id);
        }
        Ok(pushed)
    }

    async fn disconnect(self) {
        tracing::debug!(device = %self.device, "releasing GPIO lines");
    }
}

impl Drop for GpioSession {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use edgetwin_sdk::PropertyType;
    use serde_json::json;

    use super::*;
    use crate::chip::sim::{Cause, Level, SimChip};

    fn point(
        index: usize,
        name: &str,
        ty: PropertyType,
        writable: bool,
        visitor: serde_json::Value,
    ) -> Point<GpioVisitor> {
        Point {
            id: PointId(index),
            property: name.into(),
            ty,
            writable,
            limits: Default::default(),
            visitor: serde_json::from_value(visitor).expect("valid visitor"),
        }
    }

    fn device(name: &str, protocol: serde_json::Value, points: Vec<Point<GpioVisitor>>) -> Config {
        DeviceConfig {
            id: DeviceId::new("default", name),
            protocol: serde_json::from_value(protocol).expect("valid protocol"),
            points,
        }
    }

    /// KubeEdge's traffic light: three STRING outputs on BCM 17, 27, 22.
    fn traffic_light(interlock: serde_json::Value) -> Config {
        let lamp = |i, name, pin| point(i, name, PropertyType::String, true, json!({ "pin": pin }));
        device(
            "traffic-light",
            json!({ "interlock": interlock }),
            vec![
                lamp(0, "red", 17),
                lamp(1, "yellow", 27),
                lamp(2, "green", 22),
            ],
        )
    }

    fn sim_driver() -> GpioDriver {
        GpioDriver::new(BackendKind::Sim)
    }

    fn pin(driver: &GpioDriver, line: u32) -> Level {
        driver
            .sim()
            .chip(DEFAULT_CHIP)
            .level(line)
            .expect("line exists")
    }

    async fn read_all(session: &mut GpioSession, config: &Config) -> Vec<Value> {
        let points: Vec<&Point<GpioVisitor>> = config.points.iter().collect();
        session
            .read(&points)
            .await
            .into_iter()
            .map(|r| r.expect("readable"))
            .collect()
    }

    fn on_off_values(values: &[&str]) -> Vec<Value> {
        values.iter().map(|v| Value::String((*v).into())).collect()
    }

    #[tokio::test]
    async fn writes_drive_pins_and_reads_report_on_off() {
        let driver = sim_driver();
        let config = traffic_light(json!([]));
        driver.validate(&config).expect("valid");
        let mut session = driver.connect(&config).await.expect("connected");
        assert_eq!(
            read_all(&mut session, &config).await,
            on_off_values(&["OFF", "OFF", "OFF"])
        );
        session
            .write(&config.points[0], &Value::String("on".into()))
            .await
            .expect("written");
        assert_eq!(pin(&driver, 17), Level::High);
        assert_eq!(
            read_all(&mut session, &config).await,
            on_off_values(&["ON", "OFF", "OFF"])
        );
        let consumer = driver.sim().chip(DEFAULT_CHIP).snapshot().lines[0]
            .consumer
            .clone();
        assert_eq!(consumer.as_deref(), Some("default/traffic-light:red"));
    }

    #[tokio::test]
    async fn the_interlock_refuses_a_write_before_it_reaches_the_pin() {
        let driver = sim_driver();
        let config = traffic_light(json!([
            { "never": { "red": "ON", "green": "ON" }, "reason": "red and green are never both on" }
        ]));
        let mut session = driver.connect(&config).await.expect("connected");
        let on = Value::String("ON".into());
        session.write(&config.points[0], &on).await.expect("red on");
        let refused = session.write(&config.points[2], &on).await;
        assert_eq!(
            refused,
            Err(DriverError::Rejected(
                "interlock refused green=ON: red and green are never both on (red is ON)".into()
            ))
        );
        assert_eq!(pin(&driver, 22), Level::Low);
        let green_moves = driver
            .sim()
            .chip(DEFAULT_CHIP)
            .transitions()
            .into_iter()
            .filter(|t| t.line == 22)
            .count();
        assert_eq!(green_moves, 0, "the refused write never touched the pin");
        // Red off first, then green on: allowed.
        session
            .write(&config.points[0], &Value::String("OFF".into()))
            .await
            .expect("red off");
        session
            .write(&config.points[2], &on)
            .await
            .expect("green on");
        assert_eq!(pin(&driver, 22), Level::High);
    }

    #[tokio::test]
    async fn values_are_accepted_in_every_spelling_and_reported_in_the_property_type() {
        let driver = sim_driver();
        let config = device(
            "lamp",
            json!({}),
            vec![
                point(
                    0,
                    "power",
                    PropertyType::Boolean,
                    true,
                    json!({ "line": 3 }),
                ),
                point(
                    1,
                    "level",
                    PropertyType::Int,
                    true,
                    json!({ "line": 4, "activeLow": true }),
                ),
            ],
        );
        let mut session = driver.connect(&config).await.expect("connected");
        for (value, expected) in [(Value::Boolean(true), true), (Value::Boolean(false), false)] {
            session
                .write(&config.points[0], &value)
                .await
                .expect("written");
            assert_eq!(
                pin(&driver, 3),
                if expected { Level::High } else { Level::Low }
            );
        }
        session
            .write(&config.points[1], &Value::Int(1))
            .await
            .expect("written");
        assert_eq!(pin(&driver, 4), Level::Low, "active low: ON is a low pin");
        assert_eq!(
            read_all(&mut session, &config).await,
            vec![Value::Boolean(false), Value::Int(1)]
        );
        let refused = session.write(&config.points[1], &Value::Int(7)).await;
        assert!(
            matches!(refused, Err(DriverError::Rejected(m)) if m.contains("is not a GPIO level"))
        );
    }

    #[tokio::test]
    async fn initial_levels_and_release_are_visible_on_the_pins() {
        let driver = sim_driver();
        let relay = |initial: &str| {
            device(
                "relay",
                json!({ "chip": "bank1" }),
                vec![point(
                    0,
                    "coil",
                    PropertyType::String,
                    true,
                    json!({ "pin": 9, "initial": initial }),
                )],
            )
        };
        let mut session = driver.connect(&relay("on")).await.expect("connected");
        let chip = driver.sim().chip("bank1");
        assert_eq!(chip.level(9), Ok(Level::High));
        session.disconnect().await;
        assert_eq!(chip.level(9), Ok(Level::High), "released: still driven");
        // A new session (a restarted mapper) takes the output over as it is: reading it gives
        // the level the runtime compares with the desired value before writing anything.
        session = driver
            .connect(&relay("off"))
            .await
            .expect("connected again");
        let config = relay("off");
        assert_eq!(
            read_all(&mut session, &config).await,
            vec![Value::String("ON".into())]
        );
        let causes: Vec<Cause> = chip.transitions().iter().map(|t| t.cause).collect();
        assert_eq!(
            causes,
            vec![Cause::Request],
            "the pin moved once, when first requested"
        );
    }

    #[tokio::test]
    async fn a_line_held_by_another_device_is_busy_until_released() {
        let driver = sim_driver();
        let first = traffic_light(json!([]));
        let mut second = traffic_light(json!([]));
        second.id = DeviceId::new("default", "copy");
        let held = driver.connect(&first).await.expect("connected");
        let err = driver.connect(&second).await.expect_err("busy");
        assert_eq!(
            err,
            DriverError::Io(
                "device default/copy, property red: line 17 of GPIO chip sim:gpiochip0 is busy (held by default/traffic-light:red)".into()
            )
        );
        assert!(err.is_transient(), "retried with backoff");
        drop(held);
        assert!(driver.connect(&second).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn inputs_read_the_debounced_level() {
        let driver = sim_driver();
        let config = device(
            "door",
            json!({}),
            vec![point(
                0,
                "open",
                PropertyType::Boolean,
                false,
                json!({ "pin": 5, "debounce": "20ms", "bias": "pullDown" }),
            )],
        );
        let mut session = driver.connect(&config).await.expect("connected");
        let chip = driver.sim().chip(DEFAULT_CHIP);
        chip.drive(5, Level::High).expect("drive");
        assert_eq!(
            read_all(&mut session, &config).await,
            vec![Value::Boolean(false)]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_eq!(
            read_all(&mut session, &config).await,
            vec![Value::Boolean(true)]
        );
        let refused = session
            .write(&config.points[0], &Value::Boolean(false))
            .await;
        assert!(matches!(refused, Err(DriverError::Rejected(m)) if m.contains("is an input")));
    }

    #[tokio::test]
    async fn the_interlock_reads_inputs_too() {
        let driver = sim_driver();
        let config = device(
            "press",
            json!({ "interlock": [{ "never": { "guardOpen": true, "motor": true } }] }),
            vec![
                point(0, "motor", PropertyType::Boolean, true, json!({ "pin": 1 })),
                point(
                    1,
                    "guardOpen",
                    PropertyType::Boolean,
                    false,
                    json!({ "pin": 2 }),
                ),
            ],
        );
        let mut session = driver.connect(&config).await.expect("connected");
        driver
            .sim()
            .chip(DEFAULT_CHIP)
            .drive(2, Level::High)
            .expect("drive");
        let refused = session
            .write(&config.points[0], &Value::Boolean(true))
            .await;
        assert_eq!(
            refused,
            Err(DriverError::Rejected(
                "interlock refused motor=ON: never guardOpen=ON and motor=ON (guardOpen is ON)"
                    .into()
            ))
        );
        driver
            .sim()
            .chip(DEFAULT_CHIP)
            .drive(2, Level::Low)
            .expect("drive");
        assert!(
            session
                .write(&config.points[0], &Value::Boolean(true))
                .await
                .is_ok()
        );
    }

    fn config_error_of(config: &Config) -> String {
        match sim_driver().validate(config) {
            Err(DriverError::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn bad_configuration_names_device_property_and_field() {
        let one = |ty, writable, visitor| {
            device("d", json!({}), vec![point(0, "p", ty, writable, visitor)])
        };
        let s = PropertyType::String;
        let cases = [
            (
                one(s, true, json!({})),
                "device default/d, property p: visitors.configData.pin: missing",
            ),
            (
                one(s, true, json!({ "pin": 1, "line": 1 })),
                "device default/d, property p: visitors.configData: give pin or line, not both",
            ),
            (
                one(s, true, json!({ "pin": 1, "direction": "in" })),
                "device default/d, property p: visitors.configData.direction: an input cannot be written",
            ),
            (
                one(s, false, json!({ "pin": 1, "initial": "on" })),
                "device default/d, property p: visitors.configData.initial: only outputs",
            ),
            (
                one(s, true, json!({ "pin": 1, "debounce": "5ms" })),
                "device default/d, property p: visitors.configData.debounce: only inputs",
            ),
            (
                one(PropertyType::Float, true, json!({ "pin": 1 })),
                "device default/d, property p: type Float cannot carry a GPIO level",
            ),
        ];
        for (config, expected) in cases {
            let message = config_error_of(&config);
            assert!(
                message.starts_with(expected),
                "{message}\n  expected: {expected}"
            );
        }
    }

    #[test]
    fn two_properties_on_one_line_are_refused() {
        let config = device(
            "d",
            json!({}),
            vec![
                point(0, "a", PropertyType::String, true, json!({ "pin": 4 })),
                point(1, "b", PropertyType::String, true, json!({ "line": 4 })),
                point(
                    2,
                    "c",
                    PropertyType::String,
                    true,
                    json!({ "line": 4, "chip": "gpiochip1" }),
                ),
            ],
        );
        assert_eq!(
            config_error_of(&config),
            "device default/d, property b: visitors.configData.pin: line 4 of gpiochip0 is already used by property a"
        );
    }

    #[test]
    fn interlock_mistakes_and_unsafe_initial_levels_are_configuration_errors() {
        let unknown = traffic_light(json!([{ "mutuallyExclusive": ["red", "blue"] }]));
        assert_eq!(
            config_error_of(&unknown),
            "device default/traffic-light: protocol.configData.interlock[0].mutuallyExclusive: \"blue\" is not a GPIO property of the device (it has red, yellow, green)"
        );
        let mut unsafe_start = traffic_light(json!([{ "mutuallyExclusive": ["red", "green"] }]));
        for index in [0, 2] {
            unsafe_start.points[index].visitor.initial = Some(crate::config::Switch(true));
        }
        assert_eq!(
            config_error_of(&unsafe_start),
            "device default/traffic-light: protocol.configData.interlock: the initial levels of the outputs break a rule: at most one of red, green is ON (red is ON, green is ON)"
        );
    }

    #[test]
    fn the_rpi_backend_takes_no_chip() {
        let mut config = traffic_light(json!([]));
        config.protocol.backend = Some(BackendKind::Rpi);
        config.points[1].visitor.chip = Some("gpiochip0".into());
        assert!(config_error_of(&config).starts_with(
            "device default/traffic-light, property yellow: visitors.configData.chip: the rpi backend"
        ));
        config.points[1].visitor.chip = None;
        config.protocol.chip = Some("gpiochip0".into());
        assert!(
            config_error_of(&config)
                .starts_with("device default/traffic-light: protocol.configData.chip:")
        );
    }

    #[cfg(feature = "rpi")]
    #[tokio::test]
    async fn off_a_pi_the_rpi_backend_marks_the_device_unhealthy_with_the_reason() {
        if crate::platform::default_backend().0 == BackendKind::Rpi {
            println!("skipped: this is a Raspberry Pi");
            return;
        }
        println!("note: the rppal hardware path is not exercised here (not a Raspberry Pi)");
        let mut config = traffic_light(json!([]));
        config.protocol.backend = Some(BackendKind::Rpi);
        let err = sim_driver().connect(&config).await.expect_err("not a Pi");
        assert!(
            matches!(&err, DriverError::Config(m) if m.starts_with("device default/traffic-light, property red: not a Raspberry Pi")),
            "{err:?}"
        );
    }

    #[cfg(feature = "cdev")]
    #[tokio::test]
    async fn without_a_gpio_chip_the_cdev_backend_keeps_retrying_with_a_clear_reason() {
        if std::path::Path::new("/dev/gpiochip7").exists() {
            println!("skipped: this machine has /dev/gpiochip7");
            return;
        }
        println!("note: the gpiocdev hardware path is not exercised here (no GPIO chip)");
        let mut config = traffic_light(json!([]));
        config.protocol.backend = Some(BackendKind::Cdev);
        config.protocol.chip = Some("gpiochip7".into());
        let err = sim_driver().connect(&config).await.expect_err("no chip");
        assert!(err.is_transient(), "{err:?}");
        assert!(
            err.to_string()
                .contains("property red: GPIO chip /dev/gpiochip7 not found"),
            "{err}"
        );
    }

    /// An input whose level cannot be read (a chip that went away).
    struct Unreadable;

    impl InputLine for Unreadable {
        fn get(&self) -> Result<bool, GpioError> {
            Err(GpioError::Io {
                chip: "gone".into(),
                detail: "reading line 2: No such device".into(),
            })
        }

        fn edges(&mut self) -> Option<EdgeStream> {
            None
        }
    }

    #[tokio::test]
    async fn the_interlock_fails_closed_when_a_level_cannot_be_read() {
        let chip = SimChip::new("x");
        let motor = chip
            .request_output(&OutputRequest {
                options: LineOptions {
                    line: 1,
                    active_low: false,
                    bias: None,
                    consumer: "t".into(),
                },
                initial: false,
            })
            .expect("free line");
        let names = vec!["motor".to_owned(), "guardOpen".to_owned()];
        let rules: Vec<crate::config::InterlockRule> =
            serde_json::from_value(json!([{ "never": { "motor": "ON", "guardOpen": "ON" } }]))
                .expect("rules");
        let mut session = GpioSession {
            device: DeviceId::new("default", "press"),
            lines: vec![
                Line::Output(motor),
                Line::Input {
                    line: Box::new(Unreadable),
                    edges: None,
                },
            ],
            properties: names.clone(),
            interlock: Interlock::compile(&rules, &names).expect("valid"),
            watchers: Vec::new(),
        };
        let motor_point = point(0, "motor", PropertyType::Boolean, true, json!({ "pin": 1 }));
        let refused = session.write(&motor_point, &Value::Boolean(true)).await;
        assert_eq!(
            refused,
            Err(DriverError::Io(
                "device default/press, property guardOpen (read for the interlock): GPIO chip gone: reading line 2: No such device".into()
            ))
        );
        assert_eq!(chip.level(1), Ok(Level::Low), "nothing was written");
        assert!(
            session
                .write(&motor_point, &Value::Boolean(false))
                .await
                .is_ok(),
            "switching off needs no other level"
        );
    }

    /// A chip that cannot watch edges (like a GPIO expander without an interrupt line).
    struct NoEdges(SimChip);

    impl GpioChip for NoEdges {
        fn name(&self) -> &str {
            "no-edges"
        }

        fn request_output(
            &self,
            request: &OutputRequest,
        ) -> Result<Box<dyn OutputLine>, GpioError> {
            self.0.request_output(request)
        }

        fn request_input(&self, request: &InputRequest) -> Result<Box<dyn InputLine>, GpioError> {
            if request.edges {
                return Err(GpioError::Io {
                    chip: "no-edges".into(),
                    detail: "EINVAL".into(),
                });
            }
            self.0.request_input(request)
        }
    }

    #[tokio::test]
    async fn inputs_fall_back_to_polling_where_edges_are_unavailable() {
        let chip = NoEdges(SimChip::new("x"));
        let request = InputRequest {
            options: LineOptions {
                line: 1,
                active_low: false,
                bias: None,
                consumer: "t".into(),
            },
            debounce: Some(Duration::from_millis(5)),
            edges: true,
        };
        let mut line = request_input(&chip, &request, "button").expect("plain request");
        assert!(line.edges().is_none(), "polled");
        chip.0.drive(1, Level::High).expect("drive");
        assert_eq!(line.get(), Ok(true), "read directly, without debounce");
        let busy = request_input(&chip, &request, "button").err();
        assert!(
            matches!(busy, Some(GpioError::Busy { .. })),
            "busy is not retried plain"
        );
    }
}
