//! [`TwinContext`]: everything an operation needs besides the twin and the request.

use std::collections::BTreeSet;

use super::schema::{DeviceSchema, PropertySchema};
use super::version::ConflictPolicy;

/// Which properties an edge update may write the desired value of (`expected`, or a `null` that
/// deletes it): the device's default, except the properties listed.
#[derive(Debug, Clone, Copy)]
pub struct EdgeDesired<'a> {
    /// Whether a property not in `exceptions` may be written.
    pub by_default: bool,
    /// Properties for which the opposite of `by_default` holds.
    pub exceptions: Option<&'a BTreeSet<String>>,
}

impl EdgeDesired<'_> {
    /// Every property (KubeEdge's behaviour: any mapper may write `expected`).
    pub const ANY: EdgeDesired<'static> = EdgeDesired {
        by_default: true,
        exceptions: None,
    };

    /// Whether the edge may write the desired value of `property`.
    pub fn allows(&self, property: &str) -> bool {
        self.by_default != self.exceptions.is_some_and(|e| e.contains(property))
    }
}

/// The inputs of one operation that are not part of the twin or the request: the time, the
/// device's rules and the limits. The engine reads no clock and no configuration of its own.
#[derive(Debug, Clone, Copy)]
pub struct TwinContext<'a> {
    /// Now, in milliseconds since the Unix epoch: the timestamp of changed values and of the
    /// emitted messages.
    pub now_ms: i64,
    /// The `event_id` of messages the engine originates (delta, cloud-bound sync, membership);
    /// KubeEdge uses a fresh UUID. Results and documents answer a request and carry its id.
    pub event_id: &'a str,
    /// The largest value (in bytes) either half accepts.
    pub max_value_bytes: usize,
    /// The device's policy for crossing desired writes.
    pub conflict_policy: ConflictPolicy,
    /// Which desired values an edge update may write (default: any, as KubeEdge).
    pub edge_desired: EdgeDesired<'a>,
    /// The device's property schemas, when its model is known. With a schema, types and bounds
    /// come from it and properties outside it are refused; without one, a property's type is the
    /// `metadata.type` it was created with (KubeEdge's behaviour).
    pub schema: Option<&'a DeviceSchema>,
    /// Whether the engine builds [`Effects::delta`](super::Effects::delta) (the default). A
    /// caller that writes the delta straight from the twin ([`DeviceTwin::delta_view`](
    /// super::DeviceTwin::delta_view)) turns it off: the delta is due exactly when
    /// `Effects::document` is set and the view is `Some`.
    pub builds_delta: bool,
}

impl<'a> TwinContext<'a> {
    /// The default value size limit: [`crate::limits::MAX_VALUE_BYTES`].
    pub const DEFAULT_MAX_VALUE_BYTES: usize = crate::limits::MAX_VALUE_BYTES;

    /// A context at `now_ms` with the defaults: no schema, cloud wins, 64 KiB values, empty
    /// event id.
    pub fn new(now_ms: i64) -> Self {
        TwinContext {
            now_ms,
            event_id: "",
            max_value_bytes: Self::DEFAULT_MAX_VALUE_BYTES,
            conflict_policy: ConflictPolicy::default(),
            edge_desired: EdgeDesired::ANY,
            schema: None,
            builds_delta: true,
        }
    }

    /// The same context with the device's schemas.
    pub fn with_schema(mut self, schema: &'a DeviceSchema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The same context with a conflict policy.
    pub fn with_policy(mut self, conflict_policy: ConflictPolicy) -> Self {
        self.conflict_policy = conflict_policy;
        self
    }

    /// The same context with a rule for edge-written desired values.
    pub fn with_edge_desired(mut self, edge_desired: EdgeDesired<'a>) -> Self {
        self.edge_desired = edge_desired;
        self
    }

    /// The same context with the id for messages the engine originates.
    pub fn with_event_id(mut self, event_id: &'a str) -> Self {
        self.event_id = event_id;
        self
    }

    /// The same context without [`Effects::delta`](super::Effects::delta): the caller renders
    /// the delta from the twin (see [`TwinContext::builds_delta`]).
    pub fn without_delta(mut self) -> Self {
        self.builds_delta = false;
        self
    }

    /// The same context with another value size limit.
    pub fn with_max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// The schema of one property, when the model is known and defines it.
    pub(super) fn property_schema(&self, property: &str) -> Option<&'a PropertySchema> {
        self.schema.and_then(|schema| schema.get(property))
    }

    /// Whether a property may be created: always without a model, only if the model defines it
    /// otherwise.
    pub(super) fn allows_new(&self, property: &str) -> bool {
        self.schema
            .is_none_or(|schema| schema.contains_key(property))
    }
}
