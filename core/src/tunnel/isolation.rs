//! Node isolation: a link authenticated as node A carries only A's devices, in both directions.
//!
//! The hub reads the node and device a message concerns from its `route.resource`:
//!
//! | resource | concerns |
//! |---|---|
//! | `node/{node}/…` | node `{node}` |
//! | `node/{node}/device/{namespace}/{name}/…` | node `{node}` and that device |
//! | `device/{namespace}/{name}/…` | that device |
//! | anything else (e.g. `membership/detail`) | the link's own node only |
//!
//! Device ids on the tunnel always carry the namespace (KubeEdge's single-segment form would be
//! ambiguous here). A message that names another node, a device not assigned to the link's node
//! ([`Membership`]), or a malformed device resource is rejected: inbound, it is not applied, it is
//! logged and counted, and the node gets an `error` reply; outbound, `Hub::send` refuses it.

use edgetwin_model::wire::Envelope;
use edgetwin_model::wire::topic::DeviceId;

use super::node::NodeName;

/// Which devices belong to which node. The device controller implements it from its membership
/// table; it must answer from memory (it is called for every message).
pub trait Membership: Send + Sync {
    /// Whether `device` is currently assigned to `node`.
    fn is_assigned(&self, node: &NodeName, device: &DeviceId) -> bool;
}

/// Why a message was refused, worded for the log and for the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    /// An HTTP-like code: 403 (another node's data) or 400 (malformed resource).
    pub code: i64,
    /// What was wrong.
    pub reason: String,
}

impl Rejection {
    /// The code for data that belongs to another node.
    pub const FORBIDDEN: i64 = 403;
    /// The code for a resource that cannot be read.
    pub const BAD_REQUEST: i64 = 400;
}

/// The node and device a resource names, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// From a `node/{node}/…` prefix.
    pub node: Option<String>,
    /// From a `device/{namespace}/{name}/…` part.
    pub device: Option<DeviceId>,
}

/// Reads the scope of a resource (see the module docs).
pub fn scope(resource: &str) -> Result<Scope, Rejection> {
    let bad = |what: String| Rejection {
        code: Rejection::BAD_REQUEST,
        reason: format!("resource {resource:?}: {what}"),
    };
    let mut scope = Scope::default();
    let mut rest = resource;
    if let Some(after) = rest.strip_prefix("node/") {
        let (node, tail) = after.split_once('/').unwrap_or((after, ""));
        if node.is_empty() {
            return Err(bad("empty node name".into()));
        }
        scope.node = Some(node.to_owned());
        rest = tail;
    }
    if let Some(after) = rest.strip_prefix("device/") {
        let mut parts = after.splitn(3, '/');
        let (Some(namespace), Some(name), Some(tail)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected device/{namespace}/{name}/…".into()));
        };
        if tail.is_empty() {
            return Err(bad("expected device/{namespace}/{name}/…".into()));
        }
        let id = DeviceId::namespaced(namespace, name).map_err(|error| bad(error.to_string()))?;
        scope.device = Some(id);
    }
    Ok(scope)
}

/// Checks that `message`, on `node`'s link, concerns only `node` and its devices.
pub fn check(
    node: &NodeName,
    message: &Envelope,
    membership: &dyn Membership,
) -> Result<(), Rejection> {
    let Some(resource) = message.route.resource.as_deref() else {
        return Ok(());
    };
    let scope = scope(resource)?;
    if let Some(other) = scope.node.as_deref().filter(|n| *n != node.as_str()) {
        return Err(Rejection {
            code: Rejection::FORBIDDEN,
            reason: format!("resource {resource:?} names node {other:?}, not {node}"),
        });
    }
    if let Some(device) = &scope.device
        && !membership.is_assigned(node, device)
    {
        return Err(Rejection {
            code: Rejection::FORBIDDEN,
            reason: format!(
                "device {}/{} is not assigned to node {node}",
                device.namespace().unwrap_or_default(),
                device.name()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use super::*;

    /// A fixed membership table: (node, namespace, name).
    pub(crate) struct Table(pub HashSet<(String, String, String)>);

    impl Table {
        pub(crate) fn new(rows: &[(&str, &str, &str)]) -> Self {
            Table(
                rows.iter()
                    .map(|(n, ns, d)| (n.to_string(), ns.to_string(), d.to_string()))
                    .collect(),
            )
        }
    }

    impl Membership for Table {
        fn is_assigned(&self, node: &NodeName, device: &DeviceId) -> bool {
            let key = (
                node.to_string(),
                device.namespace().unwrap_or_default().to_owned(),
                device.name().to_owned(),
            );
            self.0.contains(&key)
        }
    }

    fn message(resource: Option<&str>) -> Envelope {
        let mut envelope = Envelope::default();
        envelope.route.resource = resource.map(str::to_owned);
        envelope
    }

    #[test]
    fn scopes_are_read_from_resources() {
        let device = |ns, name| Some(DeviceId::namespaced(ns, name).expect("id"));
        assert_eq!(
            scope("node/edge-1/device/default/lamp/twin/cloud_updated"),
            Ok(Scope {
                node: Some("edge-1".into()),
                device: device("default", "lamp")
            })
        );
        assert_eq!(
            scope("device/ns/lamp/twin/edge_updated").map(|s| s.device),
            Ok(device("ns", "lamp"))
        );
        assert_eq!(
            scope("node/edge-1/membership").map(|s| s.node),
            Ok(Some("edge-1".into()))
        );
        assert_eq!(scope("membership/detail"), Ok(Scope::default()));
        for bad in [
            "device/lamp/twin",
            "device/ns/lamp/",
            "device/ns/+/twin",
            "node//x",
        ] {
            let error = scope(bad).expect_err(bad);
            assert_eq!(error.code, Rejection::BAD_REQUEST, "{bad}");
            assert!(error.reason.contains(bad), "{error}");
        }
    }

    #[test]
    fn only_the_links_own_node_and_devices_pass() {
        let table = Table::new(&[("edge-1", "default", "lamp"), ("edge-2", "default", "pump")]);
        let edge1 = NodeName::new("edge-1").expect("node");
        let ok = [
            None,
            Some("membership/detail"),
            Some("device/default/lamp/twin/edge_updated"),
            Some("node/edge-1/device/default/lamp/twin/cloud_updated"),
            Some("node/edge-1/membership"),
        ];
        for resource in ok {
            assert_eq!(
                check(&edge1, &message(resource), &table),
                Ok(()),
                "{resource:?}"
            );
        }
        let forbidden = [
            "device/default/pump/twin/edge_updated",
            "device/other/lamp/twin/edge_updated",
            "node/edge-2/membership",
            "node/edge-1/device/default/pump/twin/cloud_updated",
        ];
        for resource in forbidden {
            let error = check(&edge1, &message(Some(resource)), &table).expect_err(resource);
            assert_eq!(error.code, Rejection::FORBIDDEN, "{resource}: {error}");
        }
        let error = check(&edge1, &message(Some("device/x")), &table).expect_err("malformed");
        assert_eq!(error.code, Rejection::BAD_REQUEST);
    }
}
