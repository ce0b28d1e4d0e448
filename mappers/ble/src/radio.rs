//! What all devices of a mapper share: one BlueZ session (the D-Bus connection), and per
//! adapter the connection slots and the connect queue; plus the GATT tables found on each device.
//!
//! Adapters hold few connections (often 5 to 10; see the crate README): a device takes one of
//! its adapter's `max_connections` slots while it is connected, and devices that find every slot
//! taken wait for one in first-come, first-served order (a fair semaphore). Connection attempts
//! on one adapter go one at a time, in the order asked, as controllers create one LE connection
//! at a time.
//!
//! Discovering a device's services and characteristics over D-Bus takes a call per service and
//! per characteristic; the table found ([`GattTable`]) is kept per adapter and address, so a
//! reconnect only checks the UUIDs of the characteristics it uses. A table that no longer
//! matches (the device's firmware changed) is discovered again.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bluer::gatt::remote::Characteristic;
use bluer::{Adapter, AdapterEvent, Device, DeviceEvent, DeviceProperty, ErrorKind, Session, Uuid};
use edgetwin_sdk::DriverError;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

use crate::config::{Mac, Target};

/// Connections an adapter holds at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 5;

/// How the driver uses the machine's adapters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadioOptions {
    /// The adapter of devices that name none (default: `hci0` when present, else BlueZ's first).
    pub default_adapter: Option<String>,
    /// Devices connected at once per adapter.
    pub max_connections: usize,
}

impl Default for RadioOptions {
    fn default() -> Self {
        RadioOptions {
            default_adapter: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// One characteristic of a device's GATT table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GattEntry {
    /// Its service's UUID.
    pub service_uuid: Uuid,
    /// BlueZ's id of the service (its object path).
    pub service_id: u16,
    /// The characteristic's UUID.
    pub uuid: Uuid,
    /// BlueZ's id of the characteristic.
    pub id: u16,
    /// `read`, `write`, `notify`, … as BlueZ lists them.
    pub flags: Flags,
}

/// The characteristic properties the driver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// Read.
    pub read: bool,
    /// Write with response.
    pub write: bool,
    /// Write without response.
    pub write_without_response: bool,
    /// Notify.
    pub notify: bool,
    /// Indicate.
    pub indicate: bool,
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.read, "read"),
            (self.write, "write"),
            (self.write_without_response, "write-without-response"),
            (self.notify, "notify"),
            (self.indicate, "indicate"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        f.write_str(&names.join(","))
    }
}

/// A device's services and characteristics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GattTable {
    /// Every characteristic, in discovery order.
    pub entries: Vec<GattEntry>,
}

impl GattTable {
    /// The characteristic `uuid` (in `service` when given); the first when several services
    /// have it.
    pub fn find(&self, uuid: Uuid, service: Option<Uuid>) -> Option<&GattEntry> {
        self.entries
            .iter()
            .find(|e| e.uuid == uuid && service.is_none_or(|s| e.service_uuid == s))
    }

    /// The services' UUIDs, for messages.
    pub fn services(&self) -> Vec<Uuid> {
        let mut services: Vec<Uuid> = Vec::new();
        for entry in &self.entries {
            if !services.contains(&entry.service_uuid) {
                services.push(entry.service_uuid);
            }
        }
        services
    }
}

/// An adapter's shared limits.
#[derive(Debug)]
struct AdapterSlots {
    slots: Arc<Semaphore>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

/// The state every device of the driver shares.
pub struct Radio {
    options: RadioOptions,
    session: tokio::sync::Mutex<Option<Session>>,
    adapters: Mutex<HashMap<String, Arc<AdapterSlots>>>,
    tables: Mutex<HashMap<(String, Mac), Arc<GattTable>>>,
    discoveries: AtomicU64,
}

impl fmt::Debug for Radio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Radio")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A connected device, holding its adapter slot.
pub struct Connected {
    /// The adapter's name.
    pub adapter: String,
    /// The device.
    pub device: Device,
    /// Its address.
    pub address: Mac,
    /// Its GATT table.
    pub table: Arc<GattTable>,
    /// The slot, given back when this is dropped.
    pub slot: OwnedSemaphorePermit,
}

impl Radio {
    /// A radio; nothing is opened until the first connection.
    pub fn new(options: RadioOptions) -> Radio {
        Radio {
            options: RadioOptions {
                max_connections: options.max_connections.max(1),
                ..options
            },
            session: tokio::sync::Mutex::new(None),
            adapters: Mutex::new(HashMap::new()),
            tables: Mutex::new(HashMap::new()),
            discoveries: AtomicU64::new(0),
        }
    }

    /// How many GATT tables were discovered (a reconnect that reuses a cached table adds none).
    pub fn discoveries(&self) -> u64 {
        self.discoveries.load(Ordering::Relaxed)
    }

    /// The options.
    pub fn options(&self) -> &RadioOptions {
        &self.options
    }

    /// The BlueZ session, opened on first use and again after it failed.
    async fn session(&self) -> Result<Session, DriverError> {
        let mut session = self.session.lock().await;
        if let Some(session) = session.as_ref() {
            return Ok(session.clone());
        }
        let opened = Session::new()
            .await
            .map_err(|e| DriverError::Io(format!("cannot reach BlueZ on the system D-Bus: {e}")))?;
        *session = Some(opened.clone());
        Ok(opened)
    }

    /// Forgets the session after a D-Bus failure, so the next connect opens a new one.
    async fn reset_session(&self) {
        *self.session.lock().await = None;
    }

    fn slots(&self, adapter: &str) -> Arc<AdapterSlots> {
        let mut adapters = self.adapters.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(adapters.entry(adapter.to_owned()).or_insert_with(|| {
            Arc::new(AdapterSlots {
                slots: Arc::new(Semaphore::new(self.options.max_connections)),
                connecting: tokio::sync::Mutex::new(()),
            })
        }))
    }

    /// Connections in use on `adapter`.
    pub fn in_use(&self, adapter: &str) -> usize {
        self.options.max_connections - self.slots(adapter).slots.available_permits()
    }

    /// Finds, connects and discovers the device by `deadline`: waits for a slot on its adapter,
    /// finds it (scanning when BlueZ does not know it yet), connects (one attempt at a time per
    /// adapter) and resolves its GATT table (`wanted` are the characteristics the caller uses,
    /// checked against a cached table).
    pub async fn connect(
        &self,
        target: &Target,
        adapter: Option<&str>,
        wanted: &[(Uuid, Option<Uuid>)],
        deadline: Instant,
    ) -> Result<Connected, DriverError> {
        let session = self.session().await?;
        let result = self
            .connect_with(&session, target, adapter, wanted, deadline)
            .await;
        if let Err(DriverError::Io(message)) = &result
            && message.contains("org.freedesktop.DBus.Error")
        {
            self.reset_session().await;
        }
        result
    }

    async fn connect_with(
        &self,
        session: &Session,
        target: &Target,
        adapter: Option<&str>,
        wanted: &[(Uuid, Option<Uuid>)],
        deadline: Instant,
    ) -> Result<Connected, DriverError> {
        let adapter = self.adapter(session, adapter).await?;
        let name = adapter.name().to_owned();
        let slots = self.slots(&name);
        let slot = match timeout_at(deadline, Arc::clone(&slots.slots).acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(DriverError::Io("the adapter's slots are closed".into())),
            Err(_) => {
                return Err(DriverError::Io(format!(
                    "no free connection slot on {name}: all {} are in use (--max-connections)",
                    self.options.max_connections
                )));
            }
        };
        let device = find(&adapter, target, deadline).await?;
        let address = Mac(device.address().0);
        {
            let _turn = match timeout_at(deadline, slots.connecting.lock()).await {
                Ok(turn) => turn,
                Err(_) => {
                    return Err(DriverError::Io(format!(
                        "{address}: other devices on {name} were still connecting"
                    )));
                }
            };
            if !device
                .is_connected()
                .await
                .map_err(|e| bluez_error(&e, &address, "connecting"))?
            {
                match timeout_at(deadline, device.connect()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.kind == ErrorKind::AlreadyConnected => {}
                    Ok(Err(e)) => return Err(bluez_error(&e, &address, "connecting")),
                    Err(_) => {
                        // Leave no half-open attempt behind for the next one.
                        let _ = device.disconnect().await;
                        return Err(DriverError::Io(format!(
                            "{address} did not connect in time (out of range or off?)"
                        )));
                    }
                }
            }
        }
        let resolved = async {
            wait_resolved(&device, &address, deadline).await?;
            self.table(&name, &device, address, wanted, deadline).await
        };
        let table = match resolved.await {
            Ok(table) => table,
            Err(err) => {
                // The link is up but useless: give the controller its connection back.
                let _ = device.disconnect().await;
                return Err(err);
            }
        };
        Ok(Connected {
            adapter: name,
            device,
            address,
            table,
            slot,
        })
    }

    /// The named adapter, or the default; powered on if it is off.
    async fn adapter(
        &self,
        session: &Session,
        wanted: Option<&str>,
    ) -> Result<Adapter, DriverError> {
        let names = session
            .adapter_names()
            .await
            .map_err(|e| DriverError::Io(format!("cannot list Bluetooth adapters: {e}")))?;
        let wanted = wanted.or(self.options.default_adapter.as_deref());
        let name = match wanted {
            Some(name) if names.iter().any(|n| n == name) => name.to_owned(),
            Some(name) => {
                return Err(DriverError::Io(format!(
                    "no Bluetooth adapter {name} (BlueZ has: {})",
                    list(&names)
                )));
            }
            None => {
                let mut sorted = names.clone();
                sorted.sort();
                match sorted.iter().find(|n| *n == "hci0").or(sorted.first()) {
                    Some(name) => name.clone(),
                    None => return Err(DriverError::Io("BlueZ has no Bluetooth adapter".into())),
                }
            }
        };
        let adapter = session
            .adapter(&name)
            .map_err(|e| DriverError::Io(format!("adapter {name}: {e}")))?;
        let powered = adapter
            .is_powered()
            .await
            .map_err(|e| DriverError::Io(format!("adapter {name}: {e}")))?;
        if !powered {
            tracing::info!(adapter = %name, "powering the adapter on");
            adapter.set_powered(true).await.map_err(|e| {
                DriverError::Io(format!(
                    "adapter {name} is off and cannot be powered on: {e}"
                ))
            })?;
        }
        Ok(adapter)
    }

    /// The cached table when it still has the wanted characteristics, else a new discovery.
    async fn table(
        &self,
        adapter: &str,
        device: &Device,
        address: Mac,
        wanted: &[(Uuid, Option<Uuid>)],
        deadline: Instant,
    ) -> Result<Arc<GattTable>, DriverError> {
        let key = (adapter.to_owned(), address);
        let cached = self
            .tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(table) = cached {
            match timeout_at(deadline, still_matches(device, &table, wanted)).await {
                Ok(true) => return Ok(table),
                Ok(false) => {
                    tracing::info!(%address, "the device's GATT table changed; discovering again");
                }
                Err(_) => return Err(DriverError::Io(format!("{address}: GATT check timed out"))),
            }
        }
        self.discoveries.fetch_add(1, Ordering::Relaxed);
        let table = match timeout_at(deadline, discover(device, &address)).await {
            Ok(table) => Arc::new(table?),
            Err(_) => {
                return Err(DriverError::Io(format!(
                    "{address}: service discovery did not finish in time"
                )));
            }
        };
        tracing::debug!(%address, characteristics = table.entries.len(), "GATT table discovered");
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&table));
        Ok(table)
    }
}

/// The device the target names: known to BlueZ already, or found by scanning until `deadline`.
async fn find(
    adapter: &Adapter,
    target: &Target,
    deadline: Instant,
) -> Result<Device, DriverError> {
    if let Some(device) = known(adapter, target).await? {
        return Ok(device);
    }
    tracing::info!(adapter = %adapter.name(), %target, "scanning for the device");
    let scan = async {
        let events = adapter
            .discover_devices_with_changes()
            .await
            .map_err(|e| DriverError::Io(format!("cannot scan on {}: {e}", adapter.name())))?;
        first_match(adapter, target, events).await
    };
    match timeout_at(deadline, scan).await {
        Ok(found) => found,
        Err(_) => Err(DriverError::Io(format!(
            "{target} was not found on {} (out of range, off, or not advertising)",
            adapter.name()
        ))),
    }
}

async fn known(adapter: &Adapter, target: &Target) -> Result<Option<Device>, DriverError> {
    let addresses = adapter
        .device_addresses()
        .await
        .map_err(|e| DriverError::Io(format!("cannot list devices of {}: {e}", adapter.name())))?;
    for address in addresses {
        if matches(adapter, target, address).await {
            return adapter
                .device(address)
                .map(Some)
                .map_err(|e| DriverError::Io(format!("{address}: {e}")));
        }
    }
    Ok(None)
}

async fn first_match(
    adapter: &Adapter,
    target: &Target,
    events: impl Stream<Item = AdapterEvent>,
) -> Result<Device, DriverError> {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        if let AdapterEvent::DeviceAdded(address) = event
            && matches(adapter, target, address).await
        {
            return adapter
                .device(address)
                .map_err(|e| DriverError::Io(format!("{address}: {e}")));
        }
    }
    Err(DriverError::Io(format!(
        "scanning on {} stopped before {target} was seen",
        adapter.name()
    )))
}

async fn matches(adapter: &Adapter, target: &Target, address: bluer::Address) -> bool {
    match target {
        Target::Address(mac) => address.0 == mac.0,
        Target::Name(name) => match adapter.device(address) {
            Ok(device) => {
                device.name().await.ok().flatten().as_deref() == Some(name.as_str())
                    || device.alias().await.ok().as_deref() == Some(name.as_str())
            }
            Err(_) => false,
        },
    }
}

/// Waits until BlueZ has resolved the device's services.
async fn wait_resolved(
    device: &Device,
    address: &Mac,
    deadline: Instant,
) -> Result<(), DriverError> {
    let wait = async {
        let mut events = std::pin::pin!(device.events().await.map_err(|e| bluez_error(
            &e,
            address,
            "waiting for services"
        ))?);
        if device
            .is_services_resolved()
            .await
            .map_err(|e| bluez_error(&e, address, "waiting for services"))?
        {
            return Ok(());
        }
        while let Some(DeviceEvent::PropertyChanged(property)) = events.next().await {
            match property {
                DeviceProperty::ServicesResolved(true) => return Ok(()),
                DeviceProperty::Connected(false) => {
                    return Err(DriverError::Disconnected(format!(
                        "{address} disconnected during service discovery"
                    )));
                }
                _ => {}
            }
        }
        Err(DriverError::Disconnected(format!(
            "{address} was removed by BlueZ"
        )))
    };
    match timeout_at(deadline, wait).await {
        Ok(result) => result,
        Err(_) => Err(DriverError::Io(format!(
            "{address}: services were not resolved in time"
        ))),
    }
}

/// Reads the services and characteristics of a connected device.
async fn discover(device: &Device, address: &Mac) -> Result<GattTable, DriverError> {
    let error = |e: bluer::Error| bluez_error(&e, address, "discovering services");
    let mut entries = Vec::new();
    for service in device.services().await.map_err(error)? {
        let service_uuid = service.uuid().await.map_err(error)?;
        for characteristic in service.characteristics().await.map_err(error)? {
            let flags = characteristic.flags().await.map_err(error)?;
            entries.push(GattEntry {
                service_uuid,
                service_id: service.id(),
                uuid: characteristic.uuid().await.map_err(error)?,
                id: characteristic.id(),
                flags: Flags {
                    read: flags.read,
                    write: flags.write,
                    write_without_response: flags.write_without_response,
                    notify: flags.notify,
                    indicate: flags.indicate,
                },
            });
        }
    }
    Ok(GattTable { entries })
}

/// Whether the wanted characteristics the table has are still where it says. (One the device
/// lacked at discovery is not looked for again on every reconnect.)
async fn still_matches(
    device: &Device,
    table: &GattTable,
    wanted: &[(Uuid, Option<Uuid>)],
) -> bool {
    for (uuid, service) in wanted {
        let Some(entry) = table.find(*uuid, *service) else {
            continue;
        };
        match characteristic(device, entry).await {
            Ok(c) => {
                if c.uuid().await.ok() != Some(entry.uuid) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// The D-Bus handle of a table entry (no call is made).
pub async fn characteristic(device: &Device, entry: &GattEntry) -> bluer::Result<Characteristic> {
    device
        .service(entry.service_id)
        .await?
        .characteristic(entry.id)
        .await
}

/// What a BlueZ error means for the runtime: a lost link reconnects, a refusal fails the point,
/// anything else is a transient failure. `doing` says what was tried (`reading 2a6e`).
pub fn bluez_error(err: &bluer::Error, address: &Mac, doing: &str) -> DriverError {
    let message = format!("{address}: {doing}: {err}");
    match &err.kind {
        ErrorKind::NotFound => DriverError::Disconnected(format!(
            "{address}: {doing}: BlueZ removed the object (the link dropped)"
        )),
        ErrorKind::ServicesUnresolved | ErrorKind::NotificationSessionStopped => {
            DriverError::Disconnected(message)
        }
        ErrorKind::Failed if err.message.to_ascii_lowercase().contains("not connected") => {
            DriverError::Disconnected(message)
        }
        ErrorKind::NotPermitted
        | ErrorKind::NotAuthorized
        | ErrorKind::NotSupported
        | ErrorKind::InvalidOffset
        | ErrorKind::InvalidLength
        | ErrorKind::InvalidArguments => DriverError::Rejected(message),
        _ => DriverError::Io(message),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Waits for the first event saying the device's link is gone.
pub async fn link_lost(device: &Device, address: Mac) -> String {
    let Ok(events) = device.events().await else {
        return format!("{address} is gone");
    };
    let mut events = std::pin::pin!(events);
    while let Some(DeviceEvent::PropertyChanged(property)) = events.next().await {
        if matches!(property, DeviceProperty::Connected(false)) {
            return format!("{address} disconnected");
        }
    }
    format!("{address} was removed by BlueZ")
}
