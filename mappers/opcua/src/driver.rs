//! The SDK's `Driver` and `Session` for OPC UA.
//!
//! - **Reads**: every polled property of a cycle goes into one Read service call (split only
//!   when the server's `MaxNodesPerRead` is smaller); a bad status code fails that property
//!   alone.
//! - **Writes**: the desired value is converted to the node's actual DataType (read once per
//!   session, then cached) and written; the runtime reads it back for Verified. A value the node
//!   cannot take is refused with the reason, which the runtime reports as the property's Failed
//!   condition.
//! - **Subscriptions**: properties with `subscribe` become monitored items (sampling interval,
//!   queue size, deadband), one subscription per publishing interval, pushed through the SDK;
//!   the runtime re-creates them with the session after a loss.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgetwin_sdk::{
    DeviceConfig, Driver, DriverError, Point, PointId, PropertyType, PushSender, Session, Value,
};
use opcua::client::{MonitoredItem, SubscriptionCallbacks};
use opcua::types::{
    AttributeId, DataChangeFilter, DataChangeTrigger, DataValue, DeadbandType, ExtensionObject,
    MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeId, ReadValueId,
    StatusCode, TimestampsToReturn, VariableId, Variant, WriteValue,
};

use crate::config::{Deadband, DeviceSettings, Monitoring, ProtocolConfig, VisitorConfig};
use crate::connection::{Connection, describe_status, service_error};
use crate::convert::{ScalarType, from_variant, to_variant, variant_type_name};
use crate::node::NodeAddress;
use crate::pki::Pki;

type Config = DeviceConfig<ProtocolConfig, VisitorConfig>;

/// The OPC UA protocol: one value serves every device, sharing the mapper's certificate store.
#[derive(Debug, Clone)]
pub struct OpcUaDriver {
    pki: Arc<Pki>,
    data_dir: PathBuf,
}

impl OpcUaDriver {
    /// A driver whose certificate store lives in `data_dir/pki`.
    pub fn new(data_dir: impl Into<PathBuf>) -> OpcUaDriver {
        let data_dir = data_dir.into();
        OpcUaDriver {
            pki: Arc::new(Pki::new(&data_dir)),
            data_dir,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The certificate store.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }
}

impl Driver for OpcUaDriver {
    const PROTOCOL: &'static str = "opcua";
    type ProtocolConfig = ProtocolConfig;
    type VisitorConfig = VisitorConfig;
    type Session = OpcUaSession;

    fn validate(&self, device: &Config) -> Result<(), DriverError> {
        device
            .protocol
            .settings()
            .map_err(|e| DriverError::config(format!("protocol.configData.{e}")))?;
        for key in device.protocol.unknown_keys() {
            tracing::warn!(device = %device.id, key, "unknown key in protocol.configData ignored");
        }
        for point in &device.points {
            point.visitor.settings().map_err(|e| {
                DriverError::config(format!(
                    "property {}: visitors.configData.{e}",
                    point.property
                ))
            })?;
            for key in point.visitor.unknown_keys() {
                tracing::warn!(device = %device.id, property = %point.property, key, "unknown key in visitors.configData ignored");
            }
        }
        Ok(())
    }

    async fn connect(&self, device: &Config) -> Result<OpcUaSession, DriverError> {
        let settings = device
            .protocol
            .settings()
            .map_err(|e| DriverError::config(format!("protocol.configData.{e}")))?;
        let mut points = Vec::with_capacity(device.points.len());
        for point in &device.points {
            let settings = point.visitor.settings().map_err(|e| {
                DriverError::config(format!(
                    "property {}: visitors.configData.{e}",
                    point.property
                ))
            })?;
            points.push(settings);
        }
        let connection = Connection::open(&self.pki, &settings).await?;
        let mut session = OpcUaSession {
            nodes: Vec::new(),
            monitoring: points.iter().map(|p| p.subscribe).collect(),
            write_types: HashMap::new(),
            max_nodes_per_read: usize::MAX,
            settings,
            connection,
        };
        let addresses: Vec<NodeAddress> = points.into_iter().map(|p| p.address).collect();
        session.nodes = session.resolve(&addresses).await?;
        session.max_nodes_per_read = session.read_limit().await;
        Ok(session)
    }
}

/// An open session to one device's server.
#[derive(Debug)]
pub struct OpcUaSession {
    settings: DeviceSettings,
    connection: Connection,
    /// Each point's node, or why it has none (a browse path that did not resolve).
    nodes: Vec<Result<NodeId, String>>,
    /// Each point's monitoring, when it is to be pushed.
    monitoring: Vec<Option<Monitoring>>,
    /// The DataType each written node takes, read at its first write.
    write_types: HashMap<PointId, ScalarType>,
    /// The server's `MaxNodesPerRead` (unlimited when it names none).
    max_nodes_per_read: usize,
}

impl OpcUaSession {
    /// Resolves browse paths to node ids in one TranslateBrowsePathsToNodeIds call.
    async fn resolve(
        &self,
        addresses: &[NodeAddress],
    ) -> Result<Vec<Result<NodeId, String>>, DriverError> {
        let mut nodes: Vec<Result<NodeId, String>> = Vec::with_capacity(addresses.len());
        let mut paths = Vec::new();
        for (index, address) in addresses.iter().enumerate() {
            match address {
                NodeAddress::Id(id) => nodes.push(Ok(id.clone())),
                NodeAddress::Path(path) => {
                    nodes.push(Err(String::new()));
                    paths.push((index, path));
                }
            }
        }
        if paths.is_empty() {
            return Ok(nodes);
        }
        let request: Vec<opcua::types::BrowsePath> = paths
            .iter()
            .map(|(_, path)| opcua::types::BrowsePath {
                starting_node: opcua::types::ObjectId::ObjectsFolder.into(),
                relative_path: path.path.clone(),
            })
            .collect();
        let results = self
            .connection
            .session()
            .translate_browse_paths_to_node_ids(&request)
            .await
            .map_err(|e| service_error(e.status(), self.settings.timeout))?;
        for ((index, path), result) in paths.iter().zip(results) {
            let target = result
                .targets
                .iter()
                .flatten()
                .find(|t| t.remaining_path_index == u32::MAX);
            nodes[*index] = match (result.status_code.is_good(), target) {
                (true, Some(target)) if target.target_id.server_index == 0 => {
                    Ok(target.target_id.node_id.clone())
                }
                (true, _) => Err(format!(
                    "the browse path {} does not lead to a node of this server",
                    NodeAddress::Path((*path).clone())
                )),
                (false, _) => Err(format!(
                    "the browse path {} does not resolve: {}",
                    NodeAddress::Path((*path).clone()),
                    describe_status(result.status_code)
                )),
            };
        }
        for (index, node) in nodes.iter().enumerate() {
            if let Err(why) = node {
                tracing::warn!(point = index, error = %why, "browse path not resolved");
            }
        }
        Ok(nodes)
    }

    /// The server's `MaxNodesPerRead`; unlimited when it does not say.
    async fn read_limit(&self) -> usize {
        let id = ReadValueId {
            node_id: VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead.into(),
            attribute_id: AttributeId::Value as u32,
            ..Default::default()
        };
        let read = self
            .connection
            .session()
            .read(&[id], TimestampsToReturn::Neither, 0.0)
            .await;
        match read.ok().and_then(|values| values.into_iter().next()) {
            Some(DataValue {
                value: Some(Variant::UInt32(limit)),
                ..
            }) if limit > 0 => limit as usize,
            _ => usize::MAX,
        }
    }

    fn node(&self, id: PointId) -> Result<&NodeId, DriverError> {
        match self.nodes.get(id.0) {
            Some(Ok(node)) => Ok(node),
            Some(Err(why)) => Err(DriverError::Rejected(why.clone())),
            None => Err(DriverError::Rejected(format!("no point {}", id.0))),
        }
    }

    /// The scalar type the node takes, read once (DataType and ValueRank; for an abstract
    /// DataType, the type of its current value).
    async fn write_type(&mut self, id: PointId) -> Result<ScalarType, DriverError> {
        if let Some(ty) = self.write_types.get(&id) {
            return Ok(*ty);
        }
        let node = self.node(id)?.clone();
        let attribute = |attribute: AttributeId| ReadValueId {
            node_id: node.clone(),
            attribute_id: attribute as u32,
            ..Default::default()
        };
        let values = self
            .connection
            .session()
            .read(
                &[
                    attribute(AttributeId::DataType),
                    attribute(AttributeId::ValueRank),
                ],
                TimestampsToReturn::Neither,
                0.0,
            )
            .await
            .map_err(|e| service_error(e.status(), self.settings.timeout))?;
        let [data_type, rank] = <[DataValue; 2]>::try_from(values).map_err(|values| {
            DriverError::io(format!(
                "the server answered {} values for 2 attributes",
                values.len()
            ))
        })?;
        let data_type = match good(data_type, &node)? {
            Variant::NodeId(id) => *id,
            other => {
                return Err(DriverError::Rejected(format!(
                    "{node}: its DataType attribute is a {}",
                    variant_type_name(&other)
                )));
            }
        };
        if let Ok(Variant::Int32(rank)) = good(rank, &node)
            && rank >= 0
        {
            return Err(DriverError::Rejected(format!(
                "{node} holds an array (ValueRank {rank}); only scalar nodes can be written"
            )));
        }
        let ty = match ScalarType::from_data_type(&data_type) {
            Ok(Some(ty)) => ty,
            Ok(None) => {
                // An abstract DataType: the value's own type is what the node holds.
                let value = self.read_one(&node).await?;
                ScalarType::of_variant(&value).ok_or_else(|| {
                    DriverError::Rejected(format!(
                        "{node} holds a {} value, which the mapper cannot write",
                        variant_type_name(&value)
                    ))
                })?
            }
            Err(name) => {
                return Err(DriverError::Rejected(format!(
                    "{node} has {name}, which the mapper cannot write (it writes Boolean, \
                     SByte…UInt64, Float, Double, String, DateTime and ByteString)"
                )));
            }
        };
        self.write_types.insert(id, ty);
        Ok(ty)
    }

    async fn read_one(&self, node: &NodeId) -> Result<Variant, DriverError> {
        let id = ReadValueId {
            node_id: node.clone(),
            attribute_id: AttributeId::Value as u32,
            ..Default::default()
        };
        let values = self
            .connection
            .session()
            .read(&[id], TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| service_error(e.status(), self.settings.timeout))?;
        let value = values
            .into_iter()
            .next()
            .ok_or_else(|| DriverError::io("the server answered no value"))?;
        good(value, node)
    }
}

/// The value of a read result with a good (or uncertain) status; a bad status is the
/// property's error.
fn good(value: DataValue, node: &NodeId) -> Result<Variant, DriverError> {
    let status = value.status.unwrap_or(StatusCode::Good);
    if status.is_bad() {
        return Err(DriverError::Rejected(format!(
            "{node}: {}",
            describe_status(status)
        )));
    }
    Ok(value.value.unwrap_or(Variant::Empty))
}

fn convert(value: DataValue, node: &NodeId, ty: PropertyType) -> Result<Value, DriverError> {
    let variant = good(value, node)?;
    from_variant(&variant, ty).map_err(|why| DriverError::Rejected(format!("{node}: {why}")))
}

impl Session for OpcUaSession {
    type Visitor = VisitorConfig;

    async fn read(&mut self, points: &[&Point<VisitorConfig>]) -> Vec<Result<Value, DriverError>> {
        if let Err(lost) = self.connection.check() {
            return vec![Err(lost); points.len()];
        }
        let mut results: Vec<Option<Result<Value, DriverError>>> = vec![None; points.len()];
        let mut request = Vec::with_capacity(points.len());
        let mut slots = Vec::with_capacity(points.len());
        for (slot, point) in points.iter().enumerate() {
            match self.node(point.id) {
                Ok(node) => {
                    request.push(ReadValueId {
                        node_id: node.clone(),
                        attribute_id: AttributeId::Value as u32,
                        ..Default::default()
                    });
                    slots.push(slot);
                }
                Err(why) => results[slot] = Some(Err(why)),
            }
        }
        let chunk = self.max_nodes_per_read.max(1);
        for (ids, chunk_slots) in request.chunks(chunk).zip(slots.chunks(chunk)) {
            let answer = self
                .connection
                .session()
                .read(ids, TimestampsToReturn::Neither, 0.0)
                .await;
            match answer {
                Ok(values) if values.len() == ids.len() => {
                    for ((value, id), slot) in values.into_iter().zip(ids).zip(chunk_slots) {
                        results[*slot] = Some(convert(value, &id.node_id, points[*slot].ty));
                    }
                }
                Ok(values) => {
                    let error = DriverError::io(format!(
                        "the server answered {} values for {} nodes",
                        values.len(),
                        ids.len()
                    ));
                    for slot in chunk_slots {
                        results[*slot] = Some(Err(error.clone()));
                    }
                }
                Err(e) => {
                    let error = match self.connection.check() {
                        Err(lost) => lost,
                        Ok(()) => service_error(e.status(), self.settings.timeout),
                    };
                    for slot in chunk_slots {
                        results[*slot] = Some(Err(error.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DriverError::io("not read"))))
            .collect()
    }

    async fn write(
        &mut self,
        point: &Point<VisitorConfig>,
        value: &Value,
    ) -> Result<(), DriverError> {
        self.connection.check()?;
        let ty = self.write_type(point.id).await?;
        let node = self.node(point.id)?.clone();
        let variant =
            to_variant(value, ty).map_err(|why| DriverError::Rejected(format!("{node}: {why}")))?;
        let write = WriteValue {
            node_id: node.clone(),
            attribute_id: AttributeId::Value as u32,
            index_range: Default::default(),
            value: DataValue {
                value: Some(variant),
                ..Default::default()
            },
        };
        let statuses = self
            .connection
            .session()
            .write(&[write])
            .await
            .map_err(|e| match self.connection.check() {
                Err(lost) => lost,
                Ok(()) => service_error(e.status(), self.settings.timeout),
            })?;
        match statuses.first() {
            Some(status) if status.is_good() => Ok(()),
            Some(status) => {
                if *status == StatusCode::BadTypeMismatch {
                    // The cached type was wrong (the node changed): look it up again next time.
                    self.write_types.remove(&point.id);
                }
                Err(DriverError::Rejected(format!(
                    "{node}: the server refused the write: {}",
                    describe_status(*status)
                )))
            }
            None => Err(DriverError::io("the server answered no write result")),
        }
    }

    async fn subscribe(
        &mut self,
        points: &[&Point<VisitorConfig>],
        push: PushSender,
    ) -> Result<Vec<PointId>, DriverError> {
        let mut groups: BTreeMap<u64, Vec<(PointId, PropertyType, NodeId, Monitoring)>> =
            BTreeMap::new();
        for point in points {
            let (Some(Some(monitoring)), Ok(node)) =
                (self.monitoring.get(point.id.0), self.node(point.id))
            else {
                continue;
            };
            let key = monitoring.publishing_interval.as_micros() as u64;
            groups
                .entry(key)
                .or_default()
                .push((point.id, point.ty, node.clone(), *monitoring));
        }
        let mut pushed = Vec::new();
        for items in groups.into_values() {
            pushed.extend(self.subscribe_group(items, &push).await?);
        }
        if !pushed.is_empty() {
            self.connection.fail_on_loss(push);
        }
        Ok(pushed)
    }

    async fn health(&mut self) -> Result<(), DriverError> {
        self.connection.check()
    }

    async fn disconnect(self) {
        self.connection.close(self.settings.timeout).await;
    }
}

impl OpcUaSession {
    /// One subscription for monitored items sharing a publishing interval; returns the points
    /// the server accepted (the others stay polled, so their error shows on reads).
    async fn subscribe_group(
        &self,
        items: Vec<(PointId, PropertyType, NodeId, Monitoring)>,
        push: &PushSender,
    ) -> Result<Vec<PointId>, DriverError> {
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        let publishing_interval = first.3.publishing_interval;
        let points: Arc<HashMap<u32, (PointId, PropertyType, NodeId)>> = Arc::new(
            items
                .iter()
                .map(|(id, ty, node, _)| (client_handle(*id), (*id, *ty, node.clone())))
                .collect(),
        );
        let on_data = {
            let points = Arc::clone(&points);
            let push = push.clone();
            move |value: DataValue, item: &MonitoredItem| {
                let Some((id, ty, node)) = points.get(&item.client_handle()) else {
                    return;
                };
                match convert(value, node, *ty) {
                    Ok(value) => {
                        if !push.try_push(*id, value) {
                            tracing::debug!(
                                point = id.0,
                                "pushed value dropped: the runtime is behind or gone"
                            );
                        }
                    }
                    Err(error) => {
                        tracing::warn!(point = id.0, %error, "monitored value not reported")
                    }
                }
            }
        };
        let on_status = {
            let push = push.clone();
            move |change: opcua::types::StatusChangeNotification| {
                if change.status.is_bad() {
                    push.fail(DriverError::Disconnected(format!(
                        "the server ended the subscription: {}",
                        describe_status(change.status)
                    )));
                }
            }
        };
        // Keep-alive notifications about every 10 s; the server drops the subscription after
        // three missed ones.
        let interval_ms = publishing_interval.as_millis().max(1);
        let keep_alive_count = (10_000 / interval_ms).clamp(1, 1000) as u32;
        let session = self.connection.session();
        let subscription = session
            .create_subscription(
                publishing_interval,
                keep_alive_count * 3,
                keep_alive_count,
                0,
                0,
                true,
                SubscriptionCallbacks::new(on_status, on_data, |_, _| {}),
            )
            .await
            .map_err(|e| service_error(e.status(), self.settings.timeout))?;
        let requests: Vec<MonitoredItemCreateRequest> = items
            .iter()
            .map(|(id, _, node, monitoring)| MonitoredItemCreateRequest {
                item_to_monitor: ReadValueId {
                    node_id: node.clone(),
                    attribute_id: AttributeId::Value as u32,
                    ..Default::default()
                },
                monitoring_mode: MonitoringMode::Reporting,
                requested_parameters: MonitoringParameters {
                    client_handle: client_handle(*id),
                    sampling_interval: monitoring.sampling_interval.as_secs_f64() * 1000.0,
                    filter: monitoring
                        .deadband
                        .map_or_else(ExtensionObject::null, deadband_filter),
                    queue_size: monitoring.queue_size,
                    discard_oldest: true,
                },
            })
            .collect();
        let created = session
            .create_monitored_items(subscription, TimestampsToReturn::Neither, requests)
            .await
            .map_err(|e| service_error(e.status(), self.settings.timeout))?;
        let mut accepted = Vec::with_capacity(items.len());
        for ((id, _, node, _), result) in items.iter().zip(&created) {
            if result.result.status_code.is_good() {
                accepted.push(*id);
            } else {
                tracing::warn!(
                    point = id.0,
                    node = %node,
                    status = %describe_status(result.result.status_code),
                    "the server refused to monitor the node; it is polled instead"
                );
            }
        }
        Ok(accepted)
    }
}

/// The client handle of a point's monitored item (0 is reserved by the client library).
fn client_handle(id: PointId) -> u32 {
    u32::try_from(id.0 + 1).unwrap_or(u32::MAX)
}

fn deadband_filter(deadband: Deadband) -> ExtensionObject {
    let (deadband_type, deadband_value) = match deadband {
        Deadband::Absolute(value) => (DeadbandType::Absolute as u32, value),
        Deadband::Percent(value) => (DeadbandType::Percent as u32, value),
    };
    ExtensionObject::from_message(DataChangeFilter {
        trigger: DataChangeTrigger::StatusValue,
        deadband_type,
        deadband_value,
    })
}
