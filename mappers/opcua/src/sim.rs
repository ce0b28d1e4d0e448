//! Our OPC UA simulator on async-opcua's server (feature `sim`): for the SDK conformance suite,
//! examples and the benchmark. The tests' server that we did not write is python asyncua
//! (`tests/peers/asyncua_server.py`).
//!
//! Address space, in namespace [`NAMESPACE_URI`] (index 2 on this server):
//!
//! ```text
//! Objects/Device (ns=2;s=Device)
//!   Boolean, SByte, Byte, Int16, UInt16, Int32, UInt32, Int64, UInt64, Float, Double, String,
//!   DateTime, ByteString      one writable variable per type, node id ns=2;s=<type name>
//!   Setpoint                  a writable Double, ns=2;s=Setpoint
//! Objects/Bench (ns=2;s=Bench)
//!   v0000 … v{n-1}            n Int32 variables (`--variables n`), ns=2;s=v0000 …
//! ```
//!
//! Every variable's browse name is in namespace 2 (`/2:Device/2:Setpoint`). The endpoint is
//! `opc.tcp://127.0.0.1:PORT/`, SecurityPolicy None, anonymous.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use opcua::nodes::NodeType;
use opcua::server::address_space::VariableBuilder;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::server::{ServerBuilder, ServerEndpoint, ServerHandle};
use opcua::types::{
    ByteString, DataEncoding, DataValue, DateTime, NodeId, NumericRange, QualifiedName,
    TimestampsToReturn, UAString, Variant,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::convert::ScalarType;

/// The simulator's namespace.
pub const NAMESPACE_URI: &str = "urn:edgetwin:opcua-sim:device";

/// What to serve.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// How many `v0000…` Int32 variables under `Bench`.
    pub variables: usize,
    /// The server's certificate store (created on first start).
    pub pki_dir: PathBuf,
}

/// A running simulator.
pub struct Simulator {
    handle: ServerHandle,
    manager: Arc<SimpleNodeManager>,
    namespace: u16,
    url: String,
    task: JoinHandle<Result<(), String>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").field("url", &self.url).finish()
    }
}

/// The initial value of each type's variable.
pub fn initial_value(ty: ScalarType) -> Variant {
    match ty {
        ScalarType::Boolean => Variant::Boolean(true),
        ScalarType::SByte => Variant::SByte(-8),
        ScalarType::Byte => Variant::Byte(8),
        ScalarType::Int16 => Variant::Int16(-16),
        ScalarType::UInt16 => Variant::UInt16(16),
        ScalarType::Int32 => Variant::Int32(-32),
        ScalarType::UInt32 => Variant::UInt32(32),
        ScalarType::Int64 => Variant::Int64(-64),
        ScalarType::UInt64 => Variant::UInt64(64),
        ScalarType::Float => Variant::Float(1.5),
        ScalarType::Double => Variant::Double(2.25),
        ScalarType::String => Variant::String(UAString::from("pump-1")),
        ScalarType::DateTime => {
            Variant::DateTime(Box::new(DateTime::ymd_hms(2024, 5, 1, 12, 0, 0)))
        }
        ScalarType::ByteString => Variant::ByteString(ByteString::from(b"raw".to_vec())),
    }
}

impl Simulator {
    /// Builds the address space and starts serving.
    pub async fn start(config: SimConfig) -> Result<Simulator, String> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (server, handle) = ServerBuilder::new()
            .application_name("edgetwin OPC-UA simulator")
            .application_uri("urn:edgetwin:opcua-sim")
            .product_uri("urn:edgetwin")
            .host(addr.ip().to_string())
            .port(addr.port())
            .pki_dir(&config.pki_dir)
            .create_sample_keypair(true)
            .trust_client_certs(true)
            .add_endpoint(
                "none",
                ServerEndpoint::new_none("/", &[opcua::server::ANONYMOUS_USER_TOKEN_ID.to_owned()]),
            )
            .discovery_urls(vec!["/".to_owned()])
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: NAMESPACE_URI.to_owned(),
                    ..Default::default()
                },
                "sim",
            ))
            .build()?;
        let manager = handle
            .node_managers()
            .get_of_type::<SimpleNodeManager>()
            .ok_or("the simulator's node manager is missing")?;
        let namespace = handle
            .get_namespace_index(NAMESPACE_URI)
            .ok_or("the simulator's namespace is missing")?;
        populate(&manager, namespace, config.variables);
        let task = tokio::spawn(server.run_with(listener));
        Ok(Simulator {
            handle,
            manager,
            namespace,
            url: format!("opc.tcp://{addr}/"),
            task,
        })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The namespace index of the simulator's nodes.
    pub fn namespace(&self) -> u16 {
        self.namespace
    }

    /// The node id of a variable by name (`Setpoint`, `Int32`, `v0007`).
    pub fn node(&self, name: &str) -> NodeId {
        NodeId::new(self.namespace, name)
    }

    /// Sets a variable's value (notifying subscriptions) as the device itself would.
    pub fn set(&self, name: &str, value: Variant) -> Result<(), String> {
        self.manager
            .set_value(
                self.handle.subscriptions(),
                &self.node(name),
                None,
                DataValue::new_now(value),
            )
            .map_err(|code| format!("{name}: {code}"))
    }

    /// A variable's current value.
    pub fn get(&self, name: &str) -> Option<Variant> {
        let space = self.manager.address_space();
        let space = space.read();
        match space.find(&self.node(name))? {
            NodeType::Variable(variable) => {
                variable
                    .value(
                        TimestampsToReturn::Neither,
                        &NumericRange::None,
                        &DataEncoding::Binary,
                        0.0,
                    )
                    .value
            }
            _ => None,
        }
    }

    /// Stops serving (connections are closed).
    pub async fn stop(self) {
        self.handle.cancel();
        let _ = self.task.await;
    }
}

fn populate(manager: &SimpleNodeManager, ns: u16, variables: usize) {
    let space = manager.address_space();
    let mut space = space.write();
    let device = NodeId::new(ns, "Device");
    space.add_folder(
        &device,
        QualifiedName::new(ns, "Device"),
        "Device",
        &NodeId::objects_folder_id(),
    );
    for ty in ScalarType::ALL {
        let id = NodeId::new(ns, ty.name());
        VariableBuilder::new(&id, QualifiedName::new(ns, ty.name()), ty.name())
            .data_type(ty.data_type_id())
            .value(initial_value(ty))
            .writable()
            .organized_by(&device)
            .insert(&mut *space);
    }
    VariableBuilder::new(
        &NodeId::new(ns, "Setpoint"),
        QualifiedName::new(ns, "Setpoint"),
        "Setpoint",
    )
    .data_type(ScalarType::Double.data_type_id())
    .value(Variant::Double(20.0))
    .writable()
    .organized_by(&device)
    .insert(&mut *space);
    let bench = NodeId::new(ns, "Bench");
    space.add_folder(
        &bench,
        QualifiedName::new(ns, "Bench"),
        "Bench",
        &NodeId::objects_folder_id(),
    );
    for index in 0..variables {
        let name = format!("v{index:04}");
        VariableBuilder::new(
            &NodeId::new(ns, name.as_str()),
            QualifiedName::new(ns, name.as_str()),
            name.as_str(),
        )
        .data_type(ScalarType::Int32.data_type_id())
        .value(Variant::Int32(i32::try_from(index).unwrap_or(i32::MAX)))
        .writable()
        .organized_by(&bench)
        .insert(&mut *space);
    }
}

/// The DeviceModel type a scalar is read and written as by the control commands.
fn model_type(ty: ScalarType) -> edgetwin_sdk::PropertyType {
    use edgetwin_sdk::PropertyType;
    match ty {
        ScalarType::Boolean => PropertyType::Boolean,
        ScalarType::Float | ScalarType::Double => PropertyType::Double,
        ScalarType::String | ScalarType::DateTime => PropertyType::String,
        ScalarType::ByteString => PropertyType::Bytes,
        _ => PropertyType::Int,
    }
}

impl Simulator {
    /// Runs one control command and returns its one-line JSON answer:
    /// `get NAME` → `{"value": "…"}`, `set NAME VALUE` (VALUE in the variable's own type) →
    /// `{"ok": true}`; errors → `{"error": "…"}`.
    pub fn command(&self, line: &str) -> String {
        let answer = self.run_command(line.trim());
        match answer {
            Ok(json) => json.to_string(),
            Err(error) => serde_json::json!({ "error": error }).to_string(),
        }
    }

    fn run_command(&self, line: &str) -> Result<serde_json::Value, String> {
        let mut words = line.splitn(3, ' ');
        let verb = words.next().unwrap_or_default();
        let name = words.next().ok_or("missing variable name")?;
        let current = self
            .get(name)
            .ok_or_else(|| format!("no variable {name}"))?;
        let ty = ScalarType::of_variant(&current)
            .ok_or_else(|| format!("{name} holds an unsupported type"))?;
        match verb {
            "get" => {
                let value = crate::convert::from_variant(&current, model_type(ty))?;
                Ok(serde_json::json!({ "value": value.to_wire() }))
            }
            "set" => {
                let text = words.next().unwrap_or_default();
                let value = model_type(ty).parse(text).map_err(|e| e.to_string())?;
                let variant = crate::convert::to_variant(&value, ty)?;
                self.set(name, variant)?;
                Ok(serde_json::json!({ "ok": true }))
            }
            other => Err(format!("unknown command {other:?}: use get or set")),
        }
    }
}
