//! The embedded registry's HTTP API: paths, and the JSON shapes shared by server and client.
//!
//! Paths mirror the Kubernetes API for the same resources, so that `curl` users and readers of
//! the Kubernetes docs find their way:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/apis/devices.kubeedge.io/v1beta1/{devices,devicemodels}` | list, all namespaces |
//! | GET | `…/namespaces/{ns}/{devices,devicemodels}` | list one namespace |
//! | GET | `…?watch=true[&resourceVersion=N]` (either list path) | watch, newline-delimited JSON |
//! | POST | `…/namespaces/{ns}/{plural}` | create (409 if it exists) |
//! | GET | `…/namespaces/{ns}/{plural}/{name}` | read |
//! | PUT | `…/namespaces/{ns}/{plural}/{name}` | apply: create, or replace spec, labels, annotations |
//! | PATCH | `…/namespaces/{ns}/{plural}/{name}` | JSON merge patch (`application/merge-patch+json`) or JSON patch (`application/json-patch+json`) |
//! | DELETE | `…/namespaces/{ns}/{plural}/{name}` | delete |
//! | GET, PATCH | `…/namespaces/{ns}/{plural}/{name}/status` | status subresource |
//! | PATCH | `…/namespaces/{ns}/devices/{name}/desired` | set desired values by property name (edgetwin's own; `application/json`, `{"red": "ON"}`) |
//! | GET | `…/namespaces/{ns}/devices/{name}/events` | the Device's events (edgetwin's own) |
//! | GET | `/healthz` | liveness, no token |
//!
//! Every other request needs `Authorization: Bearer <token>`. Errors are Kubernetes `Status`
//! objects; validation errors list each field in `details.causes`. Warnings (a Device whose
//! DeviceModel does not exist yet) come back in `Warning` headers, as the API server sends them.

use serde::{Deserialize, Serialize};

use crate::cloud::registry::FieldError;
use crate::cloud::registry::object_set::Kind;
use edgetwin_model::devices::{API_VERSION, GROUP};

/// The path prefix of every resource path.
pub const API_PREFIX: &str = "/apis/devices.kubeedge.io/v1beta1";

/// `Content-Type` of a JSON merge patch (RFC 7386).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// `Content-Type` of a JSON patch (RFC 6902).
pub const JSON_PATCH: &str = "application/json-patch+json";

/// The header that tells how an apply (PUT) turned out: `created`, `configured` or `unchanged`.
pub const APPLY_RESULT_HEADER: &str = "edgetwin-apply-result";

/// The path of a collection: one namespace, or all when `namespace` is `None`.
pub fn collection_path(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{API_PREFIX}/namespaces/{ns}/{}", kind.plural()),
        None => format!("{API_PREFIX}/{}", kind.plural()),
    }
}

/// The path of one object.
pub fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
    format!("{}/{name}", collection_path(kind, Some(namespace)))
}

/// The path of a Device's `desired` subresource: `PATCH` with a JSON object of property name →
/// desired value sets those values in one write (what `edgetwin ctl set` and the dashboard do).
pub fn desired_path(namespace: &str, name: &str) -> String {
    format!("{}/desired", object_path(Kind::Device, namespace, name))
}

/// `{plural}.devices.kubeedge.io`, the resource name Kubernetes messages use.
pub fn resource_name(kind: Kind) -> String {
    format!("{}.{GROUP}", kind.plural())
}

/// A list of objects and the registry revision it was read at (watch from there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList<T> {
    /// `devices.kubeedge.io/v1beta1`.
    pub api_version: String,
    /// `DeviceList` or `DeviceModelList`.
    pub kind: String,
    /// The list's metadata.
    pub metadata: ListMeta,
    /// The objects.
    pub items: Vec<T>,
}

impl<T> ObjectList<T> {
    /// A list of objects of `kind` read at `revision`.
    pub fn new(kind: Kind, revision: u64, items: Vec<T>) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: format!("{}List", kind.as_str()),
            metadata: ListMeta {
                resource_version: revision.to_string(),
            },
            items,
        }
    }
}

/// Metadata of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// The registry revision the list was read at.
    pub resource_version: String,
}

/// One line of a watch response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent<T> {
    /// `ADDED`, `MODIFIED`, `DELETED`, or `ERROR` (then `object` is a [`ApiStatus`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// The object after the change.
    pub object: T,
}

/// A recorded Device event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    /// CamelCase reason.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// How many times it happened.
    pub count: u32,
    /// When it first happened.
    pub first_timestamp: jiff::Timestamp,
    /// When it last happened.
    pub last_timestamp: jiff::Timestamp,
}

/// The events of a Device, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// The events.
    pub items: Vec<EventRecord>,
}

/// A Kubernetes `Status`: the body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    /// `Status`.
    pub kind: String,
    /// `v1`.
    pub api_version: String,
    /// `Failure`.
    pub status: String,
    /// The human-readable message, printed by `edgetwin ctl` as is.
    pub message: String,
    /// CamelCase reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`, …
    pub reason: String,
    /// The HTTP status code.
    pub code: u16,
    /// Which object, and for `Invalid` every field that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

impl ApiStatus {
    /// A failure status.
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
            details: None,
        }
    }
}

/// Details of a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// The object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The object's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The fields that failed validation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    /// The field path, e.g. `spec.properties[0].desired.value`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<&FieldError> for StatusCause {
    fn from(e: &FieldError) -> Self {
        Self {
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}
