//! What the dashboard's event stream carries: a flat, configuration-free view of each Device's
//! twin, and the property types of each DeviceModel.

use serde::Serialize;

use edgetwin_model::devices::{AccessMode, Device, DeviceModel, PropertyCondition};

use edgetwin_model::value::PropertyType;

/// One Device as the dashboard shows it: identity, placement, state and, per property, the
/// desired value next to the reported one and the actuation condition. Protocol and visitor
/// configuration are left out on purpose (the stream is readable without a token).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The DeviceModel's name (`spec.deviceModelRef.name`).
    pub model: Option<String>,
    /// The edge node (`spec.nodeName`).
    pub node: Option<String>,
    /// The protocol name (`spec.protocol.protocolName`), e.g. `gpio`.
    pub protocol: Option<String>,
    /// The device state its mapper reported (`online`, `offline`, `unhealthy`).
    pub state: Option<String>,
    /// When the device was last online, as its mapper reported it.
    pub last_online_time: Option<String>,
    /// The newest time in the object: a condition transition, a reported value's timestamp,
    /// the last online time, or else the creation time.
    pub last_update: Option<jiff::Timestamp>,
    /// `metadata.generation`: the version of the spec.
    pub generation: Option<i64>,
    /// `status.observedGeneration`: the version of the spec the status reflects.
    pub observed_generation: Option<i64>,
    /// The properties: those of the spec in their order, then any the status alone has.
    pub properties: Vec<PropertyView>,
}

/// One property of a [`DeviceView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyView {
    /// The property name.
    pub name: String,
    /// `spec.properties[].desired.value`.
    pub desired: Option<String>,
    /// `status.twins[].reported.value`: what the device did.
    pub reported: Option<String>,
    /// The desired value the mapper has received (`status.twins[].observedDesired.value`).
    pub observed_desired: Option<String>,
    /// Where the actuation of the desired value stands (Pending, Applied, Verified, Failed).
    pub condition: Option<PropertyCondition>,
}

impl DeviceView {
    /// The view of a Device.
    pub fn of(device: &Device) -> Self {
        let spec = &device.spec;
        let status = device.status.as_ref();
        let mut properties: Vec<PropertyView> = spec
            .properties
            .iter()
            .map(|p| PropertyView {
                name: p.name.clone(),
                desired: p.desired.as_ref().map(|d| d.value.clone()),
                reported: None,
                observed_desired: None,
                condition: None,
            })
            .collect();
        for twin in status.map(|s| s.twins.as_slice()).unwrap_or_default() {
            let index = match properties.iter().position(|p| p.name == twin.property_name) {
                Some(index) => index,
                None => {
                    properties.push(PropertyView {
                        name: twin.property_name.clone(),
                        desired: None,
                        reported: None,
                        observed_desired: None,
                        condition: None,
                    });
                    properties.len() - 1
                }
            };
            let view = &mut properties[index];
            view.reported = twin.reported.as_ref().map(|r| r.value.clone());
            view.observed_desired = twin.observed_desired.as_ref().map(|r| r.value.clone());
            view.condition.clone_from(&twin.condition);
        }
        Self {
            namespace: device.namespace().to_owned(),
            name: device.name().to_owned(),
            model: spec.device_model_ref.as_ref().map(|m| m.name.clone()),
            node: spec.node_name.clone(),
            protocol: spec.protocol.as_ref().and_then(|p| p.protocol_name.clone()),
            state: status.and_then(|s| s.state.clone()),
            last_online_time: status.and_then(|s| s.last_online_time.clone()),
            last_update: last_update(device),
            generation: device.generation(),
            observed_generation: status.and_then(|s| s.observed_generation),
            properties,
        }
    }
}

/// The newest timestamp found in a Device (see [`DeviceView::last_update`]). Timestamps that
/// do not parse are skipped: the view is for people, and the registry validated the rest.
fn last_update(device: &Device) -> Option<jiff::Timestamp> {
    let status = device.status.as_ref();
    let twins = status.map(|s| s.twins.as_slice()).unwrap_or_default();
    let conditions = twins
        .iter()
        .filter_map(|t| t.condition.as_ref().map(|c| c.last_transition_time));
    let reported = twins
        .iter()
        .filter_map(|t| t.reported.as_ref()?.metadata.get("timestamp"))
        .filter_map(|ms| jiff::Timestamp::from_millisecond(ms.parse().ok()?).ok());
    let online = status
        .and_then(|s| s.last_online_time.as_deref())
        .and_then(|t| t.parse().ok());
    conditions
        .chain(reported)
        .chain(online)
        .max()
        .or_else(|| creation_time(device))
}

/// `metadata.creationTimestamp` through its JSON form (an RFC 3339 string), which is the same
/// in the Kubernetes and the plain build of the model.
fn creation_time(device: &Device) -> Option<jiff::Timestamp> {
    let json = serde_json::to_value(device.metadata.creation_timestamp.as_ref()?).ok()?;
    json.as_str()?.parse().ok()
}

/// A DeviceModel as the dashboard needs it: property types decide what the buttons write
/// (`ON`/`OFF` for STRING, `true`/`false` for BOOLEAN, `1`/`0` for INT).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The properties.
    pub properties: Vec<ModelPropertyView>,
}

/// One property of a [`ModelView`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelPropertyView {
    /// The property name.
    pub name: String,
    /// Its type, as in the model (`STRING`, `BOOLEAN`, `INT`, …).
    #[serde(rename = "type")]
    pub property_type: PropertyType,
    /// `ReadWrite` or `ReadOnly`.
    pub access_mode: AccessMode,
}

impl ModelView {
    /// The view of a DeviceModel.
    pub fn of(model: &DeviceModel) -> Self {
        Self {
            namespace: model.namespace().to_owned(),
            name: model.name().to_owned(),
            properties: model
                .spec
                .properties
                .iter()
                .map(|p| ModelPropertyView {
                    name: p.name.clone(),
                    property_type: p.property_type,
                    access_mode: p.access_mode.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The namespace and name of a deleted object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// The reference of a Device.
    pub fn of_device(device: &Device) -> Self {
        Self {
            namespace: device.namespace().to_owned(),
            name: device.name().to_owned(),
        }
    }

    /// The reference of a DeviceModel.
    pub fn of_model(model: &DeviceModel) -> Self {
        Self {
            namespace: model.namespace().to_owned(),
            name: model.name().to_owned(),
        }
    }
}
