//! The embedded registry: Devices and DeviceModels in a sqlite file inside the cloud process,
//! served over a token-protected HTTP JSON API ([`server`]) to `edgetwin ctl` ([`client`]).
//!
//! [`EmbeddedRegistry`] is the one writer of the file. Every write is one sqlite transaction
//! that also appends to the change log; after the commit, still under the same lock, the
//! changes go to an in-process broadcast. Watchers subscribe under that lock too, so a watch is
//! exactly "what the log had after revision N, then the broadcast": nothing missed, nothing
//! twice. A watcher that falls behind the broadcast re-reads the log; one that falls behind the
//! log (see [`Options::retained_changes`]) gets *Gone*, like a Kubernetes watch.

pub mod api;
pub mod client;
pub mod data_dir;
mod database;
#[cfg(test)]
mod http_tests;
pub mod server;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
mod validate;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::broadcast;

use self::api::EventRecord;
use self::database::{Database, Stored, Txn, namespace_of};
use super::object_set::Kind;
use super::{DeviceEvent, FieldError, Registry, RegistryError, RegistryEvent, merge_patch};
use edgetwin_model::devices::{Device, DeviceModel, DeviceStatus, Manifest, TwinProperty};

pub use self::database::{Change, ChangeType, Outcome};

/// Tuning of the embedded registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How many revisions the change log keeps for watches that resume from a
    /// `resourceVersion`. Older ones are dropped; resuming from before them gets *Gone*.
    pub retained_changes: u64,
    /// How many changes the in-process broadcast buffers per watcher before the watcher has to
    /// catch up from the change log.
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retained_changes: 10_000,
            watch_buffer: 1024,
        }
    }
}

/// Why an embedded registry operation failed. [`server`] maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sqlite file failed.
    #[error("registry database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The registry file was written by a newer edgetwin.
    #[error("{}: schema version {found} is newer than this edgetwin supports ({supported})", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// An object could not be encoded as JSON.
    #[error("cannot encode an object as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored object could not be decoded (the file was edited, or is damaged).
    #[error("a stored {} cannot be read: {source}", kind.as_str())]
    Decode {
        /// The kind.
        kind: Kind,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A stored row is not what this code writes.
    #[error("registry database: corrupt row ({what})")]
    CorruptRow {
        /// Which row.
        what: String,
    },
    /// A data-dir file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The object does not exist.
    #[error("{} {name:?} not found", api::resource_name(*kind))]
    NotFound {
        /// The kind.
        kind: Kind,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// Create of an object that exists.
    #[error("{} {name:?} already exists", api::resource_name(*kind))]
    AlreadyExists {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// The `resourceVersion` precondition failed: the object changed since it was read.
    #[error(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
        api::resource_name(*kind)
    )]
    Conflict {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// Validation failed.
    #[error("{}.{} {name:?} is invalid: {}", kind.as_str(), edgetwin_model::devices::GROUP, causes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Invalid {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
        /// Every failed field.
        causes: Vec<FieldError>,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A watch asked for changes the log no longer has.
    #[error("too old resource version: {requested} (the oldest available is {oldest})")]
    Gone {
        /// The requested revision.
        requested: u64,
        /// The oldest revision a watch can start from.
        oldest: u64,
    },
    /// The registry is shutting down.
    #[error("the registry is shutting down")]
    Closed,
}

impl From<Error> for RegistryError {
    fn from(err: Error) -> Self {
        match err {
            Error::NotFound {
                kind,
                namespace,
                name,
            } => RegistryError::NotFound {
                kind: kind.as_str(),
                namespace,
                name,
            },
            Error::Invalid { kind, name, causes } => RegistryError::Invalid {
                kind: kind.as_str(),
                name,
                causes,
            },
            other => RegistryError::Backend(Box::new(other)),
        }
    }
}

/// A successful write: how it turned out, and warnings for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<T> {
    /// Created, configured or unchanged, with the stored object.
    pub outcome: Outcome<T>,
    /// Things the user should know (a Device whose DeviceModel does not exist yet).
    pub warnings: Vec<String>,
}

/// Create-or-replace, or create only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Create the object, or replace its spec, labels and annotations (kubectl apply).
    CreateOrReplace,
    /// Create the object; fail with `AlreadyExists` when it exists (kubectl create).
    Create,
}

struct Inner {
    store: Mutex<Database>,
    changes: broadcast::Sender<Arc<Change>>,
    leader: tokio::sync::watch::Sender<bool>,
}

/// The embedded registry. Cheap to clone; all clones share one sqlite connection.
#[derive(Clone)]
pub struct EmbeddedRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedRegistry").finish_non_exhaustive()
    }
}

impl EmbeddedRegistry {
    /// Opens (creating when missing) the registry file at `path` with default [`Options`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, Options::default())
    }

    /// Opens (creating when missing) the registry file at `path`.
    pub fn open_with(path: &Path, options: Options) -> Result<Self, Error> {
        let store = Database::open(path, options.retained_changes)?;
        let (changes, _) = broadcast::channel(options.watch_buffer.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                changes,
                leader: tokio::sync::watch::Sender::new(true),
            }),
        })
    }

    /// Runs `f` on the store on the blocking thread pool, under the store lock.
    async fn with_store<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Database) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut store = inner.store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// Runs `f` on the store under the store lock, on the calling thread. For the reads and
    /// writes of one object: they take a fraction of a millisecond (checkpoints run on their own
    /// thread, see `crate::wal_checkpoint`), less than the hop to the blocking pool and back
    /// costs on a loaded machine, and they are on the path from `ctl set` to a verified status.
    fn with_store_here<R>(
        &self,
        f: impl FnOnce(&mut Database) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut store = self
            .inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut store)
    }

    /// Runs `f` in one write transaction (on the calling thread, see
    /// [`with_store_here`](Self::with_store_here)); after the commit, and still under the lock,
    /// sends the changes to watchers.
    async fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R, Error>) -> Result<R, Error> {
        self.with_store_here(|store| {
            let (result, changes) = store.write(f)?;
            for change in changes {
                tracing::debug!(
                    revision = change.revision,
                    change = change.change.as_str(),
                    "registry write"
                );
                // No receivers is fine: nobody watches.
                let _ = self.inner.changes.send(Arc::new(change));
            }
            Ok(result)
        })
    }

    /// The registry revision of the last write.
    pub async fn revision(&self) -> Result<u64, Error> {
        self.with_store(|store| store.revision()).await
    }

    /// An object by namespace and name.
    pub(crate) async fn get<T: Stored>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, Error> {
        self.with_store_here(|store| store.get(namespace, name))
    }

    /// The objects of a kind in one namespace or all, and the revision they were read at.
    pub(crate) async fn list<T: Stored>(
        &self,
        namespace: Option<&str>,
    ) -> Result<(Vec<T>, u64), Error> {
        let namespace = namespace.map(str::to_owned);
        self.with_store(move |store| {
            let items = store.list(namespace.as_deref())?;
            Ok((items, store.revision()?))
        })
        .await
    }

    /// Creates an object, or (with [`ApplyMode::CreateOrReplace`]) replaces the spec, labels and
    /// annotations of an existing one. The status is never taken from `object`: it is kept (or
    /// empty on create), as the API server does for resources with a status subresource. When
    /// `object` carries a `resourceVersion`, it must match the stored one.
    pub(crate) async fn apply<T: Stored>(
        &self,
        object: T,
        mode: ApplyMode,
    ) -> Result<Applied<T>, Error> {
        self.write(move |txn| {
            let namespace = namespace_of(object.meta()).to_owned();
            let name = object.meta().name.clone().unwrap_or_default();
            let current: Option<T> = txn.get(&namespace, &name)?;
            match (&current, mode) {
                (Some(_), ApplyMode::Create) => {
                    return Err(Error::AlreadyExists {
                        kind: T::KIND,
                        name,
                    });
                }
                (None, _) if object.meta().resource_version.is_some() => {
                    return Err(Error::NotFound {
                        kind: T::KIND,
                        namespace,
                        name,
                    });
                }
                _ => {}
            }
            check_precondition(object.meta().resource_version.as_deref(), current.as_ref())?;
            store_validated(txn, object, current.as_ref())
        })
        .await
    }

    /// Creates or updates a loaded manifest: the object's spec, labels and annotations replace
    /// the stored ones, its status is ignored, and a `resourceVersion` in it is a precondition
    /// (as `edgetwin ctl apply`). How `edgetwin up` seeds the registry without HTTP.
    pub async fn apply_manifest(
        &self,
        manifest: Manifest,
        mode: ApplyMode,
    ) -> Result<Applied<Manifest>, Error> {
        fn wrap<T>(applied: Applied<T>, into: impl Fn(T) -> Manifest) -> Applied<Manifest> {
            let outcome = match applied.outcome {
                Outcome::Created(o) => Outcome::Created(into(o)),
                Outcome::Configured(o) => Outcome::Configured(into(o)),
                Outcome::Unchanged(o) => Outcome::Unchanged(into(o)),
            };
            Applied {
                outcome,
                warnings: applied.warnings,
            }
        }
        Ok(match manifest {
            Manifest::Device(d) => wrap(self.apply(d, mode).await?, Manifest::Device),
            Manifest::DeviceModel(m) => wrap(self.apply(m, mode).await?, Manifest::DeviceModel),
        })
    }

    /// Applies a patch ([`Patch`]: JSON merge patch or JSON patch) to an object. Changes to the
    /// status are ignored (use [`patch_object_status`](Self::patch_object_status)),
    /// `metadata.name` and `metadata.namespace` cannot change, and a `metadata.resourceVersion`
    /// the patch sets is a precondition.
    pub(crate) async fn patch_object<T: Stored>(
        &self,
        namespace: &str,
        name: &str,
        patch: impl Into<Patch>,
    ) -> Result<Applied<T>, Error> {
        let (namespace, name, patch) = (namespace.to_owned(), name.to_owned(), patch.into());
        self.write(move |txn| {
            let current: T = existing(txn, &namespace, &name)?;
            let patched: T = patched(&current, &patch)?;
            check_identity(&patched, &namespace, &name)?;
            store_validated(txn, patched, Some(&current))
        })
        .await
    }

    /// Sets desired values of a Device's properties by name (`spec.properties[].desired.value`)
    /// in one write, validated like any other spec change: the server-side form of `edgetwin ctl
    /// set`. Being one write, it needs no `resourceVersion` precondition and cannot lose a
    /// concurrent writer's change to another property. A name the Device does not have is
    /// refused (`Invalid`, listing the names it has); values equal to the stored ones leave the
    /// Device unchanged.
    pub(crate) async fn set_desired(
        &self,
        namespace: &str,
        name: &str,
        values: Vec<(String, String)>,
    ) -> Result<Applied<Device>, Error> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.write(move |txn| {
            let current: Device = existing(txn, &namespace, &name)?;
            let mut device = current.clone();
            with_desired_values(&mut device, &values)?;
            store_validated(txn, device, Some(&current))
        })
        .await
    }

    /// Applies a patch ([`Patch`]) to an object's status subresource: only the status changes,
    /// `generation` stays. A `metadata.resourceVersion` the patch sets is a precondition.
    pub(crate) async fn patch_object_status<T: Stored>(
        &self,
        namespace: &str,
        name: &str,
        patch: impl Into<Patch>,
    ) -> Result<Applied<T>, Error> {
        let (namespace, name, patch) = (namespace.to_owned(), name.to_owned(), patch.into());
        self.write(move |txn| {
            let current: T = existing(txn, &namespace, &name)?;
            let with_new_status: T = patched(&current, &patch)?;
            let mut object = current.clone();
            object.keep_status_of(Some(&with_new_status));
            Ok(Applied {
                outcome: txn.put(object, Some(&current))?,
                warnings: Vec::new(),
            })
        })
        .await
    }

    /// Merges a status patch into a Device's status by key (see
    /// [`status::merge`](super::status::merge)).
    pub async fn patch_device_status(
        &self,
        namespace: &str,
        name: &str,
        patch: DeviceStatus,
    ) -> Result<Device, Error> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.write(move |txn| {
            let current: Device = existing(txn, &namespace, &name)?;
            let mut device = current.clone();
            super::status::merge(
                device.status.get_or_insert_with(DeviceStatus::default),
                &patch,
            );
            Ok(txn.put(device, Some(&current))?.into_object())
        })
        .await
    }

    /// Deletes an object and returns its last state.
    pub(crate) async fn delete<T: Stored>(&self, namespace: &str, name: &str) -> Result<T, Error> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.write(move |txn| {
            txn.delete(&namespace, &name)?.ok_or(Error::NotFound {
                kind: T::KIND,
                namespace,
                name,
            })
        })
        .await
    }

    /// Records an event against a Device.
    pub async fn record_device_event(
        &self,
        namespace: &str,
        name: &str,
        event: DeviceEvent,
    ) -> Result<(), Error> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.with_store(move |store| {
            store.record_event(&namespace, &name, &event, jiff::Timestamp::now())
        })
        .await
    }

    /// The events of a Device, oldest first.
    pub async fn device_events(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<EventRecord>, Error> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.with_store(move |store| store.events(&namespace, &name))
            .await
    }

    /// Changes after `revision` (or, with `None`, every existing object as `ADDED` and then the
    /// changes), in revision order, until the registry is dropped. The first item is an error
    /// ([`Error::Gone`]) when the log no longer reaches back to `revision`.
    pub fn watch_changes(
        &self,
        revision: Option<u64>,
    ) -> BoxStream<'static, Result<Arc<Change>, Error>> {
        watch::changes(self.clone(), revision)
    }
}

/// Fails with `Conflict` when a `resourceVersion` precondition does not match the stored object.
fn check_precondition<T: Stored>(expected: Option<&str>, current: Option<&T>) -> Result<(), Error> {
    let (Some(expected), Some(current)) = (expected, current) else {
        return Ok(());
    };
    if current.meta().resource_version.as_deref() == Some(expected) {
        Ok(())
    } else {
        Err(Error::Conflict {
            kind: T::KIND,
            name: current.meta().name.clone().unwrap_or_default(),
        })
    }
}

fn existing<T: Stored>(txn: &Txn<'_>, namespace: &str, name: &str) -> Result<T, Error> {
    txn.get(namespace, name)?.ok_or_else(|| Error::NotFound {
        kind: T::KIND,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// A patch of an object, in one of the two forms the API takes (as the Kubernetes API server
/// does for custom resources).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Patch {
    /// A JSON merge patch (RFC 7386, `application/merge-patch+json`): must be an object.
    Merge(Value),
    /// A JSON patch (RFC 6902, `application/json-patch+json`): operations applied in order, all
    /// or none; a `test` of `/metadata/resourceVersion` makes it conditional.
    Json(json_patch::Patch),
}

impl From<Value> for Patch {
    fn from(merge_patch: Value) -> Self {
        Patch::Merge(merge_patch)
    }
}

/// `current` with `patch` applied, checked against the `resourceVersion` the result carries (a
/// patch that sets one makes it a precondition) and parsed back into the typed object.
fn patched<T: Stored>(current: &T, patch: &Patch) -> Result<T, Error> {
    let mut json = serde_json::to_value(current).map_err(Error::Encode)?;
    match patch {
        Patch::Merge(patch) => {
            if !patch.is_object() {
                return Err(Error::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            merge_patch::apply(&mut json, patch);
        }
        Patch::Json(operations) => {
            json_patch::patch(&mut json, operations).map_err(|error| Error::Invalid {
                kind: T::KIND,
                name: current.meta().name.clone().unwrap_or_default(),
                causes: vec![FieldError {
                    field: error.path.to_string(),
                    message: format!(
                        "JSON patch operation {} failed: {}",
                        error.operation, error.kind
                    ),
                }],
            })?;
        }
    }
    let expected = json
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    check_precondition(expected, Some(current))?;
    validate::parse(&json).map_err(|cause| Error::Invalid {
        kind: T::KIND,
        name: current.meta().name.clone().unwrap_or_default(),
        causes: vec![cause],
    })
}

/// Writes `values` (property name → desired value) into `device`'s spec; fails on a name the
/// Device does not have.
fn with_desired_values(device: &mut Device, values: &[(String, String)]) -> Result<(), Error> {
    for (property, value) in values {
        let Some(spec) = device
            .spec
            .properties
            .iter_mut()
            .find(|p| &p.name == property)
        else {
            let known: Vec<&str> = device
                .spec
                .properties
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(Error::Invalid {
                kind: Kind::Device,
                name: device.name().to_owned(),
                causes: vec![FieldError {
                    field: "spec.properties".into(),
                    message: format!(
                        "Not found: the device has no property {property:?} (it has: {})",
                        known.join(", ")
                    ),
                }],
            });
        };
        spec.desired
            .get_or_insert_with(|| TwinProperty::new(""))
            .value
            .clone_from(value);
    }
    Ok(())
}

/// Rejects a patch that renames or moves an object.
fn check_identity<T: Stored>(object: &T, namespace: &str, name: &str) -> Result<(), Error> {
    let mut causes = Vec::new();
    let meta = object.meta();
    if meta.name.as_deref() != Some(name) {
        causes.push(FieldError {
            field: "metadata.name".into(),
            message: format!(
                "Invalid value: {:?}: field is immutable",
                meta.name.clone().unwrap_or_default()
            ),
        });
    }
    if namespace_of(meta) != namespace {
        causes.push(FieldError {
            field: "metadata.namespace".into(),
            message: format!(
                "Invalid value: {:?}: field is immutable",
                namespace_of(meta)
            ),
        });
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid {
            kind: T::KIND,
            name: name.to_owned(),
            causes,
        })
    }
}

/// Validates `object` (status taken from `current`) and stores it.
fn store_validated<T: Stored>(
    txn: &mut Txn<'_>,
    mut object: T,
    current: Option<&T>,
) -> Result<Applied<T>, Error> {
    object.keep_status_of(current);
    let findings = object.validate(txn)?;
    if !findings.errors.is_empty() {
        return Err(Error::Invalid {
            kind: T::KIND,
            name: object.meta().name.clone().unwrap_or_default(),
            causes: findings.errors,
        });
    }
    for warning in &findings.warnings {
        tracing::info!(kind = T::KIND.as_str(), name = ?object.meta().name, warning = %warning, "accepted with a warning");
    }
    Ok(Applied {
        outcome: txn.put(object, current)?,
        warnings: findings.warnings,
    })
}

impl Registry for EmbeddedRegistry {
    fn watch(&self) -> BoxStream<'static, RegistryEvent> {
        watch::events(self.clone())
    }

    fn get_device<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Device>, RegistryError>> {
        async move { Ok(self.get(namespace, name).await?) }.boxed()
    }

    fn list_devices<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Device>, RegistryError>> {
        async move { Ok(self.list(namespace).await?.0) }.boxed()
    }

    fn get_model<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeviceModel>, RegistryError>> {
        async move { Ok(self.get(namespace, name).await?) }.boxed()
    }

    fn list_models<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<DeviceModel>, RegistryError>> {
        async move { Ok(self.list(namespace).await?.0) }.boxed()
    }

    fn patch_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a DeviceStatus,
    ) -> BoxFuture<'a, Result<Device, RegistryError>> {
        async move {
            Ok(self
                .patch_device_status(namespace, name, patch.clone())
                .await?)
        }
        .boxed()
    }

    fn record_event<'a>(
        &'a self,
        device: &'a Device,
        event: &'a DeviceEvent,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        async move {
            Ok(self
                .record_device_event(device.namespace(), device.name(), event.clone())
                .await?)
        }
        .boxed()
    }

    fn leader(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.leader.subscribe()
    }
}
