//! The registry seam: where Devices and DeviceModels live, and where their status is written.
//!
//! The device controller sees the registry through the [`Registry`] trait only. Two backends
//! implement it:
//! - [`embedded`]: a sqlite file in the cloud process, with an HTTP JSON API on loopback that
//!   `edgetwin ctl` talks to (the default for `edgetwin cloud` and `edgetwin up`);
//! - [`kubernetes`] (feature `kube`): Device and DeviceModel custom resources in a cluster, read
//!   with a watcher into a local cache, status written through the status subresource, events as
//!   Kubernetes Events, and leader election on a Lease so only one replica writes.
//!
//! Both give the same guarantees, the API server's: `metadata.generation` changes when the spec
//! changes (never on status writes), `metadata.resourceVersion` on every write; a status patch
//! *merges* (see [`status::merge`]) so writers of different fields never clobber each other;
//! [`Registry::watch`] starts with the current state, then follows changes, and survives
//! re-lists (objects deleted meanwhile arrive as `Deleted`).
//!
//! The trait returns boxed futures and streams so that the controller can hold an
//! `Arc<dyn Registry>` and pick the backend at run time; one allocation per call is noise next to
//! a sqlite transaction or an HTTP request.

pub mod embedded;
#[cfg(feature = "kube")]
pub mod kubernetes;
/// JSON merge patch (RFC 7386), pure, in the model crate.
pub use edgetwin_model::merge_patch;
mod object_set;
pub mod status;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::watch;

use edgetwin_model::devices::{Device, DeviceModel, DeviceStatus};

pub(crate) use object_set::ObjectSet;
pub use object_set::{Kind, ObjectKey};

/// A change seen by [`Registry::watch`].
///
/// A stream starts with `Applied` / `ModelApplied` for every object that exists, then one
/// `Synced`, then changes as they happen. After a re-list (the watch connection broke, or the
/// consumer fell behind) the stream sends what changed meanwhile: `Applied` for new or changed
/// objects, `Deleted` for vanished ones — so a consumer never has to re-list by itself.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryEvent {
    /// A Device was created or changed (spec, metadata or status).
    Applied(Arc<Device>),
    /// A Device was deleted; the object is its last known state.
    Deleted(Arc<Device>),
    /// A DeviceModel was created or changed.
    ModelApplied(Arc<DeviceModel>),
    /// A DeviceModel was deleted; the object is its last known state.
    ModelDeleted(Arc<DeviceModel>),
    /// Every object that existed when the watch started has been sent. Sent once per stream.
    Synced,
}

/// An event to record against a Device (shown by `edgetwin ctl describe` or `kubectl describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// A CamelCase machine-readable reason, e.g. `ActuationFailed`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
    /// What was being done when it happened (a Kubernetes Event's `action`): `Actuate` (writing
    /// a desired value) or `Read` (reading the device).
    pub action: &'static str,
}

impl DeviceEvent {
    /// A Warning event about an actuation, the kind recorded for a Failed actuation.
    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Warning,
            reason: reason.into(),
            message: message.into(),
            action: "Actuate",
        }
    }

    /// The same event about another action (`Read`).
    pub fn with_action(mut self, action: &'static str) -> Self {
        self.action = action;
        self
    }
}

/// The type of a [`DeviceEvent`], as Kubernetes Events name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Something expected happened.
    Normal,
    /// Something went wrong (a failed actuation, say).
    Warning,
}

impl EventKind {
    /// `Normal` or `Warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }
}

/// A field that failed validation: its path (`spec.properties[0].desired.value`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON path of the field, Kubernetes style.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The object does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// `Device` or `DeviceModel`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The object kept changing under a read-modify-write; gave up after retrying.
    #[error(
        "{kind} {namespace}/{name} kept changing while being written; gave up after {attempts} attempts"
    )]
    Conflict {
        /// `Device` or `DeviceModel`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// How many times the write was tried.
        attempts: u32,
    },
    /// This replica is standby (another one holds the leader lease): it must not write.
    #[error("this replica is not the leader; status and events are written by the leader only")]
    NotLeader,
    /// The write was rejected by validation.
    #[error("{kind} {name:?} is invalid: {}", causes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// `Device` or `DeviceModel`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// Every field that failed.
        causes: Vec<FieldError>,
    },
    /// The backend failed (storage, network, API server).
    #[error("registry backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where Devices and DeviceModels live. See the [module docs](self) for the guarantees.
pub trait Registry: Send + Sync {
    /// A stream of changes that starts with the current state; see [`RegistryEvent`]. It ends
    /// only when the registry shuts down.
    fn watch(&self) -> BoxStream<'static, RegistryEvent>;

    /// A Device by namespace and name; `None` when it does not exist.
    fn get_device<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>, RegistryError>>;

    /// The Devices of a namespace, or of every namespace (`None`), ordered by namespace and name.
    fn list_devices<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Device>, RegistryError>>;

    /// A DeviceModel by namespace and name; `None` when it does not exist.
    fn get_model<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeviceModel>, RegistryError>>;

    /// The DeviceModels of a namespace, or of every namespace (`None`).
    fn list_models<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<DeviceModel>, RegistryError>>;

    /// Merges `patch` into the Device's status as [`status::merge`] describes (twins by
    /// `propertyName`; only the fields set in the patch change) and returns the stored Device.
    /// One call is one write: coalescing many reports into one patch is the caller's job
    /// ([`status::merge`] folds patches). Bumps `resourceVersion`, never `generation`.
    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a DeviceStatus,
    ) -> BoxFuture<'a, Result<Device, RegistryError>>;

    /// Records an event against a Device (a Failed actuation, say).
    fn record_event<'a>(
        &'a self,
        device: &'a Device,
        event: &'a DeviceEvent,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Whether this replica may write (status, events): always true for the embedded backend;
    /// follows the Lease for the Kubernetes backend. Wait on it with `changed()`.
    fn leader(&self) -> watch::Receiver<bool>;
}
