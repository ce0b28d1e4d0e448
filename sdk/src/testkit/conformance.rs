//! The conformance suite every mapper crate runs from its tests:
//!
//! ```no_run
//! # use edgetwin_sdk::testkit::{SimDriver, conformance};
//! # async fn demo(device_yaml: &str) {
//! let report = conformance::run(SimDriver::new, device_yaml)
//!     .await
//!     .expect("the driver conforms");
//! println!("{report}");
//! # }
//! ```
//!
//! `device_yaml` holds one Device of the driver's protocol and its DeviceModel. Give it every
//! kind of property the driver supports (ReadOnly and ReadWrite, each type): the suite checks
//! them all. It needs at least one `ReadWrite` property of type INT, FLOAT, DOUBLE, BOOLEAN or
//! STRING that accepts the values 1–9, 1.5–9.5, true/false or short strings, and some
//! configuration (protocol or visitor `configData`) for the bad-configuration scenario to spoil.
//! Every scenario runs the real runtime, with a fresh driver from `factory`, against an
//! in-process [`TestBroker`] and a [`TestEdge`], with every cycle of the device shortened to
//! [`CYCLE_MS`]:
//!
//! 1. **every property reported**: each property reported to the cloud is reported, with a
//!    value of its type, and none of them fails to read.
//! 2. **desired → write → read back → reported**, for every ReadWrite property: a desired value
//!    set at the edge is written and reported back; and no `twin/update` ever repeats a
//!    property's previous value (unchanged values are not re-reported; the suite runs without
//!    heartbeat).
//! 3. **bad configuration**: a copy of the device whose every configuration value is replaced
//!    by an invalid one is marked `unhealthy` with a reason, never reports, and the good device
//!    keeps working.
//! 4. **device disappears and returns**: a removed device ignores desired values; when its spec
//!    returns, it applies the desired value set while it was away.
//! 5. **broker restart**: after the broker restarts (losing every session and retained
//!    message), the mapper reconnects, resubscribes, asks for its twin again and applies new
//!    desired values.
//! 6. **delta storm**: 1,000 deltas in a burst settle (no more writes) with the last desired
//!    value reported, after at most one write per change.
//!
//! With [`run_with`] and a [`Faults`] handle on the test device (a fake server in the test, a
//! simulator, a TCP proxy in front of it), three more scenarios check what the driver makes of a
//! misbehaving device, i.e. that its errors have the kinds the runtime acts on:
//!
//! 7. **device refuses**: the device refuses a property (answers, but with its protocol's
//!    refusal): its reads fail as [`DriverError::Rejected`](crate::DriverError::Rejected), the
//!    edge hears of it (`read_error`), the device stays online; a write to it is reported as
//!    refused (`write_error`); when the device refuses every property it is `unhealthy`; after
//!    `heal` all is well again.
//! 8. **device hangs**: the device stops answering (connections stay open): reads time out or
//!    fail as I/O errors, the device goes `offline` (or `unhealthy`); after `heal` it is online
//!    and works again (no replies out of step).
//! 9. **link drops**: the device closes every connection and refuses new ones: the driver
//!    reports [`DriverError::Disconnected`](crate::DriverError::Disconnected) or
//!    [`DriverError::Io`](crate::DriverError::Io), never a refusal, the device goes `offline`;
//!    after `heal` it reconnects and works again.
//!
//! [`run`] runs the first six and lists the others as skipped. A failure names the scenario,
//! the property and what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use edgetwin_model::devices::load::{self, Manifest};
use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::value::PropertyType;
use edgetwin_model::wire;
use edgetwin_model::wire::payload::DeviceSpecMessage;
use serde_json::Value as Json;

use super::edge::{EdgeDevice, TestEdge};
use crate::config::{ConfigMap, resolve};
use crate::driver::{Driver, serves_protocol};
use crate::runtime::{Mapper, MapperHandle};
use edgetwin_testkit::{BrokerKind, TestBroker};

/// The node the suite's edge and mapper run on.
pub const NODE: &str = "conformance";
/// The collect and report cycle the suite gives every property, in milliseconds.
pub const CYCLE_MS: i64 = 50;
/// How long the suite waits for any one expected outcome.
pub const WAIT: Duration = Duration::from_secs(15);
/// How many deltas the storm sends.
pub const STORM: usize = 1000;
/// The runtime's limit on one read or write in the suite: a device that does not answer within
/// it has hung.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A scenario that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance scenario {scenario:?} failed: {message}")]
pub struct ConformanceError {
    /// The scenario.
    pub scenario: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The scenarios that passed, with how long each took, and those that could not run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConformanceReport {
    /// Scenario names and durations, in order.
    pub passed: Vec<(&'static str, Duration)>,
    /// Scenarios that did not run, and why (the [`Faults`] given cannot make the device
    /// misbehave that way).
    pub skipped: Vec<(&'static str, String)>,
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, took) in &self.passed {
            writeln!(f, "ok    {name} ({took:.1?})")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "skip  {name}: {why}")?;
        }
        Ok(())
    }
}

/// The scenarios every run runs, in order.
pub const SCENARIOS: [&str; 6] = [
    "every-property-reported",
    "desired-write-readback-reported",
    "bad-config-unhealthy-others-unaffected",
    "device-disappears-and-returns",
    "broker-restart",
    "delta-storm",
];

/// The scenarios that need [`Faults`] ([`run_with`]), in order, after [`SCENARIOS`].
pub const FAULT_SCENARIOS: [&str; 3] = ["device-refuses", "device-hangs", "link-drops"];

/// A handle on the test device that makes it misbehave, for the scenarios of
/// [`FAULT_SCENARIOS`]. The test owns the device (a fake server, a simulator, a
/// [`TcpProxy`](edgetwin_testkit::TcpProxy) in front of a real one) and implements this on a
/// handle to it. A method that returns `false` cannot do it: its scenario is skipped.
pub trait Faults: Send + Sync {
    /// From now on the device refuses every request (read or write) for `property` the way its
    /// protocol refuses (an `ERR` reply, a Modbus exception), until [`Faults::heal`].
    fn refuse(&self, property: &str) -> bool {
        let _ = property;
        false
    }

    /// From now on the device answers nothing: connections stay open, requests get no reply,
    /// until [`Faults::heal`].
    fn hang(&self) -> bool {
        false
    }

    /// The device closes every open connection and refuses new ones until [`Faults::heal`].
    fn drop_link(&self) -> bool {
        false
    }

    /// Back to normal: every property answered, connections accepted.
    fn heal(&self);
}

/// No faults: [`run`] uses it, and skips the scenarios that need faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl Faults for NoFaults {
    fn heal(&self) {}
}

/// A [`TcpProxy`](edgetwin_testkit::TcpProxy) between the driver and a device that speaks TCP
/// makes it hang ([`TcpProxy::blackhole`](edgetwin_testkit::TcpProxy::blackhole)) and drop the
/// link ([`TcpProxy::cut`](edgetwin_testkit::TcpProxy::cut)); refusing a property is the
/// device's business (not supported here). Point the Device's address at
/// [`TcpProxy::addr`](edgetwin_testkit::TcpProxy::addr).
impl Faults for edgetwin_testkit::TcpProxy {
    fn hang(&self) -> bool {
        self.blackhole();
        true
    }

    fn drop_link(&self) -> bool {
        self.cut();
        true
    }

    fn heal(&self) {
        edgetwin_testkit::TcpProxy::heal(self);
    }
}

/// Runs the scenarios of [`SCENARIOS`]; stops at the first failure. Those of
/// [`FAULT_SCENARIOS`] are listed in [`ConformanceReport::skipped`]: use [`run_with`].
pub async fn run<D: Driver>(
    factory: impl Fn() -> D,
    device_yaml: &str,
) -> Result<ConformanceReport, ConformanceError> {
    run_scenarios(factory, device_yaml, None).await
}

/// Runs every scenario, those of [`FAULT_SCENARIOS`] with `faults` making the device misbehave
/// (a scenario whose fault `faults` cannot cause is skipped); stops at the first failure.
pub async fn run_with<D: Driver>(
    factory: impl Fn() -> D,
    device_yaml: &str,
    faults: &dyn Faults,
) -> Result<ConformanceReport, ConformanceError> {
    run_scenarios(factory, device_yaml, Some(faults)).await
}

async fn run_scenarios<D: Driver>(
    factory: impl Fn() -> D,
    device_yaml: &str,
    given: Option<&dyn Faults>,
) -> Result<ConformanceReport, ConformanceError> {
    let subject = Subject::parse::<D>(device_yaml).map_err(|message| ConformanceError {
        scenario: "setup",
        message,
    })?;
    let mut report = ConformanceReport::default();
    let faults = given.unwrap_or(&NoFaults);
    for name in SCENARIOS.into_iter().chain(FAULT_SCENARIOS) {
        if given.is_none() && FAULT_SCENARIOS.contains(&name) {
            let why = "needs a handle on the device that makes it misbehave: conformance::run_with";
            report.skipped.push((name, why.into()));
            continue;
        }
        let started = Instant::now();
        faults.heal();
        let env = Env::start(factory())
            .await
            .map_err(|message| ConformanceError {
                scenario: name,
                message,
            })?;
        let result = match name {
            "every-property-reported" => every_property_reported(&subject, &env).await,
            "desired-write-readback-reported" => desired_round_trip(&subject, &env).await,
            "bad-config-unhealthy-others-unaffected" => bad_config(&subject, &env).await,
            "device-disappears-and-returns" => disappear_and_return(&subject, &env).await,
            "broker-restart" => broker_restart(&subject, &env).await,
            "delta-storm" => delta_storm(&subject, &env).await,
            "device-refuses" => device_refuses(&subject, &env, faults).await,
            "device-hangs" => device_hangs(&subject, &env, faults).await,
            _ => link_drops(&subject, &env, faults).await,
        };
        faults.heal();
        env.stop().await;
        match result {
            Ok(Outcome::Passed) => report.passed.push((name, started.elapsed())),
            Ok(Outcome::Skipped(why)) => report.skipped.push((name, why)),
            Err(message) => {
                return Err(ConformanceError {
                    scenario: name,
                    message,
                });
            }
        }
    }
    Ok(report)
}

/// How a scenario ended, when it did not fail.
enum Outcome {
    Passed,
    Skipped(String),
}

/// What the suite knows of one property of the device under test.
#[derive(Debug, Clone)]
struct Property {
    name: String,
    ty: PropertyType,
    writable: bool,
    reported: bool,
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = if self.writable {
            "ReadWrite"
        } else {
            "ReadOnly"
        };
        write!(
            f,
            "property {:?} ({}, {access})",
            self.name,
            self.ty.twin_type_name().to_uppercase()
        )
    }
}

/// The device under test.
struct Subject {
    device: Device,
    model: DeviceModel,
    /// `{namespace}/{name}`.
    id: String,
    /// Every property of the device, in spec order.
    properties: Vec<Property>,
    /// The ReadWrite property the scenarios drive (the first one the suite can write).
    property: String,
    ty: PropertyType,
}

impl Subject {
    fn parse<D: Driver>(device_yaml: &str) -> Result<Subject, String> {
        let documents =
            load::from_str(device_yaml, "<conformance device_yaml>").map_err(|e| e.to_string())?;
        let mut devices = Vec::new();
        let mut models = Vec::new();
        for document in documents {
            match document.manifest {
                Manifest::Device(device) => devices.push(device),
                Manifest::DeviceModel(model) => models.push(model),
            }
        }
        let mut device = devices
            .into_iter()
            .find(|d| serves_protocol::<D>(d.protocol_name()))
            .ok_or_else(|| {
                format!(
                    "device_yaml has no Device with protocolName {:?}",
                    D::PROTOCOL
                )
            })?;
        let model = models
            .into_iter()
            .find(|m| Some(m.name()) == device.model_name() && m.namespace() == device.namespace())
            .ok_or("device_yaml has no DeviceModel for the device")?;
        for property in &mut device.spec.properties {
            property.collect_cycle = Some(CYCLE_MS);
            property.report_cycle = Some(CYCLE_MS);
        }
        let resolved = resolve(&device, Some(&model)).map_err(|e| e.to_string())?;
        let properties: Vec<Property> = resolved
            .properties
            .iter()
            .map(|p| Property {
                name: p.name.clone(),
                ty: p.ty,
                writable: p.writable,
                reported: p.report_to_cloud,
            })
            .collect();
        let target = properties
            .iter()
            .find(|p| drivable(p))
            .ok_or("the device needs a ReadWrite property of type INT, FLOAT, DOUBLE, BOOLEAN or STRING reported to the cloud")?;
        Ok(Subject {
            id: format!("{}/{}", device.namespace(), device.name()),
            property: target.name.clone(),
            ty: target.ty,
            properties,
            device,
            model,
        })
    }

    /// The retained spec payload of `device` with this subject's model.
    fn spec_payload(&self, device: &Device) -> Vec<u8> {
        let message = DeviceSpecMessage {
            device: device.clone(),
            model: Some(self.model.clone()),
        };
        wire::encode(&message).unwrap_or_default()
    }

    /// A copy named `{name}-broken` whose every configuration value is invalid.
    fn broken_copy(&self) -> Result<Device, String> {
        let resolved = resolve(&self.device, Some(&self.model)).map_err(|e| e.to_string())?;
        let mut broken = self.device.clone();
        broken.metadata.name = Some(format!("{}-broken", self.device.name()));
        let mut spoiled = 0;
        if let Some(protocol) = broken.spec.protocol.as_mut() {
            let mut config = resolved.protocol_config.to_map();
            spoiled += spoil(&mut config);
            protocol.config_data = Some(config);
        }
        for property in &mut broken.spec.properties {
            let Some(merged) = resolved.properties.iter().find(|p| p.name == property.name) else {
                continue;
            };
            let mut config = merged.visitor_config.to_map();
            spoiled += spoil(&mut config);
            let visitors = property.visitors.get_or_insert_with(Default::default);
            visitors.config_data = Some(config);
        }
        if spoiled == 0 {
            return Err("the device has no configuration value (protocol or visitors configData) to make invalid".into());
        }
        Ok(broken)
    }

    /// The driven property.
    fn target(&self) -> Property {
        Property {
            name: self.property.clone(),
            ty: self.ty,
            writable: true,
            reported: true,
        }
    }

    /// The `n`-th test value of the driven property that differs from `avoid`, as a wire
    /// string.
    fn value(&self, n: usize, avoid: Option<&str>) -> String {
        test_value(self.ty, n, avoid)
    }
}

/// Whether the suite can drive a property: ReadWrite, reported, of a scalar type.
fn drivable(p: &Property) -> bool {
    p.writable && p.reported && !matches!(p.ty, PropertyType::Bytes | PropertyType::Stream)
}

/// The `n`-th test value of type `ty` that differs from `avoid`, as a wire string.
fn test_value(ty: PropertyType, n: usize, avoid: Option<&str>) -> String {
    let candidates: Vec<String> = match ty {
        PropertyType::Int => (1..=9).map(|i| i.to_string()).collect(),
        PropertyType::Float | PropertyType::Double => (1..=9).map(|i| format!("{i}.5")).collect(),
        PropertyType::Boolean => vec!["true".into(), "false".into()],
        _ => (1..=9).map(|i| format!("edgetwin-{i}")).collect(),
    };
    let same =
        |c: &str| avoid.is_some_and(|a| edgetwin_model::twin::same_value(ty, c, a) || c == a);
    let usable: Vec<&String> = candidates.iter().filter(|c| !same(c)).collect();
    usable[n % usable.len()].clone()
}

/// Replaces every leaf of a configuration by an object no driver field accepts as a scalar;
/// returns how many leaves were replaced.
fn spoil(config: &mut ConfigMap) -> usize {
    fn spoil_value(value: &mut Json) -> usize {
        match value {
            Json::Object(map) if !map.is_empty() => map.values_mut().map(spoil_value).sum(),
            _ => {
                *value = serde_json::json!({"edgetwin-conformance": ["not a valid value"]});
                1
            }
        }
    }
    config.values_mut().map(spoil_value).sum()
}

/// The error kinds of [`crate::DriverError::kind`] that mean a broken link.
const TRANSIENT_KINDS: [&str; 3] = ["io", "timeout", "disconnected"];
/// The error kinds that mean the device answered and refused.
const REFUSAL_KINDS: [&str; 2] = ["rejected", "unsupported"];

/// Counts of a device's read (or write) errors by kind, to compare before and after a fault.
#[derive(Debug, Clone, Default, PartialEq)]
struct ErrorCounts(BTreeMap<&'static str, u64>);

impl ErrorCounts {
    fn since(&self, before: &ErrorCounts, kinds: &[&'static str]) -> u64 {
        kinds
            .iter()
            .map(|k| {
                let now = self.0.get(k).copied().unwrap_or(0);
                now.saturating_sub(before.0.get(k).copied().unwrap_or(0))
            })
            .sum()
    }

    /// `kind ×n` for each kind that grew since `before`.
    fn describe_since(&self, before: &ErrorCounts) -> String {
        let grown: Vec<String> = self
            .0
            .iter()
            .filter_map(|(kind, n)| {
                let d = n.saturating_sub(before.0.get(kind).copied().unwrap_or(0));
                (d > 0).then(|| format!("{kind} ×{d}"))
            })
            .collect();
        if grown.is_empty() {
            "none".into()
        } else {
            grown.join(", ")
        }
    }
}

/// A broker, an edge and the mapper under test.
struct Env {
    broker: TestBroker,
    edge: TestEdge,
    mapper: MapperHandle,
}

impl Env {
    async fn start<D: Driver>(driver: D) -> Result<Env, String> {
        let broker = TestBroker::start_restartable(BrokerKind::Embedded)
            .await
            .map_err(|e| format!("cannot start the test broker: {e}"))?;
        let edge = TestEdge::start(broker.addr(), NODE).await;
        let mapper = Mapper::builder()
            .driver(driver)
            .node(NODE)
            .broker(broker.addr().to_string())
            .options(|o| {
                o.backoff_initial = Duration::from_millis(50);
                o.backoff_max = Duration::from_millis(500);
                o.default_collect_cycle = Duration::from_millis(CYCLE_MS as u64);
                o.default_report_cycle = Duration::from_millis(CYCLE_MS as u64);
                o.read_timeout = CALL_TIMEOUT;
                o.write_timeout = CALL_TIMEOUT;
                o.connect_timeout = 2 * CALL_TIMEOUT;
            })
            .build()
            .map_err(|e| e.to_string())?
            .spawn();
        Ok(Env {
            broker,
            edge,
            mapper,
        })
    }

    async fn stop(self) {
        if let Err(err) = self.mapper.shutdown().await {
            tracing::warn!(error = %err, "mapper did not stop cleanly");
        }
        drop(self.edge);
        drop(self.broker);
    }

    fn publish(&self, subject: &Subject, device: &Device) {
        self.edge.publish_spec(
            device.namespace(),
            device.name(),
            subject.spec_payload(device),
        );
    }

    async fn wait(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&EdgeDevice) -> bool,
    ) -> Result<EdgeDevice, String> {
        self.edge.wait_for(id, WAIT, what, done).await
    }

    fn read_errors(&self, subject: &Subject) -> ErrorCounts {
        let metrics = self.mapper.metrics();
        ErrorCounts(
            TRANSIENT_KINDS
                .into_iter()
                .chain(REFUSAL_KINDS)
                .chain(["config"])
                .map(|k| (k, metrics.read_errors_of(&subject.id, k)))
                .collect(),
        )
    }

    fn write_errors(&self, subject: &Subject) -> ErrorCounts {
        let metrics = self.mapper.metrics();
        ErrorCounts(
            TRANSIENT_KINDS
                .into_iter()
                .chain(REFUSAL_KINDS)
                .chain(["config"])
                .map(|k| (k, metrics.write_errors_of(&subject.id, k)))
                .collect(),
        )
    }

    /// Waits until the subject is online and has reported the driven property; returns the
    /// value it reported.
    async fn online(&self, subject: &Subject) -> Result<String, String> {
        self.wait(&subject.id, "state online", |d| {
            d.states.last().is_some_and(|s| s.state == "online")
        })
        .await?;
        self.first_report(subject, &subject.target()).await
    }

    /// Waits for a first report of `property`; the error says what the edge heard instead.
    async fn first_report(&self, subject: &Subject, property: &Property) -> Result<String, String> {
        let found = self
            .edge
            .wait_for(&subject.id, WAIT, "", |d| {
                d.reported.contains_key(&property.name)
            })
            .await;
        match found {
            Ok(device) => Ok(device.reported[&property.name].clone()),
            Err(_) => Err(self.never_reported(subject, property)),
        }
    }

    /// Why `property` was never reported, as far as the edge and the metrics tell.
    fn never_reported(&self, subject: &Subject, property: &Property) -> String {
        let device = self.edge.device(&subject.id);
        let mut message = format!("{property} was never reported within {WAIT:?}");
        match device.read_errors.get(&property.name) {
            Some(reason) => message.push_str(&format!("; its reads fail: {reason}")),
            None => message.push_str(&format!(
                "; no read error was reported for it either (read errors of the device: {}; state: {})",
                self.read_errors(subject).describe_since(&ErrorCounts::default()),
                last_state(&device)
            )),
        }
        message
    }

    /// Sets a desired value of `property` and waits until it is reported back; the error says
    /// what happened to the write.
    async fn round_trip(
        &self,
        subject: &Subject,
        property: &Property,
        value: &str,
    ) -> Result<(), String> {
        let writes = self.mapper.metrics().writes_of(&subject.id);
        let write_errors = self.write_errors(subject);
        self.edge.set_desired(&subject.id, &property.name, value);
        let done = self
            .edge
            .wait_for(&subject.id, WAIT, "", |d| {
                d.reported.get(&property.name).is_some_and(|r| {
                    r == value || edgetwin_model::twin::same_value(property.ty, r, value)
                })
            })
            .await;
        if done.is_ok() {
            return Ok(());
        }
        let device = self.edge.device(&subject.id);
        let mut message = format!(
            "{property}: the desired value {value:?} was not reported back within {WAIT:?}; {}",
            match device.reported.get(&property.name) {
                Some(reported) => format!("reported {reported:?}"),
                None => "nothing reported".into(),
            }
        );
        let written = self.mapper.metrics().writes_of(&subject.id) - writes;
        if let Some(error) = device
            .write_errors
            .get(&property.name)
            .filter(|e| e.value == value)
        {
            message.push_str(&format!("; the write was refused: {}", error.reason));
        } else if written > 0 {
            message.push_str(&format!(
                "; the driver reported {written} successful write(s), so the value did not reach the device as written, or the device reads back another value"
            ));
        } else {
            message.push_str(&format!(
                "; no write succeeded (write errors: {})",
                self.write_errors(subject).describe_since(&write_errors)
            ));
        }
        if let Some(reason) = device.read_errors.get(&property.name) {
            message.push_str(&format!("; its reads fail: {reason}"));
        }
        Err(message)
    }

    /// Waits until the latest state of the subject, after the first `skip` states, is one of
    /// `states`.
    async fn state_after(
        &self,
        subject: &Subject,
        skip: usize,
        states: &[&str],
    ) -> Result<EdgeDevice, ()> {
        self.edge
            .wait_for(&subject.id, WAIT, "", |d| {
                d.states
                    .iter()
                    .skip(skip)
                    .any(|s| states.contains(&s.state.as_str()))
            })
            .await
            .map_err(|_| ())
    }
}

fn last_state(device: &EdgeDevice) -> String {
    match device.states.last() {
        Some(state) => match &state.reason {
            Some(reason) => format!("{} ({reason})", state.state),
            None => state.state.clone(),
        },
        None => "none".into(),
    }
}

async fn every_property_reported(subject: &Subject, env: &Env) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    env.wait(&subject.id, "state online", |d| {
        d.states.last().is_some_and(|s| s.state == "online")
    })
    .await?;
    let reported: Vec<&Property> = subject.properties.iter().filter(|p| p.reported).collect();
    let all = env
        .edge
        .wait_for(&subject.id, WAIT, "", |d| {
            reported.iter().all(|p| d.reported.contains_key(&p.name))
        })
        .await;
    if all.is_err() {
        let device = env.edge.device(&subject.id);
        let missing: Vec<String> = reported
            .iter()
            .filter(|p| !device.reported.contains_key(&p.name))
            .map(|p| env.never_reported(subject, p))
            .collect();
        return Err(missing.join("\n"));
    }
    // A few more cycles: a property that read once and fails since shows now.
    tokio::time::sleep(Duration::from_millis(10 * CYCLE_MS as u64)).await;
    let device = env.edge.device(&subject.id);
    for property in &reported {
        let value = &device.reported[&property.name];
        if let Err(err) = property.ty.parse(value) {
            return Err(format!(
                "{property} was reported as {value:?}, which is not a value of its type: {err}"
            ));
        }
        if let Some(reason) = device.read_errors.get(&property.name) {
            return Err(format!(
                "{property} was reported once, but its reads fail: {reason}"
            ));
        }
    }
    Ok(Outcome::Passed)
}

async fn desired_round_trip(subject: &Subject, env: &Env) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    env.online(subject).await?;
    for property in subject.properties.iter().filter(|p| drivable(p)) {
        let first = env.first_report(subject, property).await?;
        let target = test_value(property.ty, 0, Some(&first));
        env.round_trip(subject, property, &target).await?;
        let next = test_value(property.ty, 1, Some(&target));
        env.round_trip(subject, property, &next).await?;
    }
    // Ten more report cycles with nothing to report.
    tokio::time::sleep(Duration::from_millis(10 * CYCLE_MS as u64)).await;
    let device = env.edge.device(&subject.id);
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for (index, report) in device.reports.iter().enumerate() {
        for (property, value) in &report.values {
            if last.insert(property, value) == Some(value.as_str()) {
                return Err(format!(
                    "twin/update #{index} re-reported the unchanged value {value:?} of property {property:?}: report only changes"
                ));
            }
        }
    }
    Ok(Outcome::Passed)
}

async fn bad_config(subject: &Subject, env: &Env) -> Result<Outcome, String> {
    let broken = subject.broken_copy()?;
    let broken_id = format!("{}/{}", broken.namespace(), broken.name());
    env.publish(subject, &broken);
    env.publish(subject, &subject.device);
    let state = env
        .wait(&broken_id, "state unhealthy", |d| {
            d.states.last().is_some_and(|s| s.state == "unhealthy")
        })
        .await?;
    let reason = state
        .states
        .last()
        .and_then(|s| s.reason.clone())
        .unwrap_or_default();
    if reason.trim().is_empty() {
        return Err("the broken device is unhealthy without a reason".into());
    }
    let first = env.online(subject).await?;
    env.round_trip(subject, &subject.target(), &subject.value(2, Some(&first)))
        .await?;
    let broken_state = env.edge.device(&broken_id);
    if !broken_state.reports.is_empty() {
        return Err(format!(
            "the broken device reported values: {:?}",
            broken_state.reports
        ));
    }
    if broken_state.states.iter().any(|s| s.state == "online") {
        return Err("the broken device was reported online".into());
    }
    Ok(Outcome::Passed)
}

async fn disappear_and_return(subject: &Subject, env: &Env) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    let first = env.online(subject).await?;
    env.edge
        .remove_spec(subject.device.namespace(), subject.device.name());
    // Give the mapper time to drop the device, then set a value it must not apply.
    tokio::time::sleep(Duration::from_millis(10 * CYCLE_MS as u64)).await;
    let away = subject.value(3, Some(&first));
    env.edge.set_desired(&subject.id, &subject.property, &away);
    tokio::time::sleep(Duration::from_millis(20 * CYCLE_MS as u64)).await;
    let device = env.edge.device(&subject.id);
    if device.reported.get(&subject.property) == Some(&away) {
        return Err(format!(
            "the removed device still applied the desired value {away:?} of property {:?}",
            subject.property
        ));
    }
    env.publish(subject, &subject.device);
    env.wait(
        &subject.id,
        &format!(
            "property {:?} reported as {away:?} after the device returned",
            subject.property
        ),
        |d| d.reported.get(&subject.property) == Some(&away),
    )
    .await?;
    Ok(Outcome::Passed)
}

async fn broker_restart(subject: &Subject, env: &Env) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    let first = env.online(subject).await?;
    let gets_before = env.edge.device(&subject.id).twin_gets;
    env.broker
        .restart(Duration::from_millis(500))
        .await
        .map_err(|e| format!("cannot restart the broker: {e}"))?;
    env.wait(&subject.id, "a twin/get after the restart", |d| {
        d.twin_gets > gets_before
    })
    .await?;
    let target = subject.value(4, Some(&first));
    env.round_trip(subject, &subject.target(), &target).await?;
    Ok(Outcome::Passed)
}

async fn delta_storm(subject: &Subject, env: &Env) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    let current = env.online(subject).await?;
    let writes_before = env.mapper.metrics().writes_of(&subject.id);
    // Values cycle through the candidates; the last one differs from the current value.
    let values: Vec<String> = (0..STORM)
        .map(|i| subject.value(STORM - 1 - i, Some(&current)))
        .collect();
    let changes = 1 + values.windows(2).filter(|w| w[0] != w[1]).count();
    for value in &values {
        env.edge.set_desired(&subject.id, &subject.property, value);
    }
    let last = values.last().cloned().unwrap_or_default();
    // Settled: the last value is reported and no write happened for ten cycles. (A value of
    // the storm can be reported earlier too, so the reported value alone proves nothing.)
    let quiet = Duration::from_millis(10 * CYCLE_MS as u64);
    let deadline = Instant::now() + WAIT;
    let written = loop {
        let before = env.mapper.metrics().writes_of(&subject.id);
        tokio::time::sleep(quiet).await;
        let after = env.mapper.metrics().writes_of(&subject.id);
        let reported = env
            .edge
            .device(&subject.id)
            .reported
            .get(&subject.property)
            .cloned();
        if before == after && reported.as_deref() == Some(last.as_str()) {
            break after - writes_before;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the storm did not settle within {WAIT:?}: {} writes so far, property {:?} reported as {reported:?}, last desired {last:?}",
                after - writes_before,
                subject.property
            ));
        }
    };
    if written == 0 {
        return Err(format!(
            "the storm ended without any write of property {:?}",
            subject.property
        ));
    }
    if written as usize > changes {
        return Err(format!(
            "{written} writes of property {:?} for {changes} changes of the desired value",
            subject.property
        ));
    }
    if env.edge.device(&subject.id).reported.get(&subject.property) != Some(&last) {
        return Err(format!(
            "property {:?}: the reported value moved away from the last desired value {last:?}",
            subject.property
        ));
    }
    Ok(Outcome::Passed)
}

async fn device_refuses(
    subject: &Subject,
    env: &Env,
    faults: &dyn Faults,
) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    let first = env.online(subject).await?;
    let target = subject.target();
    let reads_before = env.read_errors(subject);
    let states_before = env.edge.device(&subject.id).states.len();
    if !faults.refuse(&target.name) {
        return Ok(Outcome::Skipped("Faults::refuse is not supported".into()));
    }
    // Reads: refused, reported to the edge, the device stays online.
    let deadline = Instant::now() + WAIT;
    loop {
        let reads = env.read_errors(subject);
        let device = env.edge.device(&subject.id);
        if reads.since(&reads_before, &TRANSIENT_KINDS) > 0 {
            return Err(format!(
                "{target}: the device refused to read it, and the driver returned a transient error ({}){}: a refusal must be DriverError::Rejected; as an I/O error, timeout or disconnect the runtime takes it for a broken link (it counts against the device, which is reconnected and shown offline)",
                reads.describe_since(&reads_before),
                device
                    .read_errors
                    .get(&target.name)
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        if reads.since(&reads_before, &REFUSAL_KINDS) > 0
            && device.read_errors.contains_key(&target.name)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{target}: the device refused to read it, but within {WAIT:?} no read error reached the edge (read errors: {}; state: {})",
                reads.describe_since(&reads_before),
                last_state(&device)
            ));
        }
        tokio::time::sleep(Duration::from_millis(CYCLE_MS as u64)).await;
    }
    // Writes: refused, reported as a write error.
    let writes_before = env.write_errors(subject);
    let refused_value = subject.value(5, Some(&first));
    env.edge
        .set_desired(&subject.id, &target.name, &refused_value);
    let deadline = Instant::now() + WAIT;
    loop {
        let writes = env.write_errors(subject);
        let device = env.edge.device(&subject.id);
        if writes.since(&writes_before, &TRANSIENT_KINDS) > 0 {
            return Err(format!(
                "{target}: the device refused to write {refused_value:?}, and the driver returned a transient error ({}): a refusal must be DriverError::Rejected, so that the cloud sees the write refused instead of the device offline",
                writes.describe_since(&writes_before)
            ));
        }
        if device
            .write_errors
            .get(&target.name)
            .is_some_and(|e| e.value == refused_value)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{target}: the device refused to write {refused_value:?}, but within {WAIT:?} no write error reached the edge (write errors: {}; reported: {:?})",
                writes.describe_since(&writes_before),
                device.reported.get(&target.name)
            ));
        }
        tokio::time::sleep(Duration::from_millis(CYCLE_MS as u64)).await;
    }
    let others: Vec<&Property> = subject
        .properties
        .iter()
        .filter(|p| p.name != target.name)
        .collect();
    let device = env.edge.device(&subject.id);
    if let Some(state) = device
        .states
        .iter()
        .skip(states_before)
        .find(|s| s.state != "online" && !others.is_empty())
    {
        return Err(format!(
            "{target}: one refused property made the device {} ({}); the others still answer, so it must stay online",
            state.state,
            state.reason.clone().unwrap_or_default()
        ));
    }
    // Every property refused: the device is unhealthy.
    if others.iter().all(|p| faults.refuse(&p.name)) {
        let states = env.edge.device(&subject.id).states.len();
        if env
            .state_after(subject, states, &["unhealthy"])
            .await
            .is_err()
        {
            return Err(format!(
                "the device refused every property, but it was not reported unhealthy within {WAIT:?} (state: {})",
                last_state(&env.edge.device(&subject.id))
            ));
        }
    }
    faults.heal();
    let states = env.edge.device(&subject.id).states.len();
    if env
        .edge
        .device(&subject.id)
        .states
        .last()
        .is_some_and(|s| s.state != "online")
        && env.state_after(subject, states, &["online"]).await.is_err()
    {
        return Err(format!(
            "after the device answered again, it was not reported online within {WAIT:?}"
        ));
    }
    env.wait(
        &subject.id,
        "every read error cleared after the device answered again",
        |d| d.read_errors.is_empty(),
    )
    .await?;
    env.round_trip(subject, &target, &subject.value(6, Some(&refused_value)))
        .await?;
    Ok(Outcome::Passed)
}

async fn device_hangs(
    subject: &Subject,
    env: &Env,
    faults: &dyn Faults,
) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    let first = env.online(subject).await?;
    let reads_before = env.read_errors(subject);
    let states = env.edge.device(&subject.id).states.len();
    if !faults.hang() {
        return Ok(Outcome::Skipped("Faults::hang is not supported".into()));
    }
    if env
        .state_after(subject, states, &["offline", "unhealthy"])
        .await
        .is_err()
    {
        let reads = env.read_errors(subject);
        let refusals = reads.since(&reads_before, &REFUSAL_KINDS);
        return Err(format!(
            "the device stopped answering, but it was not reported offline or unhealthy within {WAIT:?} (read errors: {}){}",
            reads.describe_since(&reads_before),
            if refusals > 0 {
                ": a device that does not answer must fail with DriverError::Timeout, Io or Disconnected, not Rejected"
            } else {
                ": reads of a silent device must fail (the runtime limits each read to the suite's CALL_TIMEOUT)"
            }
        ));
    }
    let reads = env.read_errors(subject);
    if reads.since(&reads_before, &TRANSIENT_KINDS) == 0 {
        return Err(format!(
            "the device stopped answering, and no read failed with a timeout, I/O error or disconnect (read errors: {})",
            reads.describe_since(&reads_before)
        ));
    }
    faults.heal();
    recovers(subject, env, &first, "the device answered again").await
}

async fn link_drops(subject: &Subject, env: &Env, faults: &dyn Faults) -> Result<Outcome, String> {
    env.publish(subject, &subject.device);
    let first = env.online(subject).await?;
    let reads_before = env.read_errors(subject);
    let states = env.edge.device(&subject.id).states.len();
    if !faults.drop_link() {
        return Ok(Outcome::Skipped(
            "Faults::drop_link is not supported".into(),
        ));
    }
    let offline = env
        .state_after(subject, states, &["offline", "unhealthy"])
        .await;
    let reads = env.read_errors(subject);
    if reads.since(&reads_before, &REFUSAL_KINDS) > 0 {
        return Err(format!(
            "the device closed the connection, and reads failed as refusals ({}): a closed connection must be DriverError::Disconnected or Io, so that the runtime reconnects",
            reads.describe_since(&reads_before)
        ));
    }
    if offline.is_err() {
        return Err(format!(
            "the device closed the connection and refused new ones, but it was not reported offline within {WAIT:?} (read errors: {})",
            reads.describe_since(&reads_before)
        ));
    }
    faults.heal();
    recovers(
        subject,
        env,
        &first,
        "the device accepted connections again",
    )
    .await
}

/// After a fault healed: the subject is online again and a desired value round-trips.
async fn recovers(
    subject: &Subject,
    env: &Env,
    first: &str,
    what: &str,
) -> Result<Outcome, String> {
    if env
        .wait(&subject.id, "", |d| {
            d.states.last().is_some_and(|s| s.state == "online")
        })
        .await
        .is_err()
    {
        return Err(format!(
            "after {what}, the device was not reported online within {WAIT:?} (state: {})",
            last_state(&env.edge.device(&subject.id))
        ));
    }
    let reported = env
        .edge
        .device(&subject.id)
        .reported
        .get(&subject.property)
        .cloned()
        .unwrap_or_else(|| first.to_owned());
    env.round_trip(
        subject,
        &subject.target(),
        &subject.value(7, Some(&reported)),
    )
    .await
    .map_err(|e| format!("after {what}: {e}"))?;
    Ok(Outcome::Passed)
}
