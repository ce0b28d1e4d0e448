//! The top-level `Device` / `DeviceModel` objects.
//!
//! [`plain_root!`] generates them from a spec and a status type with the shape kube-rs'
//! `CustomResource` derive gives (public `metadata`, `spec` and `status` fields, `new(name,
//! spec)`, and `apiVersion` / `kind` written as constants when serialized and, as with kube, not
//! checked when deserialized: [`crate::devices::load`] dispatches on them).
//! [`object_accessors!`] adds the accessors.

/// Generates the kube-free top-level object for a spec and status type.
macro_rules! plain_root {
    ($(#[$doc:meta])* $root:ident, $spec:ty, $status:ty, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
        pub struct $root {
            /// Standard object metadata.
            pub metadata: $crate::devices::ObjectMeta,
            /// The desired state.
            pub spec: $spec,
            /// The observed state.
            #[serde(default)]
            pub status: Option<$status>,
        }

        impl $root {
            /// An object with the given name and spec, no namespace and no status.
            pub fn new(name: &str, spec: $spec) -> Self {
                Self {
                    metadata: $crate::devices::ObjectMeta {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }

        impl serde::Serialize for $root {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let fields = 4 + usize::from(self.status.is_some());
                let mut obj = ser.serialize_struct(stringify!($root), fields)?;
                obj.serialize_field("apiVersion", $crate::devices::API_VERSION)?;
                obj.serialize_field("kind", $kind)?;
                obj.serialize_field("metadata", &self.metadata)?;
                obj.serialize_field("spec", &self.spec)?;
                if let Some(status) = &self.status {
                    obj.serialize_field("status", status)?;
                }
                obj.end()
            }
        }
    };
}

/// Adds `name()`, `namespace()` and `generation()` to a top-level object.
macro_rules! object_accessors {
    ($root:ident) => {
        impl $root {
            /// `metadata.name`, or `""` when it is missing (the loader rejects such objects).
            pub fn name(&self) -> &str {
                self.metadata.name.as_deref().unwrap_or_default()
            }

            /// `metadata.namespace`, or `"default"` when it is missing (as kubectl assumes).
            pub fn namespace(&self) -> &str {
                self.metadata
                    .namespace
                    .as_deref()
                    .unwrap_or($crate::devices::meta::DEFAULT_NAMESPACE)
            }

            /// `metadata.generation`: the version of the spec the API server last stored.
            pub fn generation(&self) -> Option<i64> {
                self.metadata.generation
            }
        }
    };
}

pub(crate) use plain_root;

pub(crate) use object_accessors;
