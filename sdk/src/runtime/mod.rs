//! The mapper runtime: [`Mapper::builder`]`.driver(d)…build()?.run()`.
//!
//! One shared MQTT connection ([`crate::mqtt::Bus`]), one supervisor that learns devices from
//! the configured [`DeviceSource`] and routes twin messages, and one task per device
//! ([`device`]) that owns the driver session. See `docs/writing-a-mapper.md`.

mod device;
mod inbox;
mod options;
mod panic_guard;
mod source;
mod state;
mod supervisor;
mod twin;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::options::{DeviceSource, IdForm, Options, Selector};
pub use self::source::{SourceError, load_device_profile, load_directory};
pub use self::state::DeviceState;
use crate::driver::Driver;
use crate::metrics::Metrics;
use crate::mqtt::{BrokerAddr, BrokerAddrError, Bus};
use crate::sink::Sinks;

/// What every device task shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) options: Options,
    pub(crate) bus: Bus,
    pub(crate) metrics: Metrics,
    pub(crate) sinks: Arc<Sinks>,
    shutting_down: AtomicBool,
}

impl Context {
    /// Whether the mapper is stopping (device tasks then publish `offline`).
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// Wall-clock time in Unix milliseconds, as the KubeEdge wire and the pipeline use it.
pub(crate) fn unix_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Why a mapper could not be built or could not run.
#[derive(Debug, thiserror::Error)]
pub enum MapperError {
    /// No driver was given to the builder.
    #[error("no driver: call .driver(…) on the builder")]
    NoDriver,
    /// The spec topic source needs the node name.
    #[error("no node name: the spec topic source needs .node(…)")]
    NoNode,
    /// The node name cannot be a topic level.
    #[error("node name {0:?} cannot be used in MQTT topics")]
    BadNode(String),
    /// The broker address does not parse.
    #[error(transparent)]
    Broker(#[from] BrokerAddrError),
    /// The device directory or profile could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The metrics port could not be opened.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A configured mapper, ready to run.
#[derive(Debug)]
pub struct Mapper<D: Driver> {
    driver: Arc<D>,
    options: Options,
}

/// Builds a [`Mapper`].
#[derive(Debug)]
pub struct MapperBuilder<D: Driver> {
    driver: Option<D>,
    options: Options,
    broker: Option<String>,
}

impl<D: Driver> Mapper<D> {
    /// A builder with the default [`Options`].
    pub fn builder() -> MapperBuilder<D> {
        MapperBuilder {
            driver: None,
            options: Options::default(),
            broker: None,
        }
    }

    /// The options the mapper runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Runs until SIGTERM or SIGINT, then publishes `offline` for every device, disconnects
    /// the drivers and returns.
    pub async fn run(self) -> Result<(), MapperError> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes (same shutdown as [`Mapper::run`]).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), MapperError> {
        supervisor::run(self.driver, self.options, Metrics::new(), stop).await
    }

    /// Starts the mapper on the current runtime and returns a handle to stop it (tests).
    pub fn spawn(self) -> MapperHandle {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let metrics = Metrics::new();
        let task = {
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                };
                supervisor::run(self.driver, self.options, metrics, stop).await
            })
        };
        MapperHandle {
            stop: stop_tx,
            task,
            metrics,
        }
    }
}

/// A mapper started with [`Mapper::spawn`].
#[derive(Debug)]
pub struct MapperHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), MapperError>>,
    metrics: Metrics,
}

impl MapperHandle {
    /// The mapper's metrics (reads, writes, reports per device, …).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops the mapper gracefully and waits for it.
    pub async fn shutdown(self) -> Result<(), MapperError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

impl<D: Driver> MapperBuilder<D> {
    /// The protocol driver.
    pub fn driver(mut self, driver: D) -> Self {
        self.driver = Some(driver);
        self
    }

    /// The edge node the mapper runs on.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.options.node = node.into();
        self
    }

    /// The broker: `host`, `host:port`, `mqtt://host:port` or `tcp://host:port`.
    pub fn broker(mut self, broker: impl Into<String>) -> Self {
        self.broker = Some(broker.into());
        self
    }

    /// Devices from a directory of YAML instead of the edge agent's spec topic.
    pub fn devices_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.source = DeviceSource::Directory(dir.into());
        self
    }

    /// Devices from KubeEdge's v1alpha2 `deviceProfile.json`.
    pub fn device_profile(mut self, file: impl Into<PathBuf>) -> Self {
        self.options.source = DeviceSource::DeviceProfile(file.into());
        self
    }

    /// Serves only the devices this selector matches.
    pub fn selector(mut self, selector: Selector) -> Self {
        self.options.selector = selector;
        self
    }

    /// Re-reports every value at this interval even when unchanged.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.options.heartbeat = Some(every);
        self
    }

    /// Serves Prometheus metrics on this address.
    pub fn metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.options.metrics_addr = Some(addr);
        self
    }

    /// Changes any other option.
    pub fn options(mut self, change: impl FnOnce(&mut Options)) -> Self {
        change(&mut self.options);
        self
    }

    /// Checks the settings.
    pub fn build(mut self) -> Result<Mapper<D>, MapperError> {
        let driver = self.driver.ok_or(MapperError::NoDriver)?;
        if let Some(broker) = &self.broker {
            self.options.broker = BrokerAddr::parse(broker)?;
        }
        if self.options.source == DeviceSource::SpecTopic && self.options.node.is_empty() {
            return Err(MapperError::NoNode);
        }
        if !self.options.node.is_empty()
            && edgetwin_model::wire::topic::TopicLevel::new(self.options.node.as_str()).is_err()
        {
            return Err(MapperError::BadNode(self.options.node));
        }
        Ok(Mapper {
            driver: Arc::new(driver),
            options: self.options,
        })
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the mapper with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
