//! Object metadata: [`ObjectMeta`] and [`Time`] have the field names and JSON shapes of
//! k8s-openapi's types for everything edgetwin reads and writes, without linking kube-rs (the edge
//! agent and the mappers must not). Fields that only the API server uses (managed fields, owner
//! references, …) are absent and ignored when deserializing; the Kubernetes backend converts at
//! its boundary.

pub use plain::{ObjectMeta, Time};

/// The namespace an object without `metadata.namespace` lives in (as kubectl assumes).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Drops what the API server writes into `metadata`, keeping what a user writes (name,
/// namespace, labels, annotations), so that a converted or exported object can be applied again.
/// Also drops kubectl's `last-applied-configuration` annotation, which would describe the old
/// object.
pub fn clear_server_fields(meta: &mut ObjectMeta) {
    meta.creation_timestamp = None;
    meta.generation = None;
    meta.resource_version = None;
    meta.uid = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

mod plain {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    /// Kubernetes object metadata: the subset of `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`
    /// that edgetwin reads and writes. Unknown fields are ignored when deserializing.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ObjectMeta {
        /// Unstructured key/value data stored with the object.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub annotations: Option<BTreeMap<String, String>>,
        /// When the API server created the object.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub creation_timestamp: Option<Time>,
        /// A sequence number the API server bumps on every change of the desired state (spec).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub generation: Option<i64>,
        /// Key/value pairs used to select objects.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub labels: Option<BTreeMap<String, String>>,
        /// The object's name, unique within its namespace.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// The namespace the object lives in.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub namespace: Option<String>,
        /// An opaque version the API server changes on every write (optimistic concurrency).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub resource_version: Option<String>,
        /// The object's unique id, set by the API server.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub uid: Option<String>,
    }

    /// A point in time, serialized as RFC 3339 (same shape as k8s-openapi's `Time`).
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Time(pub jiff::Timestamp);

    impl From<jiff::Timestamp> for Time {
        fn from(inner: jiff::Timestamp) -> Self {
            Self(inner)
        }
    }

    impl Serialize for Time {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            // Kubernetes writes whole seconds in UTC, like k8s-openapi does.
            let text = jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", self.0)
                .map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&text)
        }
    }

    impl<'de> Deserialize<'de> for Time {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            jiff::Timestamp::deserialize(deserializer).map(Time)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn clearing_server_fields_keeps_what_users_write() {
        let mut meta = ObjectMeta {
            name: Some("lamp".into()),
            namespace: Some("plant".into()),
            labels: Some(BTreeMap::from([("model".into(), "led".into())])),
            annotations: Some(BTreeMap::from([(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{}".into(),
            )])),
            generation: Some(3),
            resource_version: Some("991".into()),
            uid: Some("0f9c".into()),
            creation_timestamp: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
        };
        clear_server_fields(&mut meta);
        assert_eq!(meta.name.as_deref(), Some("lamp"));
        assert_eq!(meta.namespace.as_deref(), Some("plant"));
        assert!(meta.labels.is_some());
        assert_eq!(meta.annotations, None);
        assert_eq!(meta.generation, None);
        assert_eq!(meta.resource_version, None);
        assert_eq!(meta.uid, None);
        assert_eq!(meta.creation_timestamp, None);
    }

    #[test]
    fn time_round_trips_as_rfc3339() {
        let meta: ObjectMeta =
            serde_json::from_str(r#"{"name":"a","creationTimestamp":"2024-05-01T10:20:30Z"}"#)
                .expect("valid metadata");
        let ts = meta.creation_timestamp.as_ref().map(|t| t.0);
        assert_eq!(ts, Some("2024-05-01T10:20:30Z".parse().expect("timestamp")));
        let back = serde_json::to_value(&meta).expect("serializes");
        assert_eq!(back["creationTimestamp"], "2024-05-01T10:20:30Z");
    }
}
