//! The SDK driver: BLE devices as edgetwin sessions.
//!
//! [`BleDriver`] validates a device's configuration, and [`BleDriver::connect`] finds the
//! device, connects (through the [`Radio`]'s per-adapter slots and queue) and resolves each
//! property's characteristic in the device's GATT table. A [`BleSession`] reads each
//! characteristic once per batch however many properties use it, writes with or without
//! response, and subscribes to the characteristics that notify or indicate: their values are
//! pushed through the SDK (which then stops polling them), and a link that drops ends the
//! subscription so that the runtime reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bluer::Uuid;
use bluer::gatt::WriteOp;
use bluer::gatt::remote::{Characteristic, CharacteristicWriteRequest};
use edgetwin_sdk::{
    DeviceConfig, DeviceId, Driver, DriverError, Point, PointId, PropertyType, PushSender, Session,
    Value,
};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::codec::hex;
use crate::config::{
    ConfigError, DeviceSettings, NotifyMode, PointSettings, ProtocolConfig, VisitorConfig,
    WriteType,
};
use crate::radio::{self, Connected, GattEntry, Radio, RadioOptions, bluez_error};

type Config = DeviceConfig<ProtocolConfig, VisitorConfig>;

/// The BLE protocol driver. One value serves every BLE device of a mapper and shares the
/// machine's adapters between them.
#[derive(Debug)]
pub struct BleDriver {
    radio: Arc<Radio>,
}

impl Default for BleDriver {
    fn default() -> Self {
        BleDriver::new(RadioOptions::default())
    }
}

impl BleDriver {
    /// A driver using the adapters as `options` say.
    pub fn new(options: RadioOptions) -> BleDriver {
        BleDriver {
            radio: Arc::new(Radio::new(options)),
        }
    }

    /// The shared adapter state (slots in use, options).
    pub fn radio(&self) -> &Radio {
        &self.radio
    }
}

/// A device's configuration, validated.
struct Resolved {
    settings: DeviceSettings,
    points: Vec<(PointId, PointSettings)>,
}

impl Resolved {
    fn new(device: &Config) -> Result<Resolved, DriverError> {
        let settings = device
            .protocol
            .settings()
            .map_err(|e| DriverError::Config(format!("protocol.configData.{e}")))?;
        let points = device
            .points
            .iter()
            .map(|point| {
                point
                    .visitor
                    .settings(point.ty)
                    .map(|settings| (point.id, settings))
                    .map_err(|e| visitor_error(&point.property, &e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Resolved { settings, points })
    }
}

fn visitor_error(property: &str, err: &ConfigError) -> DriverError {
    DriverError::Config(format!("property {property}: visitors.configData.{err}"))
}

impl Driver for BleDriver {
    const PROTOCOL: &'static str = "bluetooth";
    const PROTOCOL_ALIASES: &'static [&'static str] = &["ble"];
    type ProtocolConfig = ProtocolConfig;
    type VisitorConfig = VisitorConfig;
    type Session = BleSession;

    fn validate(&self, device: &Config) -> Result<(), DriverError> {
        let resolved = Resolved::new(device)?;
        for key in device.protocol.unknown_keys() {
            tracing::warn!(device = %device.id, key, "unknown key in protocol.configData, ignored");
        }
        for (point, (_, settings)) in device.points.iter().zip(&resolved.points) {
            warn_about(&device.id, point, settings);
        }
        Ok(())
    }

    async fn connect(&self, device: &Config) -> Result<BleSession, DriverError> {
        let Resolved { settings, points } = Resolved::new(device)?;
        let deadline = Instant::now() + settings.connect_timeout;
        let mut wanted: Vec<(Uuid, Option<Uuid>)> = Vec::new();
        for (_, point) in &points {
            let key = (point.characteristic, point.service);
            if !wanted.contains(&key) {
                wanted.push(key);
            }
        }
        let connected = self
            .radio
            .connect(
                &settings.target,
                settings.adapter.as_deref(),
                &wanted,
                deadline,
            )
            .await?;
        let mut session = BleSession {
            device: device.id.clone(),
            timeout: settings.timeout,
            chars: Vec::new(),
            points: HashMap::new(),
            tasks: Vec::new(),
            link: connected,
        };
        for (point, (id, point_settings)) in device.points.iter().zip(points) {
            let located = session.locate(&point_settings).await;
            if let Err(reason) = &located {
                tracing::warn!(device = %device.id, property = %point.property, %reason, "property not served");
            }
            session.points.insert(
                id,
                PointLink {
                    settings: point_settings,
                    char: located,
                },
            );
        }
        tracing::info!(
            device = %device.id,
            address = %session.link.address,
            adapter = %session.link.adapter,
            in_use = self.radio.in_use(&session.link.adapter),
            "BLE device connected"
        );
        Ok(session)
    }
}

/// Logs what a valid configuration may still get wrong.
fn warn_about(device: &DeviceId, point: &Point<VisitorConfig>, settings: &PointSettings) {
    let property = &point.property;
    for key in point.visitor.unknown_keys() {
        tracing::warn!(%device, %property, key, "unknown key in visitors.configData, ignored");
    }
    for key in point.visitor.flattened_keys() {
        tracing::warn!(%device, %property, key, "the keys of {key} are written next to it, not inside it; read as {key}");
    }
    let codec = &settings.codec;
    if point.writable
        && let Some(map) = &codec.data_write
    {
        let unwritable: Vec<&str> = map
            .0
            .iter()
            .filter(|(key, _)| codec.ty.parse(key).is_err())
            .map(|(key, _)| key.as_str())
            .collect();
        if unwritable.len() == map.0.len() {
            tracing::warn!(%device, %property, ty = %codec.ty.twin_type_name(),
                "no dataWrite key is a value of the property's type: dataWrite is ignored, values are written as the type says");
        } else if !unwritable.is_empty() {
            tracing::warn!(%device, %property, keys = ?unwritable, ty = %codec.ty.twin_type_name(),
                "these dataWrite keys are not values of the property's type and can never be written");
        }
    }
    if point.writable
        && codec.converter.is_some()
        && codec.data_write.is_none()
        && codec.typed.is_none()
    {
        tracing::warn!(%device, %property, "writable, but dataConverter describes reads only: writes need dataWrite or dataType");
    }
}

/// One characteristic of the session.
struct Char {
    entry: GattEntry,
    handle: Characteristic,
    /// The latest value read, written or notified (for the width of natural writes and for
    /// characteristics that cannot be read).
    last: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Char {
    fn last(&self) -> Option<Vec<u8>> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, value: Vec<u8>) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }
}

/// A property's link to its characteristic.
struct PointLink {
    settings: PointSettings,
    /// The index in `BleSession::chars`, or why the property cannot be served.
    char: Result<usize, String>,
}

/// An open BLE device.
pub struct BleSession {
    device: DeviceId,
    link: Connected,
    timeout: Duration,
    chars: Vec<Char>,
    points: HashMap<PointId, PointLink>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for BleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleSession")
            .field("device", &self.device)
            .field("address", &self.link.address)
            .field("adapter", &self.link.adapter)
            .finish_non_exhaustive()
    }
}

impl BleSession {
    /// The characteristic of a property in the device's table.
    async fn locate(&mut self, point: &PointSettings) -> Result<usize, String> {
        let table = Arc::clone(&self.link.table);
        let Some(entry) = table.find(point.characteristic, point.service) else {
            let services: Vec<String> = table.services().iter().map(Uuid::to_string).collect();
            return Err(format!(
                "characteristic {}{} is not on {} (its services: {})",
                point.characteristic,
                point
                    .service
                    .map(|s| format!(" in service {s}"))
                    .unwrap_or_default(),
                self.link.address,
                services.join(", ")
            ));
        };
        if let Some(index) = self.chars.iter().position(|c| c.entry == *entry) {
            return Ok(index);
        }
        let handle = radio::characteristic(&self.link.device, entry)
            .await
            .map_err(|e| e.to_string())?;
        self.chars.push(Char {
            entry: entry.clone(),
            handle,
            last: Arc::default(),
        });
        Ok(self.chars.len() - 1)
    }

    fn link(&self, id: PointId) -> Result<(&PointLink, usize), DriverError> {
        let link = self
            .points
            .get(&id)
            .ok_or_else(|| DriverError::Unsupported(format!("point {} is not configured", id.0)))?;
        match &link.char {
            Ok(index) => Ok((link, *index)),
            Err(reason) => Err(DriverError::Rejected(reason.clone())),
        }
    }

    /// A BlueZ error. (A reconnect checks the cached GATT table, so a characteristic gone for
    /// good is found again then.)
    fn error(&self, err: &bluer::Error, doing: &str) -> DriverError {
        bluez_error(err, &self.link.address, doing)
    }

    /// Reads one characteristic; one that cannot be read gives its latest written or notified
    /// value.
    async fn read_char(&self, index: usize) -> Result<Vec<u8>, DriverError> {
        let char = &self.chars[index];
        if !char.entry.flags.read {
            return char.last().ok_or_else(|| {
                DriverError::Rejected(format!(
                    "characteristic {} cannot be read ({}) and has sent no value yet",
                    char.entry.uuid, char.entry.flags
                ))
            });
        }
        let doing = format!("reading {}", char.entry.uuid);
        match timeout(self.timeout, char.handle.read()).await {
            Ok(Ok(value)) => {
                char.remember(value.clone());
                Ok(value)
            }
            Ok(Err(err)) => Err(self.error(&err, &doing)),
            Err(_) => Err(DriverError::Timeout(self.timeout)),
        }
    }

    fn decode(&self, link: &PointLink, index: usize, value: &[u8]) -> Result<Value, DriverError> {
        link.settings.codec.decode(value).map_err(|reason| {
            DriverError::Rejected(format!(
                "{} = {}: {reason}",
                self.chars[index].entry.uuid,
                hex(value)
            ))
        })
    }
}

impl Session for BleSession {
    type Visitor = VisitorConfig;

    async fn read(&mut self, points: &[&Point<VisitorConfig>]) -> Vec<Result<Value, DriverError>> {
        let mut values: HashMap<usize, Result<Vec<u8>, DriverError>> = HashMap::new();
        let mut results = Vec::with_capacity(points.len());
        for point in points {
            let (link, index) = match self.link(point.id) {
                Ok(found) => found,
                Err(err) => {
                    results.push(Err(err));
                    continue;
                }
            };
            if !values.contains_key(&index) {
                // After a lost link the rest of the batch fails at once with the same reason.
                let lost = values
                    .values()
                    .find_map(|v| {
                        v.as_ref()
                            .err()
                            .filter(|e| matches!(e, DriverError::Disconnected(_)))
                    })
                    .cloned();
                let value = match lost {
                    Some(err) => Err(err),
                    None => self.read_char(index).await,
                };
                values.insert(index, value);
            }
            results.push(match &values[&index] {
                Ok(value) => self.decode(link, index, value),
                Err(err) => Err(err.clone()),
            });
        }
        results
    }

    async fn write(
        &mut self,
        point: &Point<VisitorConfig>,
        value: &Value,
    ) -> Result<(), DriverError> {
        let (_, index) = self.link(point.id)?;
        let char = &self.chars[index];
        let numeric = matches!(
            point.ty,
            PropertyType::Int | PropertyType::Float | PropertyType::Double
        );
        let mut current = char.last().map(|v| v.len());
        let link = &self.points[&point.id];
        if current.is_none()
            && numeric
            && char.entry.flags.read
            && link.settings.codec.typed.is_none()
            && link.settings.codec.data_write.is_none()
        {
            // A number without dataType is written in the characteristic's own width.
            current = Some(self.read_char(index).await?.len());
        }
        let encoded = link
            .settings
            .codec
            .encode(value, current)
            .map_err(|reason| DriverError::Rejected(format!("{}: {reason}", char.entry.uuid)))?;
        let flags = char.entry.flags;
        let op_type = match link.settings.write_type {
            WriteType::Command => WriteOp::Command,
            // A characteristic that only takes commands gets one.
            WriteType::Request if !flags.write && flags.write_without_response => WriteOp::Command,
            WriteType::Request => WriteOp::Request,
        };
        let request = CharacteristicWriteRequest {
            offset: u16::try_from(encoded.offset).unwrap_or(u16::MAX),
            op_type,
            ..Default::default()
        };
        let doing = format!("writing {} to {}", hex(&encoded.bytes), char.entry.uuid);
        match timeout(
            self.timeout,
            char.handle.write_ext(&encoded.bytes, &request),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(self.error(&err, &doing)),
            Err(_) => return Err(DriverError::Timeout(self.timeout)),
        }
        let mut stored = char.last().unwrap_or_default();
        let end = encoded.offset + encoded.bytes.len();
        if encoded.offset == 0 {
            stored = encoded.bytes;
        } else {
            if stored.len() < end {
                stored.resize(end, 0);
            }
            stored[encoded.offset..end].copy_from_slice(&encoded.bytes);
        }
        char.remember(stored);
        Ok(())
    }

    async fn subscribe(
        &mut self,
        points: &[&Point<VisitorConfig>],
        push: PushSender,
    ) -> Result<Vec<PointId>, DriverError> {
        // The properties of each characteristic that notifies or indicates.
        let mut by_char: Vec<(usize, Vec<PointId>)> = Vec::new();
        for point in points {
            let Ok((link, index)) = self.link(point.id) else {
                continue;
            };
            let flags = self.chars[index].entry.flags;
            let can = flags.notify || flags.indicate;
            match link.settings.notify {
                NotifyMode::Never => continue,
                NotifyMode::Always if !can => {
                    tracing::warn!(device = %self.device, property = %point.property,
                        uuid = %self.chars[index].entry.uuid, flags = %flags,
                        "notify is set but the characteristic neither notifies nor indicates; polled");
                    continue;
                }
                NotifyMode::Auto if !can => continue,
                _ => {}
            }
            match by_char.iter_mut().find(|(i, _)| *i == index) {
                Some((_, ids)) => ids.push(point.id),
                None => by_char.push((index, vec![point.id])),
            }
        }
        let mut subscribed = Vec::new();
        for (index, ids) in by_char {
            let char = &self.chars[index];
            let stream = match timeout(self.timeout, char.handle.notify()).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    let err = self.error(&err, &format!("subscribing to {}", char.entry.uuid));
                    if matches!(err, DriverError::Disconnected(_)) {
                        return Err(err);
                    }
                    tracing::warn!(device = %self.device, error = %err, "notifications refused; polled");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(device = %self.device, uuid = %char.entry.uuid, "subscribing timed out; polled");
                    continue;
                }
            };
            let codecs: Vec<(PointId, crate::codec::Codec)> = ids
                .iter()
                .map(|id| (*id, self.points[id].settings.codec.clone()))
                .collect();
            let last = Arc::clone(&char.last);
            let uuid = char.entry.uuid;
            let address = self.link.address;
            let device = self.device.clone();
            let push = push.clone();
            self.tasks.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                let mut last_error: Option<String> = None;
                while let Some(value) = stream.next().await {
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(value.clone());
                    for (id, codec) in &codecs {
                        match codec.decode(&value) {
                            Ok(decoded) => {
                                if !push.push(*id, decoded).await {
                                    return;
                                }
                            }
                            Err(reason) if last_error.as_deref() != Some(reason.as_str()) => {
                                tracing::warn!(%device, %uuid, value = %hex(&value), %reason, "notified value not understood");
                                last_error = Some(reason);
                            }
                            Err(_) => {}
                        }
                    }
                }
                push.fail(DriverError::Disconnected(format!(
                    "{address}: notifications of {uuid} stopped (link lost)"
                )));
            }));
            subscribed.extend(ids);
        }
        if !subscribed.is_empty() {
            let device = self.link.device.clone();
            let address = self.link.address;
            self.tasks.push(tokio::spawn(async move {
                let reason = radio::link_lost(&device, address).await;
                push.fail(DriverError::Disconnected(reason));
            }));
        }
        Ok(subscribed)
    }

    async fn health(&mut self) -> Result<(), DriverError> {
        match timeout(self.timeout, self.link.device.is_connected()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(DriverError::Disconnected(format!(
                "{} is no longer connected",
                self.link.address
            ))),
            Ok(Err(err)) => Err(self.error(&err, "checking the link")),
            Err(_) => Err(DriverError::Timeout(self.timeout)),
        }
    }

    async fn disconnect(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let _ = timeout(self.timeout, self.link.device.disconnect()).await;
        tracing::debug!(device = %self.device, address = %self.link.address, "BLE device disconnected");
    }
}

impl Drop for BleSession {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
