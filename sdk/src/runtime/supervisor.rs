//! The supervisor: learns devices from the source, starts, restarts and stops their tasks, and
//! routes twin messages from the shared MQTT connection to them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edgetwin_model::devices::{Device, DeviceModel};
use edgetwin_model::wire::{self, Topic, spec_auth};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::device::DeviceTask;
use super::inbox::DeviceInbox;
use super::options::{DeviceSource, Options};
use super::panic_guard::catch_panic;
use super::source::{decode_spec_message, load_device_profile, load_directory};
use super::twin::{self, DeviceTopics};
use super::{Context, MapperError};
use crate::config::{ResolvedDevice, device_id, resolve};
use crate::driver::{DeviceId, Driver, serves_protocol};
use crate::http::serve_metrics;
use crate::metrics::Metrics;
use crate::mqtt::{Bus, Inbound};
use crate::sink::{SinkSettings, Sinks};

/// A device being served.
struct Served {
    spec: Result<Arc<ResolvedDevice>, String>,
    topics: Arc<DeviceTopics>,
    inbox: Arc<DeviceInbox>,
    task: JoinHandle<()>,
}

/// Which twin message a subscribed topic carries.
#[derive(Debug, Clone, Copy)]
enum Route {
    Delta,
    GetResult,
}

struct Supervisor<D: Driver> {
    driver: Arc<D>,
    ctx: Arc<Context>,
    devices: HashMap<DeviceId, Served>,
    routes: HashMap<String, (DeviceId, Route)>,
    /// Devices of this node the source announced, of any protocol.
    announced: usize,
}

/// Runs the mapper until `stop` completes.
pub(super) async fn run<D: Driver>(
    driver: Arc<D>,
    options: Options,
    metrics: Metrics,
    stop: impl Future<Output = ()>,
) -> Result<(), MapperError> {
    let initial = match &options.source {
        DeviceSource::SpecTopic => Vec::new(),
        DeviceSource::Directory(dir) => load_directory(dir)?,
        DeviceSource::DeviceProfile(file) => load_device_profile(file)?,
    };
    let metrics_server = match options.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| MapperError::Metrics { addr, source })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving metrics");
            Some(tokio::spawn(serve_metrics(listener, metrics.clone())))
        }
        None => None,
    };
    let client_id = options.client_id.clone().unwrap_or_else(|| {
        format!(
            "edgetwin-mapper-{}-{}-{}",
            D::PROTOCOL,
            options.node,
            std::process::id()
        )
    });
    let login = options
        .credentials
        .as_ref()
        .map(|c| (c.username.as_str(), c.password.as_str()));
    let (bus, mut inbound, connection) =
        Bus::start(&options.broker, login, &client_id, metrics.clone());
    let sinks = Sinks::new(
        bus.clone(),
        metrics.clone(),
        &client_id,
        SinkSettings {
            secrets_dir: options.secrets_dir.clone(),
            ..SinkSettings::default()
        },
    );
    let grace = options.shutdown_grace;
    let ctx = Arc::new(Context {
        options,
        bus,
        metrics,
        sinks: Arc::clone(&sinks),
        shutting_down: Default::default(),
    });
    tracing::info!(
        protocol = D::PROTOCOL,
        node = %ctx.options.node,
        broker = %ctx.options.broker,
        "mapper starting"
    );
    let mut supervisor = Supervisor {
        driver,
        ctx: Arc::clone(&ctx),
        devices: HashMap::new(),
        routes: HashMap::new(),
        announced: 0,
    };
    if ctx.options.source == DeviceSource::SpecTopic {
        let node = wire::topic::TopicLevel::new(ctx.options.node.as_str())
            .map_err(|_| MapperError::BadNode(ctx.options.node.clone()))?;
        ctx.bus.subscribe(&wire::topic::spec_filter(&node));
    }
    supervisor.announced = initial.len();
    for (device, model) in initial {
        supervisor.upsert(&device, model.as_ref());
    }

    tokio::pin!(stop);
    // When to say that no device came: some time after the first connection.
    let mut check_devices_at: Option<tokio::time::Instant> = None;
    let mut connected_once = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = sleep_until_some(check_devices_at) => {
                check_devices_at = None;
                supervisor.warn_if_no_devices();
            }
            message = inbound.recv() => match message {
                Some(Inbound::Connected) => {
                    if !connected_once {
                        connected_once = true;
                        check_devices_at =
                            Some(tokio::time::Instant::now() + ctx.options.no_devices_warning);
                    }
                    supervisor.resync_all();
                }
                Some(Inbound::Message { topic, payload }) => supervisor.on_message(&topic, &payload),
                None => {
                    tracing::error!("the MQTT connection task ended; stopping");
                    break;
                }
            },
        }
    }

    tracing::info!(devices = supervisor.devices.len(), "mapper stopping");
    ctx.shutting_down.store(true, Ordering::Release);
    supervisor.stop_all(grace).await;
    sinks.shutdown(grace).await;
    ctx.bus.disconnect().await;
    drop(inbound);
    let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("mapper stopped");
    Ok(())
}

/// Completes at `at`; never without it.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<D: Driver> Supervisor<D> {
    /// Says so when the mapper serves no device: the node name or the selector is wrong, or
    /// the devices never reached the source. A mapper with nothing to do looks healthy otherwise.
    fn warn_if_no_devices(&self) {
        if !self.devices.is_empty() {
            return;
        }
        let options = &self.ctx.options;
        let node = options.node.as_str();
        let protocol = D::PROTOCOL;
        let source = match &options.source {
            DeviceSource::SpecTopic => format!(
                "the edge agent of node {node:?} publishes each Device whose spec.nodeName is {node:?} (retained on edgetwin/v1/node/{node}/device/NAMESPACE/NAME/spec): check that --node matches the agent's nodeName (`edgetwin edge` logs it at start) and that such Devices exist with protocolName {protocol:?}, or read devices from YAML with --devices DIR"
            ),
            DeviceSource::Directory(dir) => format!(
                "the Devices of {} with protocolName {protocol:?}",
                dir.display()
            ),
            DeviceSource::DeviceProfile(file) => format!(
                "the devices of {} with protocol {protocol:?}",
                file.display()
            ),
        };
        tracing::warn!(
            node,
            protocol,
            announced = self.announced,
            after = ?options.no_devices_warning,
            "no devices to serve: this mapper serves {source}{}",
            if self.announced > 0 {
                format!(
                    "; {} device(s) were announced, none of them with protocol {protocol:?} and matching the selector",
                    self.announced
                )
            } else {
                String::new()
            }
        );
    }

    /// Adds a device, or restarts it when its spec changed (desired values alone do not count:
    /// they arrive as twin deltas).
    fn upsert(&mut self, device: &Device, model: Option<&DeviceModel>) {
        let id = device_id(device);
        let protocol = device
            .protocol_name()
            .or_else(|| model.and_then(|m| m.spec.protocol.as_deref()));
        let labels = device.metadata.labels.clone().unwrap_or_default();
        if !serves_protocol::<D>(protocol) || !self.ctx.options.selector.matches(&id, &labels) {
            // Not ours (any more): a protocol or label change moves a device to another mapper.
            self.remove(&id);
            return;
        }
        let spec = resolve(device, model)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Some(served) = self.devices.get(&id)
            && served.spec == spec
        {
            return;
        }
        let previous = self.remove(&id);
        let topic_id = match self.ctx.options.id_form.topic_id(&id) {
            Ok(topic_id) => topic_id,
            Err(err) => {
                tracing::error!(device = %id, error = %err, "device name cannot be used in MQTT topics; not served");
                return;
            }
        };
        let topics = Arc::new(DeviceTopics::new(&topic_id));
        let inbox = Arc::new(DeviceInbox::default());
        for (topic, route) in [
            (&topics.delta, Route::Delta),
            (&topics.get_result, Route::GetResult),
        ] {
            self.routes.insert(topic.clone(), (id.clone(), route));
            self.ctx.bus.subscribe(topic);
        }
        let task = self.spawn_device(
            id.clone(),
            spec.clone(),
            Arc::clone(&topics),
            Arc::clone(&inbox),
            previous,
        );
        tracing::info!(device = %id, "device added");
        self.devices.insert(
            id,
            Served {
                spec,
                topics,
                inbox,
                task,
            },
        );
    }

    /// Starts a device task once the previous task of the same device (if any) has ended, and
    /// restarts the device in it if it panics (a driver bug must not take the device down for
    /// good). One tokio task per device: the panic is caught in the task, not by a second one.
    fn spawn_device(
        &self,
        id: DeviceId,
        spec: Result<Arc<ResolvedDevice>, String>,
        topics: Arc<DeviceTopics>,
        inbox: Arc<DeviceInbox>,
        previous: Option<JoinHandle<()>>,
    ) -> JoinHandle<()> {
        let driver = Arc::clone(&self.driver);
        let ctx = Arc::clone(&self.ctx);
        tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            loop {
                let task = DeviceTask::new(
                    Arc::clone(&driver),
                    id.clone(),
                    spec.clone(),
                    Arc::clone(&topics),
                    Arc::clone(&ctx),
                    Arc::clone(&inbox),
                );
                match catch_panic(task.run()).await {
                    Err(_panic) if !inbox.stopping() => {
                        tracing::error!(device = %id, "device task panicked; restarting in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        inbox.resync();
                    }
                    _ => return,
                }
            }
        })
    }

    /// Stops serving a device; returns its task so a successor can wait for it.
    fn remove(&mut self, id: &DeviceId) -> Option<JoinHandle<()>> {
        let served = self.devices.remove(id)?;
        for topic in [&served.topics.delta, &served.topics.get_result] {
            self.routes.remove(topic);
            self.ctx.bus.unsubscribe(topic);
        }
        served.inbox.stop();
        tracing::info!(device = %id, "device removed");
        Some(served.task)
    }

    fn resync_all(&self) {
        for served in self.devices.values() {
            served.inbox.resync();
        }
    }

    fn on_message(&mut self, topic: &str, payload: &[u8]) {
        if let Some((id, route)) = self.routes.get(topic) {
            let Some(served) = self.devices.get(id) else {
                return;
            };
            let parsed = match route {
                Route::Delta => {
                    edgetwin_hoptrace::mark("mapper.delta.received");
                    twin::desired_from_delta(payload)
                }
                Route::GetResult => twin::desired_from_get_result(payload),
            };
            match parsed {
                Ok(desired) => served
                    .inbox
                    .merge_desired(desired, matches!(route, Route::GetResult)),
                Err(err) => tracing::warn!(%topic, error = %err, "twin message ignored"),
            }
            return;
        }
        match Topic::parse(topic) {
            Ok(Topic::DeviceSpec {
                node,
                namespace,
                name,
            }) if node.as_str() == self.ctx.options.node => {
                let id = DeviceId::new(namespace.as_str(), name.as_str());
                if payload.is_empty() {
                    self.remove(&id);
                    return;
                }
                if let Some(credentials) = &self.ctx.options.credentials
                    && let Err(err) = spec_auth::verify(&credentials.spec_key, topic, payload)
                {
                    tracing::error!(%topic, error = %err, "device spec not authentic; not applied");
                    return;
                }
                self.announced += 1;
                match decode_spec_message(payload) {
                    Ok((device, model)) if device_id(&device) == id => {
                        self.upsert(&device, model.as_ref());
                    }
                    Ok((device, _)) => tracing::warn!(
                        %topic,
                        device = %device_id(&device),
                        "spec message names another device than its topic; ignored"
                    ),
                    Err(err) => tracing::warn!(%topic, error = %err, "device spec ignored"),
                }
            }
            _ => tracing::debug!(%topic, "message on an unexpected topic ignored"),
        }
    }

    /// Stops every device task and waits for them (each publishes `offline`).
    async fn stop_all(&mut self, grace: Duration) {
        let ids: Vec<DeviceId> = self.devices.keys().cloned().collect();
        let tasks: Vec<JoinHandle<()>> = ids.iter().filter_map(|id| self.remove(id)).collect();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(?grace, "some devices did not stop in time");
        }
    }
}
