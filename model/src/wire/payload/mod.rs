//! JSON payloads of KubeEdge's DeviceTwin topics, with KubeEdge's names and key spelling.
//!
//! # How Go fields map to Rust
//!
//! The aim is that every payload a KubeEdge component or mapper writes decodes, and re-encodes to
//! the same JSON (only the key case may change to KubeEdge's canonical spelling):
//!
//! | Go field | Rust field | absent key | `null` |
//! |---|---|---|---|
//! | anything with `omitempty` | `Option<T>`, left out when `None` | `None` | `None` |
//! | map, slice or pointer without `omitempty` | [`JsonField<T>`] | `Missing` (left out) | `Null` |
//! | `event_id`, `timestamp` (no `omitempty`, yet some mappers omit them) | `Option<T>` | `None` | `None` |
//! | other scalars and structs without `omitempty` | `T`, always written | zero value | error |
//!
//! Maps keyed by user data (twin properties, attributes, data samples) are `BTreeMap`s, which sort
//! keys as Go does; their values are `Option<T>` because `null` deletes an entry. Struct keys match
//! case-insensitively when decoded through [`codec`](crate::wire::codec) (Go's rule); map keys are
//! never case-folded. Unknown keys are ignored, except inside [`Metadata`], which keeps them.

mod base;
mod data;
mod device;
mod field;
mod membership;
mod metadata;
mod result;
mod spec;
mod state;
mod twin;

pub(crate) use base::kubeedge_message;

pub use base::{BaseMessage, from_millis, millis};
pub use data::{DataValue, DeviceData};
pub use device::{AttributeMap, Device, MsgAttr};
pub use field::JsonField;
pub use membership::{MembershipDetailRequest, MembershipGetResult, MembershipUpdate};
pub use metadata::{Metadata, TYPE_DELETED, TYPE_UPDATED};
pub use result::{ErrorResult, TwinReply};
pub use spec::DeviceSpecMessage;
pub use state::{DeviceMsg, DeviceStatus, DeviceUpdate};
pub use twin::{
    DeviceTwinDelta, DeviceTwinDocument, DeviceTwinResult, DeviceTwinUpdate, MsgTwin, ReadError,
    TwinDoc, TwinMap, TwinValue, TwinVersion, WriteError,
};
