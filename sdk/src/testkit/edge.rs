//! [`TestEdge`]: a minimal in-test edge that speaks KubeEdge's DeviceTwin topics.
//!
//! It holds the desired and reported values of each device, answers `twin/get`, sends
//! `twin/update/delta` when a test sets a desired value, records every `twin/update` and
//! `state/update` a mapper sends, and publishes device specs retained on the edgetwin spec topic.
//! After a broker restart it reconnects and publishes the specs again, as the edge agent does.
//!
//! It is deliberately small and independent of the real edge agent, so that a mapper crate can
//! test itself without it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use edgetwin_model::devices::load::{self, Manifest};
use edgetwin_model::wire::payload::{
    DeviceSpecMessage, DeviceTwinDelta, DeviceTwinResult, DeviceTwinUpdate, DeviceUpdate,
    JsonField, Metadata, MsgTwin, TwinMap, TwinValue, WriteError,
};
use edgetwin_model::wire::topic::DeviceEvent;
use edgetwin_model::wire::{self, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::mqtt::BrokerAddr;

/// One `twin/update` a mapper sent.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinReport {
    /// When it arrived.
    pub at: SystemTime,
    /// Reported values by property.
    pub values: BTreeMap<String, String>,
}

/// One `state/update` a mapper sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StateReport {
    /// When it arrived.
    pub at: SystemTime,
    /// `online`, `offline`, `unhealthy`, …
    pub state: String,
    /// The reason, if any.
    pub reason: Option<String>,
}

/// What the edge knows of one device (keyed by its topic id, e.g. `default/lamp`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeDevice {
    /// Desired values.
    pub desired: BTreeMap<String, String>,
    /// Latest reported values.
    pub reported: BTreeMap<String, String>,
    /// Every `twin/update`, in order.
    pub reports: Vec<TwinReport>,
    /// Every `state/update`, in order.
    pub states: Vec<StateReport>,
    /// The latest `write_error` (refused desired value) reported per property.
    pub write_errors: BTreeMap<String, WriteError>,
    /// How many `twin/get` requests arrived.
    pub twin_gets: u32,
}

#[derive(Debug, Default)]
struct EdgeState {
    devices: HashMap<String, EdgeDevice>,
    /// Retained spec payloads by topic, published again after a reconnect.
    specs: BTreeMap<String, Vec<u8>>,
    connects: u32,
}

/// The in-test edge. Dropping it stops its connection.
#[derive(Debug)]
pub struct TestEdge {
    client: AsyncClient,
    node: String,
    shared: Arc<(Mutex<EdgeState>, Notify)>,
    task: JoinHandle<()>,
}

impl TestEdge {
    /// Connects an edge for `node` to `broker` and waits until it is subscribed.
    pub async fn start(broker: impl Into<BrokerAddr>, node: &str) -> TestEdge {
        let broker: BrokerAddr = broker.into();
        let mut options = MqttOptions::new(
            format!("test-edge-{node}-{}", std::process::id()),
            broker.host.clone(),
            broker.port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        let shared: Arc<(Mutex<EdgeState>, Notify)> = Arc::default();
        let task = {
            let client = client.clone();
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => on_connect(&client, &shared),
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            on_message(&client, &shared, &publish.topic, &publish.payload);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let edge = TestEdge {
            client,
            node: node.to_owned(),
            shared,
            task,
        };
        if edge
            .wait_until(Duration::from_secs(10), |_| (), |s| s.connects > 0)
            .await
            .is_none()
        {
            panic!("the test edge could not connect to the broker at {broker} within 10 s");
        }
        edge
    }

    /// The node this edge serves.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EdgeState> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of what the edge knows of a device (`{namespace}/{name}`).
    pub fn device(&self, id: &str) -> EdgeDevice {
        self.lock().devices.get(id).cloned().unwrap_or_default()
    }

    /// Publishes a device spec payload, retained, on the edgetwin spec topic of this node.
    pub fn publish_spec(&self, namespace: &str, name: &str, payload: Vec<u8>) {
        let topic = self.spec_topic(namespace, name);
        self.lock().specs.insert(topic.clone(), payload.clone());
        let _ = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload);
    }

    /// Publishes every Device of a Device/DeviceModel YAML text with its model (from the same
    /// text, when there) as the edge agent would; returns how many devices it published.
    pub fn publish_devices(&self, yaml: &str) -> Result<usize, String> {
        let docs = load::from_str(yaml, "<test YAML>").map_err(|e| e.to_string())?;
        let mut models = Vec::new();
        let mut devices = Vec::new();
        for doc in docs {
            match doc.manifest {
                Manifest::Device(device) => devices.push(device),
                Manifest::DeviceModel(model) => models.push(model),
            }
        }
        for device in &devices {
            let model = models
                .iter()
                .find(|m| Some(m.name()) == device.model_name())
                .cloned();
            let payload = wire::encode(&DeviceSpecMessage {
                device: device.clone(),
                model,
            })
            .map_err(|e| e.to_string())?;
            self.publish_spec(device.namespace(), device.name(), payload);
        }
        Ok(devices.len())
    }

    /// Removes a device spec (an empty retained payload).
    pub fn remove_spec(&self, namespace: &str, name: &str) {
        let topic = self.spec_topic(namespace, name);
        self.lock().specs.remove(&topic);
        let _ = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, Vec::new());
    }

    fn spec_topic(&self, namespace: &str, name: &str) -> String {
        format!(
            "edgetwin/v1/node/{}/device/{namespace}/{name}/spec",
            self.node
        )
    }

    /// Sets a desired value and sends the `twin/update/delta`; returns when it was sent.
    pub fn set_desired(&self, id: &str, property: &str, value: &str) -> SystemTime {
        let payload = {
            let mut state = self.lock();
            let device = state.devices.entry(id.to_owned()).or_default();
            device.desired.insert(property.to_owned(), value.to_owned());
            let delta = DeviceTwinDelta {
                event_id: Some(String::new()),
                timestamp: Some(now_ms()),
                twin: JsonField::Value(twin_map(device)),
                delta: JsonField::Value(BTreeMap::from([(property.to_owned(), value.to_owned())])),
            };
            wire::encode(&delta).unwrap_or_default()
        };
        let sent = SystemTime::now();
        let topic = device_topic(id, DeviceEvent::TwinUpdateDelta);
        let _ = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload);
        sent
    }

    /// Waits until `done` holds for the device `id`; after `timeout` the error says what was
    /// awaited (`what`) and what the edge saw.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&EdgeDevice) -> bool,
    ) -> Result<EdgeDevice, String> {
        let id = id.to_owned();
        let found = self
            .wait_until(
                timeout,
                |state: &EdgeState| state.devices.get(&id).cloned().unwrap_or_default(),
                |state| state.devices.get(&id).is_some_and(&done),
            )
            .await;
        found.ok_or_else(|| {
            format!(
                "timed out after {timeout:?} waiting for {what} on {id}; the edge saw: {:?}",
                self.device(&id)
            )
        })
    }

    /// Waits until the device reported `value` for `property`.
    pub async fn wait_reported(
        &self,
        id: &str,
        property: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<EdgeDevice, String> {
        self.wait_for(
            id,
            timeout,
            &format!("{property} reported as {value:?}"),
            |d| d.reported.get(property).map(String::as_str) == Some(value),
        )
        .await
    }

    /// Waits until the device's latest state is `state`; returns that state report.
    pub async fn wait_state(
        &self,
        id: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<StateReport, String> {
        let device = self
            .wait_for(id, timeout, &format!("state {state:?}"), |d| {
                d.states.last().is_some_and(|s| s.state == state)
            })
            .await?;
        device
            .states
            .last()
            .cloned()
            .ok_or_else(|| format!("{id} has no state"))
    }

    /// Checks `done` after every change until it holds (then returns `view`); `None` after
    /// `timeout`.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        view: impl Fn(&EdgeState) -> T,
        done: impl Fn(&EdgeState) -> bool,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Created before the check, so a change made right after it is not missed.
            let changed = self.shared.1.notified();
            {
                let state = self.lock();
                if done(&state) {
                    return Some(view(&state));
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn device_topic(id: &str, event: DeviceEvent) -> String {
    match wire::DeviceId::parse(id) {
        Ok(id) => Topic::Device { id, event }.to_string(),
        Err(err) => panic!("test device id {id:?} is not a valid topic id: {err}"),
    }
}

fn twin_map(device: &EdgeDevice) -> TwinMap {
    let mut twin = TwinMap::new();
    for (name, value) in &device.desired {
        let entry = twin
            .entry(name.clone())
            .or_insert_with(|| Some(MsgTwin::default()));
        if let Some(property) = entry {
            property.expected = Some(TwinValue::at(value.clone(), now_ms()));
            property.metadata = Some(Metadata::of_type("string"));
        }
    }
    for (name, value) in &device.reported {
        let entry = twin
            .entry(name.clone())
            .or_insert_with(|| Some(MsgTwin::default()));
        if let Some(property) = entry {
            property.actual = Some(TwinValue::at(value.clone(), now_ms()));
            property.metadata = Some(Metadata::of_type("string"));
        }
    }
    twin
}

fn on_connect(client: &AsyncClient, shared: &(Mutex<EdgeState>, Notify)) {
    let filters = [
        DeviceEvent::TwinUpdate,
        DeviceEvent::TwinGet,
        DeviceEvent::StateUpdate,
    ]
    .into_iter()
    .flat_map(DeviceEvent::any_device_filters);
    for filter in filters {
        let _ = client.try_subscribe(filter, QoS::AtLeastOnce);
    }
    let mut state = shared.0.lock().unwrap_or_else(|p| p.into_inner());
    for (topic, payload) in &state.specs {
        let _ = client.try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone());
    }
    state.connects += 1;
    shared.1.notify_waiters();
}

fn on_message(
    client: &AsyncClient,
    shared: &(Mutex<EdgeState>, Notify),
    topic: &str,
    payload: &[u8],
) {
    let Ok(Topic::Device { id, event }) = Topic::parse(topic) else {
        return;
    };
    let key = id.to_string();
    let mut state = shared.0.lock().unwrap_or_else(|p| p.into_inner());
    let device = state.devices.entry(key.clone()).or_default();
    match event {
        DeviceEvent::TwinUpdate => {
            let Ok(update) = wire::decode::<DeviceTwinUpdate>(payload) else {
                return;
            };
            let values: BTreeMap<String, String> = update
                .twin
                .value()
                .into_iter()
                .flatten()
                .filter_map(|(name, twin)| {
                    let value = twin.as_ref()?.actual.as_ref()?.value.clone()?;
                    Some((name.clone(), value))
                })
                .collect();
            device.reported.extend(values.clone());
            for (name, twin) in update.twin.value().into_iter().flatten() {
                if let Some(error) = twin.as_ref().and_then(|t| t.write_error.clone()) {
                    device.write_errors.insert(name.clone(), error);
                }
            }
            device.reports.push(TwinReport {
                at: SystemTime::now(),
                values,
            });
        }
        DeviceEvent::StateUpdate => {
            let Ok(update) = wire::decode::<DeviceUpdate>(payload) else {
                return;
            };
            device.states.push(StateReport {
                at: SystemTime::now(),
                state: update.state.unwrap_or_default(),
                reason: update.reason,
            });
        }
        DeviceEvent::TwinGet => {
            device.twin_gets += 1;
            let result = DeviceTwinResult {
                event_id: Some(String::new()),
                timestamp: Some(now_ms()),
                twin: JsonField::Value(twin_map(device)),
            };
            let reply = device_topic(&key, DeviceEvent::TwinGetResult);
            let _ = client.try_publish(
                reply,
                QoS::AtLeastOnce,
                false,
                wire::encode(&result).unwrap_or_default(),
            );
        }
        _ => return,
    }
    shared.1.notify_waiters();
}
