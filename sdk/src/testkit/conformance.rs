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
//! `device_yaml` holds one Device of the driver's protocol and its DeviceModel. The device needs
//! a `ReadWrite` property of type INT, FLOAT, DOUBLE, BOOLEAN or STRING that accepts the values
//! 1–9, 1.5–9.5, true/false or short strings, and some configuration (protocol or visitor
//! `configData`) for the bad-configuration scenario to spoil. Every scenario runs the real
//! runtime, with a fresh driver from `factory`, against an in-process [`TestBroker`] and a
//! [`TestEdge`], with every cycle of the device shortened to [`CYCLE_MS`]:
//!
//! 1. **desired → write → read back → reported**: a desired value set at the edge is written
//!    and reported back; and no `twin/update` ever repeats a property's previous value
//!    (unchanged values are not re-reported; the suite runs without heartbeat).
//! 2. **bad configuration**: a copy of the device whose every configuration value is replaced
//!    by an invalid one is marked `unhealthy` with a reason, never reports, and the good device
//!    keeps working.
//! 3. **device disappears and returns**: a removed device ignores desired values; when its spec
//!    returns, it applies the desired value set while it was away.
//! 4. **broker restart**: after the broker restarts (losing every session and retained
//!    message), the mapper reconnects, resubscribes, asks for its twin again and applies new
//!    desired values.
//! 5. **delta storm**: 1,000 deltas in a burst settle (no more writes) with the last desired
//!    value reported, after at most one write per change.

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
use crate::driver::Driver;
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

/// A scenario that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance scenario {scenario:?} failed: {message}")]
pub struct ConformanceError {
    /// The scenario.
    pub scenario: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The scenarios that passed, with how long each took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConformanceReport {
    /// Scenario names and durations, in order.
    pub passed: Vec<(&'static str, Duration)>,
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, took) in &self.passed {
            writeln!(f, "ok  {name} ({took:.1?})")?;
        }
        Ok(())
    }
}

/// The scenarios, in the order they run.
pub const SCENARIOS: [&str; 5] = [
    "desired-write-readback-reported",
    "bad-config-unhealthy-others-unaffected",
    "device-disappears-and-returns",
    "broker-restart",
    "delta-storm",
];

/// Runs every scenario; stops at the first failure.
pub async fn run<D: Driver>(
    factory: impl Fn() -> D,
    device_yaml: &str,
) -> Result<ConformanceReport, ConformanceError> {
    let subject = Subject::parse::<D>(device_yaml).map_err(|message| ConformanceError {
        scenario: "setup",
        message,
    })?;
    let mut report = ConformanceReport::default();
    for (index, name) in SCENARIOS.into_iter().enumerate() {
        let started = Instant::now();
        let env = Env::start(factory())
            .await
            .map_err(|message| ConformanceError {
                scenario: name,
                message,
            })?;
        let result = match index {
            0 => desired_round_trip(&subject, &env).await,
            1 => bad_config(&subject, &env).await,
            2 => disappear_and_return(&subject, &env).await,
            3 => broker_restart(&subject, &env).await,
            _ => delta_storm(&subject, &env).await,
        };
        env.stop().await;
        result.map_err(|message| ConformanceError {
            scenario: name,
            message,
        })?;
        report.passed.push((name, started.elapsed()));
    }
    Ok(report)
}

/// The device under test.
struct Subject {
    device: Device,
    model: DeviceModel,
    /// `{namespace}/{name}`.
    id: String,
    /// The ReadWrite property the scenarios drive.
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
            .find(|d| d.protocol_name() == Some(D::PROTOCOL))
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
        let target = resolved
            .properties
            .iter()
            .find(|p| {
                p.writable
                    && p.report_to_cloud
                    && !matches!(
                        p.ty,
                        PropertyType::Bytes | PropertyType::Stream
                    )
            })
            .ok_or("the device needs a ReadWrite property of type INT, FLOAT, DOUBLE, BOOLEAN or STRING reported to the cloud")?;
        Ok(Subject {
            id: format!("{}/{}", device.namespace(), device.name()),
            property: target.name.clone(),
            ty: target.ty,
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

    /// The `n`-th test value that differs from `avoid`, as a wire string.
    fn value(&self, n: usize, avoid: Option<&str>) -> String {
        let candidates: Vec<String> = match self.ty {
            PropertyType::Int => (1..=9).map(|i| i.to_string()).collect(),
            PropertyType::Float | PropertyType::Double => {
                (1..=9).map(|i| format!("{i}.5")).collect()
            }
            PropertyType::Boolean => vec!["true".into(), "false".into()],
            _ => (1..=9).map(|i| format!("edgetwin-{i}")).collect(),
        };
        let usable: Vec<&String> = candidates
            .iter()
            .filter(|c| Some(c.as_str()) != avoid)
            .collect();
        usable[n % usable.len()].clone()
    }
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

    /// Waits until the subject is online and has reported the driven property; returns the
    /// value it reported.
    async fn online(&self, subject: &Subject) -> Result<String, String> {
        self.wait(&subject.id, "state online", |d| {
            d.states.last().is_some_and(|s| s.state == "online")
        })
        .await?;
        let device = self
            .wait(&subject.id, "a first report of the property", |d| {
                d.reported.contains_key(&subject.property)
            })
            .await?;
        Ok(device.reported[&subject.property].clone())
    }

    /// Sets a desired value and waits until it is reported back.
    async fn round_trip(&self, subject: &Subject, value: &str) -> Result<(), String> {
        self.edge.set_desired(&subject.id, &subject.property, value);
        self.wait(
            &subject.id,
            &format!("{} reported as {value:?}", subject.property),
            |d| d.reported.get(&subject.property).map(String::as_str) == Some(value),
        )
        .await
        .map(|_| ())
    }
}

async fn desired_round_trip(subject: &Subject, env: &Env) -> Result<(), String> {
    env.publish(subject, &subject.device);
    let first = env.online(subject).await?;
    let target = subject.value(0, Some(&first));
    env.round_trip(subject, &target).await?;
    let next = subject.value(1, Some(&target));
    env.round_trip(subject, &next).await?;
    // Ten more report cycles with nothing to report.
    tokio::time::sleep(Duration::from_millis(10 * CYCLE_MS as u64)).await;
    let device = env.edge.device(&subject.id);
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for (index, report) in device.reports.iter().enumerate() {
        for (property, value) in &report.values {
            if last.insert(property, value) == Some(value.as_str()) {
                return Err(format!(
                    "twin/update #{index} re-reported the unchanged value {value:?} of {property}"
                ));
            }
        }
    }
    Ok(())
}

async fn bad_config(subject: &Subject, env: &Env) -> Result<(), String> {
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
    env.round_trip(subject, &subject.value(2, Some(&first)))
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
    Ok(())
}

async fn disappear_and_return(subject: &Subject, env: &Env) -> Result<(), String> {
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
            "the removed device still applied the desired value {away:?}"
        ));
    }
    env.publish(subject, &subject.device);
    env.wait(
        &subject.id,
        &format!(
            "{} reported as {away:?} after the device returned",
            subject.property
        ),
        |d| d.reported.get(&subject.property) == Some(&away),
    )
    .await?;
    Ok(())
}

async fn broker_restart(subject: &Subject, env: &Env) -> Result<(), String> {
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
    env.round_trip(subject, &target).await?;
    Ok(())
}

async fn delta_storm(subject: &Subject, env: &Env) -> Result<(), String> {
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
                "the storm did not settle within {WAIT:?}: {} writes so far, {} reported as {reported:?}, last desired {last:?}",
                after - writes_before,
                subject.property
            ));
        }
    };
    if written == 0 {
        return Err("the storm ended without any write".into());
    }
    if written as usize > changes {
        return Err(format!(
            "{written} writes for {changes} changes of the desired value"
        ));
    }
    if env.edge.device(&subject.id).reported.get(&subject.property) != Some(&last) {
        return Err("the reported value moved away from the last desired value".into());
    }
    Ok(())
}
