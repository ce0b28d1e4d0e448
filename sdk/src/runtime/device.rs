//! One task per device: it owns the driver session and runs the desired path (delta → write →
//! read back → report) and the reported path (collect → pipeline → report and sinks).
//!
//! The task never restarts its session for a delta: a desired value is written in place. It
//! reconnects only when the session fails (behind the circuit breaker) and stops when the device
//! is removed, reconfigured or the mapper shuts down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use edgetwin_model::pipeline::{self, Pipeline};
use edgetwin_model::value::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;

use super::inbox::DeviceInbox;
use super::state::DeviceState;
use super::twin::{self, DeviceTopics, ReadFailure, Refused, Reported};
use super::{Context, unix_millis};
use crate::breaker::{Backoff, CircuitBreaker};
use crate::config::ResolvedDevice;
use crate::driver::{
    DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, PushSender, Pushed, Session,
};
use crate::metrics::DeviceMetrics;
use crate::sink::{Sample, SinkHandle};

type Config<D> = DeviceConfig<<D as Driver>::ProtocolConfig, <D as Driver>::VisitorConfig>;

/// The runtime's view of one property: `Running::properties[i]` is `spec.properties[i]`, whose
/// name it does not copy (a device's properties live as long as it is served).
struct Property {
    ty: edgetwin_model::value::PropertyType,
    report_to_cloud: bool,
    report_cycle: Duration,
    /// Boxed: most properties have none, and a device's properties live as long as it is served.
    pipeline: Option<Box<Pipeline>>,
    sinks: Box<[SinkHandle]>,
    /// Latest value read, in device terms (before the pipeline).
    raw: Option<Value>,
    /// Latest value the pipeline let through, in twin terms.
    current: Option<Value>,
    /// What was last reported and when.
    reported: Option<Value>,
    reported_at: Option<Instant>,
    /// The desired path; `None` for a ReadOnly property (boxed: most properties are).
    write: Option<Box<WriteState>>,
    /// The last read error, to log a change of error once instead of every cycle.
    last_error: Option<Box<str>>,
    /// Consecutive failed reads in this session.
    read_failures: u32,
    /// The read error the edge was last told of (`read_error`), until a good read clears it.
    read_error_sent: Option<Box<str>>,
}

/// What the desired path of a writable property remembers.
#[derive(Default)]
struct WriteState {
    /// The desired value (twin terms) this task knows of.
    desired: Option<Value>,
    /// The last value this session wrote successfully (device terms).
    written: Option<Value>,
}

/// Points read together at one cycle.
struct CollectGroup {
    cycle: Duration,
    points: Vec<PointId>,
    due: Instant,
}

/// The device task.
pub(crate) struct DeviceTask<D: Driver> {
    driver: Arc<D>,
    id: DeviceId,
    /// The resolved spec, or why the device cannot be served.
    spec: Result<Arc<ResolvedDevice>, String>,
    topics: Arc<DeviceTopics>,
    ctx: Arc<Context>,
    inbox: Arc<DeviceInbox>,
    metrics: DeviceMetrics,
}

/// The state of a running device task.
struct Running<D: Driver> {
    spec: Arc<ResolvedDevice>,
    config: Config<D>,
    session: Option<D::Session>,
    push_rx: Option<mpsc::Receiver<Pushed>>,
    pushed: BTreeSet<PointId>,
    /// Pushed points still to read once after the connect (a push only says what changes).
    unread_pushed: Vec<PointId>,
    breaker: CircuitBreaker,
    properties: Vec<Property>,
    groups: Vec<CollectGroup>,
    report_tick: Duration,
    next_report: Instant,
    heartbeat_at: Option<Instant>,
    state: DeviceState,
    state_published: Option<DeviceState>,
    state_heartbeat_at: Option<Instant>,
    twin_received: bool,
    twin_get_at: Instant,
    twin_get_backoff: Backoff,
    health_at: Instant,
    /// The device is `unhealthy` because none of its polled properties can be read.
    read_unhealthy: bool,
    /// Read errors to tell the edge of (property index → reason, `None`: reads work again).
    read_error_changes: Vec<(usize, Option<String>)>,
}

impl<D: Driver> DeviceTask<D> {
    /// A task for `spec`; nothing runs until [`DeviceTask::run`].
    pub(crate) fn new(
        driver: Arc<D>,
        id: DeviceId,
        spec: Result<Arc<ResolvedDevice>, String>,
        topics: Arc<DeviceTopics>,
        ctx: Arc<Context>,
        inbox: Arc<DeviceInbox>,
    ) -> Self {
        let metrics = ctx.metrics.device(&id.to_string());
        Self {
            driver,
            id,
            spec,
            topics,
            ctx,
            inbox,
            metrics,
        }
    }

    /// Runs until the inbox says stop.
    pub(crate) async fn run(self) {
        let span = tracing::info_span!("device", device = %self.id);
        async move {
            let prepared = match &self.spec {
                Ok(spec) => self.prepare(Arc::clone(spec)),
                Err(reason) => Err(reason.clone()),
            };
            match prepared {
                Ok(running) => self.serve(running).await,
                Err(reason) => Box::pin(self.park_unhealthy(reason)).await,
            }
        }
        .instrument(span)
        .await;
    }

    /// Decodes the configuration and builds the per-property state (boxed: the task's future
    /// then holds a pointer, not the state, at each of its await points).
    fn prepare(&self, spec: Arc<ResolvedDevice>) -> Result<Box<Running<D>>, String> {
        let config: Config<D> = spec.decode().map_err(|e| e.to_string())?;
        self.driver.validate(&config).map_err(|e| e.to_string())?;
        let options = &self.ctx.options;
        let properties = spec
            .properties
            .iter()
            .map(|p| Property {
                ty: p.ty,
                report_to_cloud: p.report_to_cloud,
                report_cycle: p.report_cycle.unwrap_or(options.default_report_cycle),
                // Checked when the device was resolved; a failure here cannot happen, and
                // would only mean no pipeline.
                pipeline: p
                    .pipeline
                    .as_ref()
                    .and_then(|s| Pipeline::build(s).ok())
                    .map(Box::new),
                sinks: p.sinks.iter().map(|s| self.ctx.sinks.handle(s)).collect(),
                raw: None,
                current: None,
                reported: None,
                reported_at: None,
                write: p.writable.then(Box::default),
                last_error: None,
                read_failures: 0,
                read_error_sent: None,
            })
            .collect::<Vec<_>>();
        let report_tick = properties
            .iter()
            .map(|p| p.report_cycle)
            .min()
            .unwrap_or(options.default_report_cycle)
            .max(MIN_CYCLE);
        let now = Instant::now();
        Ok(Box::new(Running {
            spec,
            config,
            session: None,
            push_rx: None,
            pushed: BTreeSet::new(),
            unread_pushed: Vec::new(),
            breaker: CircuitBreaker::new(
                options.breaker_threshold,
                Backoff::new(options.backoff_initial, options.backoff_max),
            ),
            properties,
            groups: Vec::new(),
            report_tick,
            next_report: now + report_tick,
            heartbeat_at: options.heartbeat.map(|h| now + h),
            state: DeviceState::Offline("connecting".into()),
            state_published: None,
            state_heartbeat_at: None,
            twin_received: false,
            twin_get_at: now,
            twin_get_backoff: Backoff::new(TWIN_GET_RETRY, TWIN_GET_RETRY_MAX),
            health_at: now + options.health_interval,
            read_unhealthy: false,
            read_error_changes: Vec::new(),
        }))
    }

    /// A device whose configuration is wrong: publish `unhealthy` with the reason, and keep
    /// publishing it after reconnects, until stopped.
    async fn park_unhealthy(&self, reason: String) {
        tracing::error!(%reason, "device configuration is invalid; the device is not served");
        let state = DeviceState::Unhealthy(reason);
        self.publish_state(&state);
        loop {
            self.inbox.changed().await;
            if self.inbox.stopping() {
                return;
            }
            if self.inbox.take().resync {
                self.publish_state(&state);
            }
        }
    }

    /// The device's loop. Only the wait at its end is awaited in place; every other await
    /// (connect, read, write, health check) is boxed, so the future that stays resident between
    /// cycles is as small as that wait, not as large as the largest driver call.
    async fn serve(&self, mut run: Box<Running<D>>) {
        loop {
            if self.inbox.stopping() {
                break;
            }
            let now = Instant::now();
            let taken = self.inbox.take();
            if taken.resync {
                run.twin_received = false;
                run.twin_get_at = now;
                run.twin_get_backoff.reset();
                run.state_published = None;
                for (index, prop) in run.properties.iter_mut().enumerate() {
                    prop.reported = None;
                    if let Some(reason) = &prop.read_error_sent {
                        run.read_error_changes
                            .push((index, Some(reason.to_string())));
                    }
                }
                self.publish_read_errors(&mut run);
            }
            // A twin taken together with a resync answered a request sent before the reconnect:
            // ask again, or a broker restart right after that answer would leave the device
            // without a twin/get on the new connection.
            if taken.twin_received && !taken.resync {
                run.twin_received = true;
            }
            let desired_changed = self.take_desired(&mut run, taken.desired);
            if desired_changed {
                edgetwin_hoptrace::mark("mapper.device.woken");
            }

            let mut connected_now = false;
            if run.session.is_none() && run.breaker.allows(now) {
                match Box::pin(self.connect(&mut run)).await {
                    Connect::Connected => connected_now = true,
                    Connect::Failed => {}
                    Connect::ConfigError(reason) => {
                        // The driver says the configuration is wrong: never retried.
                        return Box::pin(self.park_unhealthy(reason)).await;
                    }
                }
            }
            self.tick_pipelines(&mut run);
            // Reading first after a (re)connect lets the read-back spare needless writes.
            self.collect_due(&mut run).await;
            if desired_changed || connected_now {
                Box::pin(self.apply_desired(&mut run)).await;
            }
            self.report_due(&mut run);
            if Instant::now() >= run.health_at {
                Box::pin(self.check_health(&mut run)).await;
            }
            self.request_twin_if_due(&mut run);
            self.sync_state(&mut run);

            let wake = self.next_wake(&mut run);
            let push_rx = run.push_rx.as_mut();
            tokio::select! {
                _ = self.inbox.changed() => {}
                _ = sleep_until(wake) => {}
                pushed = recv_pushed(push_rx) => match pushed {
                    Some(Pushed::Value(point, value)) => {
                        self.metrics.read(1, Duration::ZERO);
                        self.on_value(&mut run, point, value);
                        self.publish_read_errors(&mut run);
                    }
                    Some(Pushed::Failed(err)) => Box::pin(self.lose_session(&mut run, err)).await,
                    None => {
                        // The driver dropped its sender: the subscription is over; poll again.
                        run.push_rx = None;
                        run.pushed.clear();
                        self.plan_groups(&mut run);
                    }
                },
            }
        }
        Box::pin(self.finish(run)).await;
    }

    /// Parses desired values into the properties; returns whether any changed.
    fn take_desired(&self, run: &mut Running<D>, desired: BTreeMap<String, String>) -> bool {
        let mut changed = false;
        for (name, wire) in desired {
            let Some(index) = run.spec.properties.iter().position(|p| p.name == name) else {
                tracing::debug!(property = %name, "desired value for a property this mapper does not serve");
                continue;
            };
            let ty = run.config.points[index].ty;
            let Some(write) = run.properties[index].write.as_mut() else {
                tracing::warn!(property = %name, "desired value for a ReadOnly property ignored");
                continue;
            };
            match ty.parse(&wire) {
                Ok(value) => {
                    if write.desired.as_ref() != Some(&value) {
                        write.desired = Some(value);
                        changed = true;
                    }
                }
                Err(err) => {
                    tracing::warn!(property = %name, error = %err, "desired value refused");
                }
            }
        }
        changed
    }

    /// Opens a session (on failure the state and the breaker are updated).
    async fn connect(&self, run: &mut Running<D>) -> Connect {
        let options = &self.ctx.options;
        let result = match timeout(options.connect_timeout, self.driver.connect(&run.config)).await
        {
            Ok(result) => result,
            Err(_) => Err(DriverError::Timeout(options.connect_timeout)),
        };
        let mut session = match result {
            Ok(session) => session,
            Err(err @ DriverError::Config(_)) => return Connect::ConfigError(err.to_string()),
            Err(err) => {
                run.breaker.trip(Instant::now());
                tracing::debug!(error = %err, "connect failed");
                run.state = DeviceState::Offline(err.to_string());
                return Connect::Failed;
            }
        };
        self.metrics.connect();
        run.breaker.record_success();
        let (push, push_rx) = PushSender::channel();
        let readable: Vec<&Point<D::VisitorConfig>> = run.config.points.iter().collect();
        run.pushed.clear();
        run.push_rx = None;
        match session.subscribe(&readable, push).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    run.pushed = ids.into_iter().collect();
                    run.push_rx = Some(push_rx);
                }
            }
            Err(DriverError::Unsupported(_)) => {}
            Err(err) => tracing::warn!(error = %err, "subscribe failed; polling every point"),
        }
        for prop in &mut run.properties {
            prop.read_failures = 0;
            if let Some(write) = prop.write.as_mut() {
                write.written = None;
            }
        }
        run.read_unhealthy = false;
        run.unread_pushed = run.pushed.iter().copied().collect();
        run.session = Some(session);
        run.state = DeviceState::Online;
        tracing::info!(pushed = run.pushed.len(), "device connected");
        self.plan_groups(run);
        Connect::Connected
    }

    /// Groups the polled points by collect cycle; every group is due now.
    fn plan_groups(&self, run: &mut Running<D>) {
        let default = self.ctx.options.default_collect_cycle;
        let mut by_cycle: BTreeMap<Duration, Vec<PointId>> = BTreeMap::new();
        for (index, prop) in run.spec.properties.iter().enumerate() {
            let id = PointId(index);
            if !run.pushed.contains(&id) {
                let cycle = prop.collect_cycle.unwrap_or(default).max(MIN_CYCLE);
                by_cycle.entry(cycle).or_default().push(id);
            }
        }
        let now = Instant::now();
        run.groups = by_cycle
            .into_iter()
            .map(|(cycle, points)| CollectGroup {
                cycle,
                points,
                due: now,
            })
            .collect();
    }

    async fn collect_due(&self, run: &mut Running<D>) {
        if !run.unread_pushed.is_empty() {
            let initial = std::mem::take(&mut run.unread_pushed);
            Box::pin(self.read(run, &initial, false)).await;
        }
        let now = Instant::now();
        for index in 0..run.groups.len() {
            if run.session.is_none() {
                return;
            }
            let group = &mut run.groups[index];
            if group.due > now {
                continue;
            }
            // Skip missed cycles instead of bursting to catch up.
            while group.due <= now {
                group.due += group.cycle;
            }
            let points = group.points.clone();
            Box::pin(self.read(run, &points, false)).await;
        }
    }

    /// One batched read of `points`, fed to the properties; failures go to the breaker. A
    /// `read_back` (after a write) is reported whatever the pipeline's filters say.
    async fn read(&self, run: &mut Running<D>, ids: &[PointId], read_back: bool) {
        let Some(session) = run.session.as_mut() else {
            return;
        };
        let points: Vec<&Point<D::VisitorConfig>> =
            ids.iter().map(|id| &run.config.points[id.0]).collect();
        let started = Instant::now();
        let read_timeout = self.ctx.options.read_timeout;
        let span = tracing::debug_span!("read", points = points.len(), read_back);
        let results = match timeout(read_timeout, session.read(&points))
            .instrument(span)
            .await
        {
            Ok(results) if results.len() == points.len() => results,
            Ok(results) => {
                let bug = DriverError::Rejected(format!(
                    "the driver returned {} values for {} points",
                    results.len(),
                    points.len()
                ));
                vec![Err(bug); points.len()]
            }
            Err(_) => vec![Err(DriverError::Timeout(read_timeout)); points.len()],
        };
        let now_ms = unix_millis();
        let mut ok = 0;
        let mut transient = None;
        let mut failed = Vec::new();
        for (id, result) in ids.iter().zip(results) {
            match result {
                Ok(value) => {
                    ok += 1;
                    let prop = &mut run.properties[id.0];
                    prop.last_error = None;
                    prop.read_failures = 0;
                    self.on_value_at(run, *id, value, now_ms, read_back);
                }
                Err(err) => {
                    self.metrics.read_error(err.kind());
                    let prop = &mut run.properties[id.0];
                    prop.read_failures = prop.read_failures.saturating_add(1);
                    let message = err.to_string();
                    if prop.last_error.as_deref() != Some(message.as_str()) {
                        let name = &run.spec.properties[id.0].name;
                        tracing::warn!(property = %name, error = %message, "read failed");
                        prop.last_error = Some(message.into_boxed_str());
                    }
                    if err.is_transient() {
                        let disconnected = matches!(err, DriverError::Disconnected(_));
                        if disconnected || transient.is_none() {
                            transient = Some(err.clone());
                        }
                    }
                    failed.push((id.0, err));
                }
            }
        }
        self.metrics.read(ok, started.elapsed());
        match transient {
            Some(err @ DriverError::Disconnected(_)) => self.lose_session(run, err).await,
            Some(err) if ok == 0 => {
                if run.breaker.record_failure(Instant::now()) {
                    self.lose_session(run, err).await;
                }
            }
            _ => run.breaker.record_success(),
        }
        if run.session.is_some() {
            self.note_read_errors(run, failed);
        }
        self.publish_read_errors(run);
    }

    /// Read failures the session survived, for the edge: a refusal at once, a transient failure
    /// once it persisted for `breaker_threshold` reads (a dying link shows as the device state,
    /// not as a failure of every property). Marks the device `unhealthy` when every polled
    /// property has failed that often, and `online` again at the next good read.
    fn note_read_errors(&self, run: &mut Running<D>, failed: Vec<(usize, DriverError)>) {
        let threshold = self.ctx.options.breaker_threshold.max(1);
        for (index, err) in failed {
            let prop = &mut run.properties[index];
            if err.is_transient() && prop.read_failures < threshold {
                continue;
            }
            let reason = err.to_string();
            if prop.read_error_sent.as_deref() != Some(reason.as_str()) {
                prop.read_error_sent = Some(reason.clone().into_boxed_str());
                run.read_error_changes.push((index, Some(reason)));
            }
        }
        let polled = || {
            run.properties
                .iter()
                .enumerate()
                .filter(|(index, _)| !run.pushed.contains(&PointId(*index)))
        };
        let all_failing =
            polled().next().is_some() && polled().all(|(_, p)| p.read_failures >= threshold);
        if all_failing && matches!(run.state, DeviceState::Online) {
            let reason = polled()
                .find_map(|(_, p)| p.last_error.as_deref())
                .unwrap_or("no answer");
            run.state = DeviceState::Unhealthy(format!("no property can be read: {reason}"));
            run.read_unhealthy = true;
        } else if !all_failing && run.read_unhealthy {
            run.read_unhealthy = false;
            if matches!(run.state, DeviceState::Unhealthy(_)) {
                run.state = DeviceState::Online;
            }
        }
    }

    /// Publishes one `twin/update` with the read errors to tell the edge of (`read_error`, or
    /// `null` for a property that reads again).
    fn publish_read_errors(&self, run: &mut Running<D>) {
        if run.read_error_changes.is_empty() {
            return;
        }
        let entries: Vec<ReadFailure> = run
            .read_error_changes
            .drain(..)
            .filter(|(index, _)| run.properties[*index].report_to_cloud)
            .map(|(index, reason)| ReadFailure {
                name: run.spec.properties[index].name.clone(),
                ty: run.properties[index].ty,
                reason,
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        self.ctx.bus.publish(
            &self.topics.twin_update,
            twin::twin_read_errors(&entries, unix_millis()),
            rumqttc::QoS::AtLeastOnce,
            false,
        );
    }

    fn on_value(&self, run: &mut Running<D>, id: PointId, value: Value) {
        self.on_value_at(run, id, value, unix_millis(), false);
    }

    /// A value read from (or pushed by) the device: through the pipeline to twin and sinks.
    fn on_value_at(
        &self,
        run: &mut Running<D>,
        id: PointId,
        value: Value,
        at_ms: i64,
        forced: bool,
    ) {
        let (Some(prop), Some(spec)) =
            (run.properties.get_mut(id.0), run.spec.properties.get(id.0))
        else {
            return;
        };
        if prop.read_error_sent.take().is_some() {
            run.read_error_changes.push((id.0, None));
        }
        prop.raw = Some(value.clone());
        // What fell due before this sample is released first, as the preview does.
        self.release_until(prop, &spec.name, at_ms.max(0) as u64);
        let processed = match prop.pipeline.as_mut() {
            None => Some(value),
            Some(pipeline) => {
                let sample = pipeline::Sample::new(value, at_ms.max(0) as u64);
                let processed = if forced {
                    pipeline.report_now(sample).map(Some)
                } else {
                    pipeline.on_read(sample)
                };
                match processed {
                    Ok(out) => out,
                    Err(err) => {
                        tracing::warn!(property = %spec.name, error = %err, "pipeline refused a value");
                        None
                    }
                }
            }
        };
        if let Some(value) = processed {
            self.emit(prop, &spec.name, value, at_ms);
        }
    }

    /// A value to report: kept for the twin, sent to every sink of the property.
    fn emit(&self, prop: &mut Property, name: &str, value: Value, at_ms: i64) {
        for sink in &prop.sinks {
            sink.push(Sample {
                device: self.id.clone(),
                property: name.to_owned(),
                ty: prop.ty,
                value: value.clone(),
                timestamp_ms: at_ms,
            });
        }
        prop.current = Some(value);
    }

    /// Releases values that pipelines held (closed windows, rate-limited values) whose time has
    /// come. Runs before the reads of the same wake-up.
    fn tick_pipelines(&self, run: &mut Running<D>) {
        let now_ms = unix_millis().max(0) as u64;
        for (prop, spec) in run.properties.iter_mut().zip(&run.spec.properties) {
            self.release_until(prop, &spec.name, now_ms);
        }
    }

    /// Ticks a property's pipeline at every deadline up to `until`, in order, and emits what is
    /// released stamped with its deadline: exactly the timer `edgetwin pipeline test` simulates,
    /// so the preview of recorded samples predicts what the mapper reports.
    fn release_until(&self, prop: &mut Property, name: &str, until: u64) {
        while let Some(deadline) = prop
            .pipeline
            .as_deref()
            .and_then(Pipeline::next_deadline)
            .filter(|due| *due <= until)
        {
            let Some(pipeline) = prop.pipeline.as_mut() else {
                return;
            };
            let ticked = pipeline.tick(deadline);
            let stuck = pipeline.next_deadline() == Some(deadline);
            match ticked {
                Ok(Some(pipeline::Outcome::Report { value, .. })) => {
                    self.emit(prop, name, value, deadline as i64);
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(property = %name, error = %err, "pipeline tick failed");
                }
            }
            // A tick at a deadline consumes what was due; this guards the loop regardless.
            if stuck {
                return;
            }
        }
    }

    /// Writes every desired value that differs from what this session last wrote and from the
    /// last read-back, then reads the written points back and reports them at once.
    async fn apply_desired(&self, run: &mut Running<D>) {
        let mut written = Vec::new();
        // A device may refuse a value only in its current state (an interlock refuses green ON
        // while red is still ON): what it refused is tried again after each successful write,
        // so the order of the properties in the spec does not matter.
        let mut queue: VecDeque<usize> = (0..run.properties.len()).collect();
        let mut refused = Vec::new();
        // Property index → (desired value in wire form, reason) of the writes that failed for
        // good in this pass; reported as `write_error` at the end.
        let mut failed: BTreeMap<usize, (String, String)> = BTreeMap::new();
        while let Some(index) = queue.pop_front() {
            let Some(session) = run.session.as_mut() else {
                return;
            };
            let prop = &mut run.properties[index];
            let name = &run.spec.properties[index].name;
            let Some(write) = prop.write.as_mut() else {
                continue;
            };
            let Some(desired) = write.desired.clone() else {
                continue;
            };
            let desired_wire = desired.to_wire();
            let device_value = match &prop.pipeline {
                None => desired,
                Some(pipeline) => match pipeline.on_write(desired) {
                    Ok(value) => value,
                    Err(err) => {
                        tracing::warn!(property = %name, error = %err, "desired value refused by the pipeline");
                        write.desired = None;
                        failed.insert(index, (desired_wire, err.to_string()));
                        continue;
                    }
                },
            };
            if write.written.as_ref() == Some(&device_value)
                || prop.raw.as_ref() == Some(&device_value)
            {
                continue;
            }
            let point = &run.config.points[index];
            let started = Instant::now();
            let write_timeout = self.ctx.options.write_timeout;
            let span = tracing::info_span!("write", property = %name, value = %device_value);
            let result = match timeout(write_timeout, session.write(point, &device_value))
                .instrument(span)
                .await
            {
                Ok(result) => result,
                Err(_) => Err(DriverError::Timeout(write_timeout)),
            };
            match result {
                Ok(()) => {
                    edgetwin_hoptrace::mark("mapper.written");
                    self.metrics.write(started.elapsed());
                    tracing::debug!(property = %name, value = %device_value, "written");
                    write.written = Some(device_value);
                    written.push(PointId(index));
                    failed.remove(&index);
                    queue.extend(refused.drain(..));
                }
                Err(err) => {
                    self.metrics.write_error(err.kind());
                    tracing::warn!(property = %name, value = %device_value, error = %err, "write failed");
                    if matches!(err, DriverError::Rejected(_)) {
                        refused.push(index);
                    }
                    if let Some(reason) = refusal_reason(&err) {
                        failed.insert(index, (desired_wire, reason));
                    }
                    if err.is_transient() {
                        // Retried after the reconnect: the new session has written nothing.
                        if matches!(err, DriverError::Disconnected(_))
                            || run.breaker.record_failure(Instant::now())
                        {
                            self.lose_session(run, err).await;
                        }
                        break;
                    }
                }
            }
        }
        if !written.is_empty() {
            self.read(run, &written, true).await;
            edgetwin_hoptrace::mark("mapper.read.back");
            let names: BTreeSet<usize> = written.iter().map(|id| id.0).collect();
            self.report(run, false, |index, _| names.contains(&index));
        }
        self.report_refused(run, failed);
    }

    /// Publishes one `twin/update` with a `write_error` for each write that failed for good, so
    /// the cloud shows the property as `Failed` (property index → (desired value, reason)).
    fn report_refused(&self, run: &Running<D>, failed: BTreeMap<usize, (String, String)>) {
        let refused: Vec<Refused> = failed
            .into_iter()
            .filter_map(|(index, (value, reason))| {
                let prop = &run.properties[index];
                prop.report_to_cloud.then(|| Refused {
                    name: run.spec.properties[index].name.clone(),
                    ty: prop.ty,
                    value,
                    reason,
                    actual: prop.current.as_ref().map(Value::to_wire),
                })
            })
            .collect();
        if refused.is_empty() {
            return;
        }
        self.ctx.bus.publish(
            &self.topics.twin_update,
            twin::twin_write_errors(&refused, unix_millis()),
            rumqttc::QoS::AtLeastOnce,
            false,
        );
    }

    /// Publishes one `twin/update` with every property whose value changed and whose report
    /// cycle has passed, or with all of them when the heartbeat is due.
    fn report_due(&self, run: &mut Running<D>) {
        let now = Instant::now();
        if now < run.next_report {
            return;
        }
        while run.next_report <= now {
            run.next_report += run.report_tick;
        }
        let heartbeat = run.heartbeat_at.is_some_and(|at| now >= at);
        if heartbeat && let Some(every) = self.ctx.options.heartbeat {
            run.heartbeat_at = Some(now + every);
        }
        // Timers fire a little late or early: a property whose cycle ends within half a tick
        // is due now, so a 100 ms property is reported at every 100 ms tick.
        let horizon = now + run.report_tick / 2;
        self.report(run, heartbeat, |_, prop| {
            heartbeat
                || prop
                    .reported_at
                    .is_none_or(|at| horizon >= at + prop.report_cycle)
        });
    }

    /// Publishes one `twin/update` with the properties that pass `include` and whose value
    /// changed since it was last reported (or, with `unchanged_too`, that have a value at all).
    fn report(
        &self,
        run: &mut Running<D>,
        unchanged_too: bool,
        include: impl Fn(usize, &Property) -> bool,
    ) {
        let now = Instant::now();
        let mut entries = Vec::new();
        let mut included = Vec::new();
        for (index, prop) in run.properties.iter().enumerate() {
            let (true, Some(value)) = (prop.report_to_cloud, prop.current.as_ref()) else {
                continue;
            };
            let changed = !prop.reported.as_ref().is_some_and(|r| same_wire(r, value));
            if (changed || unchanged_too) && include(index, prop) {
                entries.push(Reported {
                    name: run.spec.properties[index].name.clone(),
                    value: value.to_wire(),
                    ty: prop.ty,
                });
                included.push(index);
            }
        }
        if entries.is_empty() {
            return;
        }
        let payload = twin::twin_update(&entries, unix_millis());
        edgetwin_hoptrace::mark("mapper.report.queued");
        if self.ctx.bus.publish(
            &self.topics.twin_update,
            payload,
            rumqttc::QoS::AtMostOnce,
            false,
        ) {
            self.metrics.report();
            for index in included {
                let prop = &mut run.properties[index];
                prop.reported.clone_from(&prop.current);
                prop.reported_at = Some(now);
            }
        }
    }

    async fn check_health(&self, run: &mut Running<D>) {
        let now = Instant::now();
        if now < run.health_at {
            return;
        }
        run.health_at = now + self.ctx.options.health_interval;
        let Some(session) = run.session.as_mut() else {
            return;
        };
        let result = match timeout(self.ctx.options.read_timeout, session.health()).await {
            Ok(result) => result,
            Err(_) => Err(DriverError::Timeout(self.ctx.options.read_timeout)),
        };
        match result {
            Ok(()) => {
                if matches!(run.state, DeviceState::Unhealthy(_)) && !run.read_unhealthy {
                    run.state = DeviceState::Online;
                }
            }
            Err(err) if err.is_transient() => self.lose_session(run, err).await,
            Err(err) => run.state = DeviceState::Unhealthy(err.to_string()),
        }
    }

    fn request_twin_if_due(&self, run: &mut Running<D>) {
        let now = Instant::now();
        if run.twin_received || now < run.twin_get_at {
            return;
        }
        run.twin_get_at = now + run.twin_get_backoff.next_delay();
        self.ctx.bus.publish(
            &self.topics.twin_get,
            twin::twin_get(unix_millis()),
            rumqttc::QoS::AtMostOnce,
            false,
        );
    }

    /// Publishes the state when it changed, after a resync, or when the state report cycle is
    /// due.
    fn sync_state(&self, run: &mut Running<D>) {
        let now = Instant::now();
        let state = effective_state(run);
        let due = run.state_heartbeat_at.is_some_and(|at| now >= at);
        if run.state_published.as_ref() == Some(&state) && !due {
            return;
        }
        if run.state_published.as_ref() != Some(&state) {
            tracing::info!(state = %state, "device state");
        }
        if self.publish_state(&state) {
            run.state_published = Some(state);
            run.state_heartbeat_at = run.spec.state_report_cycle.map(|c| now + c);
        }
    }

    fn publish_state(&self, state: &DeviceState) -> bool {
        self.metrics.state(state.name());
        self.ctx.bus.publish(
            &self.topics.state_update,
            twin::state_update(state, unix_millis()),
            rumqttc::QoS::AtLeastOnce,
            false,
        )
    }

    /// Drops a failed session; the breaker decides when to reconnect.
    async fn lose_session(&self, run: &mut Running<D>, err: DriverError) {
        if let Some(session) = run.session.take() {
            tracing::warn!(error = %err, "device session lost; reconnecting with backoff");
            let _ = timeout(self.ctx.options.connect_timeout, session.disconnect()).await;
        }
        if run.breaker.allows(Instant::now()) {
            run.breaker.trip(Instant::now());
        }
        run.push_rx = None;
        run.pushed.clear();
        run.state = DeviceState::Offline(err.to_string());
    }

    /// The earliest instant something is due.
    fn next_wake(&self, run: &mut Running<D>) -> Instant {
        let now = Instant::now();
        let mut wake = run.next_report;
        if run.session.is_some() {
            for group in &run.groups {
                wake = wake.min(group.due);
            }
            wake = wake.min(run.health_at);
        } else if let Some(retry) = run.breaker.retry_at(now) {
            wake = wake.min(retry);
        } else {
            wake = now;
        }
        if !run.twin_received {
            wake = wake.min(run.twin_get_at);
        }
        if let Some(at) = run.state_heartbeat_at {
            wake = wake.min(at);
        }
        let now_ms = unix_millis().max(0) as u64;
        for prop in &run.properties {
            if let Some(due) = prop.pipeline.as_deref().and_then(Pipeline::next_deadline) {
                wake = wake.min(now + Duration::from_millis(due.saturating_sub(now_ms)));
            }
        }
        wake
    }

    /// Stops: publishes `offline` when the mapper shuts down, closes the session.
    async fn finish(&self, mut run: Box<Running<D>>) {
        if self.ctx.shutting_down() {
            self.publish_state(&DeviceState::Offline("mapper stopped".into()));
        } else {
            self.metrics.forget_state();
        }
        if let Some(session) = run.session.take() {
            let _ = timeout(self.ctx.options.connect_timeout, session.disconnect()).await;
        }
        tracing::info!("device task stopped");
    }
}

/// Why a write failed for good, to report to the cloud; `None` for a transient failure (I/O,
/// timeout, disconnect), which is retried after the reconnect and shows as the device state.
fn refusal_reason(err: &DriverError) -> Option<String> {
    match err {
        DriverError::Rejected(reason) => Some(reason.clone()),
        DriverError::Config(_) | DriverError::Unsupported(_) => Some(err.to_string()),
        DriverError::Io(_) | DriverError::Timeout(_) | DriverError::Disconnected(_) => None,
    }
}

/// The state to publish: the session's, except that a connected device whose sink fails is
/// `unhealthy` with the sink's name and first failure (its samples wait in the sink's queue).
fn effective_state<D: Driver>(run: &Running<D>) -> DeviceState {
    if run.state != DeviceState::Online {
        return run.state.clone();
    }
    run.properties
        .iter()
        .flat_map(|p| p.sinks.iter())
        .find_map(|sink| {
            sink.failure()
                .map(|reason| DeviceState::Unhealthy(format!("sink {}: {reason}", sink.name())))
        })
        .unwrap_or(DeviceState::Online)
}

/// Whether two values have the same wire form, without formatting them: floats by their bits
/// (`-0` and `0` differ on the wire, and a NaN equals itself there).
fn same_wire(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
        _ => a == b,
    }
}

/// How a connection attempt ended.
enum Connect {
    Connected,
    /// A transient failure: retried when the breaker allows.
    Failed,
    /// The driver refused the configuration.
    ConfigError(String),
}

/// Shortest collect or report cycle the runtime runs (a guard against `collectCycle: 1`).
const MIN_CYCLE: Duration = Duration::from_millis(1);
/// First `twin/get` retry when no answer came.
const TWIN_GET_RETRY: Duration = Duration::from_secs(2);
/// Longest `twin/get` retry interval.
const TWIN_GET_RETRY_MAX: Duration = Duration::from_secs(60);

async fn recv_pushed(rx: Option<&mut mpsc::Receiver<Pushed>>) -> Option<Pushed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
