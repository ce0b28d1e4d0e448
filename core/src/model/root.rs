//! The top-level `Device` / `DeviceModel` objects.
//!
//! With the `kube` feature, `#[derive(kube::CustomResource)]` on the spec types generates them.
//! Without it, [`plain_root!`] generates look-alikes with the same shape: public `metadata`,
//! `spec` and `status` fields, `new(name, spec)`, and `apiVersion` / `kind` written as constants
//! when serialized (and, as with kube, not checked when deserialized: [`crate::model::load`]
//! dispatches on them). [`object_accessors!`] adds the helpers both builds share.

/// Generates the kube-free top-level object for a spec and status type.
#[cfg(not(feature = "kube"))]
macro_rules! plain_root {
    ($(#[$doc:meta])* $root:ident, $spec:ty, $status:ty, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
        pub struct $root {
            /// Standard object metadata.
            pub metadata: $crate::model::ObjectMeta,
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
                    metadata: $crate::model::ObjectMeta {
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
                obj.serialize_field("apiVersion", $crate::model::API_VERSION)?;
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

/// Adds `name()` and `namespace()` to a top-level object; works in both builds because both
/// shapes have a `metadata` field of type [`crate::model::ObjectMeta`].
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
                    .unwrap_or($crate::model::meta::DEFAULT_NAMESPACE)
            }

            /// `metadata.generation`: the version of the spec the API server last stored.
            pub fn generation(&self) -> Option<i64> {
                self.metadata.generation
            }
        }
    };
}

#[cfg(not(feature = "kube"))]
pub(crate) use plain_root;

pub(crate) use object_accessors;
