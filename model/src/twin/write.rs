//! The state a write of one property starts from, shared by edge and cloud writes.

use crate::value::PropertyType;
use crate::wire::payload::MsgTwin;

use super::context::TwinContext;
use super::error::TwinError;
use super::schema::type_from_name;
use super::state::{DeviceTwin, PropertyTwin};

impl DeviceTwin {
    /// The state a write of `name` starts from: a copy of the live property; for a deleted
    /// property, the tombstone brought back (versions kept); for an unknown one, a new property.
    /// A property brought back or created takes its type from [`type_for_new`] and `optional`
    /// from the request, else from the tombstone, else `true` (KubeEdge's default). With a model,
    /// the type is always the model's, and a property the model does not define cannot be
    /// created.
    pub(super) fn write_base(
        &self,
        ctx: &TwinContext<'_>,
        name: &str,
        msg: &MsgTwin,
    ) -> Result<PropertyTwin, TwinError> {
        let existing = self.properties.get(name);
        let schema = ctx.property_schema(name);
        let mut twin = match existing {
            Some(live) if !live.deleted => live.clone(),
            tombstone => {
                if !ctx.allows_new(name) {
                    return Err(TwinError::NotInModel {
                        property: name.to_owned(),
                    });
                }
                let value_type = match schema {
                    Some(schema) => schema.value_type,
                    None => type_for_new(name, msg, tombstone.map(|t| t.value_type))?,
                };
                let optional = msg
                    .optional
                    .or(tombstone.map(|t| t.optional))
                    .unwrap_or(true);
                let mut twin = tombstone
                    .cloned()
                    .unwrap_or_else(|| PropertyTwin::new(value_type, optional));
                twin.deleted = false;
                twin.value_type = value_type;
                twin.optional = optional;
                twin
            }
        };
        if let Some(schema) = schema {
            twin.value_type = schema.value_type;
        }
        Ok(twin)
    }
}

/// The type of a property a request creates or brings back, when no model says: the request's
/// `metadata.type`, else the tombstone's type, else `string`. An unknown type name refuses a new
/// property (KubeEdge's `the value type is not allowed`) and is ignored for a tombstone.
fn type_for_new(
    name: &str,
    msg: &MsgTwin,
    previous: Option<PropertyType>,
) -> Result<PropertyType, TwinError> {
    let requested = msg.metadata.as_ref().and_then(|m| m.value_type.as_deref());
    match requested {
        None => Ok(previous.unwrap_or(PropertyType::String)),
        Some(type_name) => {
            type_from_name(type_name)
                .or(previous)
                .ok_or_else(|| TwinError::TypeNotAllowed {
                    property: name.to_owned(),
                    type_name: type_name.to_owned(),
                })
        }
    }
}
