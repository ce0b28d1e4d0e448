//! Where a property lives on the server: a node id in any of OPC UA's forms, or a browse path
//! from the Objects folder that the session resolves to a node id once per connection.

use std::fmt;
use std::str::FromStr;

use opcua::types::{NodeId, RelativePath};

/// A property's node, as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeAddress {
    /// A node id (`ns=2;s=Temperature`).
    Id(NodeId),
    /// A browse path from the Objects folder (`/2:Boiler/2:Temperature`), resolved per session.
    Path(BrowsePath),
}

/// A browse path: its text (for messages) and its parsed form.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowsePath {
    /// As configured, normalised to start with a reference (`/`).
    pub text: String,
    /// The parsed relative path.
    pub path: RelativePath,
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeAddress::Id(id) => write!(f, "{id}"),
            NodeAddress::Path(path) => write!(f, "Objects{}", path.text),
        }
    }
}

/// Parses a node id: `ns=N;i=…` (numeric), `ns=N;s=…` (string), `ns=N;g=…` (GUID),
/// `ns=N;b=…` (opaque, base64), each also without `ns=N;` (namespace 0). KubeEdge's documented
/// example separates with a comma (`ns=1,i=1005`); that form is read too.
pub fn parse_node_id(text: &str) -> Result<NodeId, String> {
    let trimmed = text.trim();
    let normalised;
    let text_to_parse = match kubeedge_comma_form(trimmed) {
        Some(fixed) => {
            normalised = fixed;
            normalised.as_str()
        }
        None => trimmed,
    };
    NodeId::from_str(text_to_parse).map_err(|_| {
        format!(
            "{text:?} is not a node id; write ns=<index>;i=<number>, ns=<index>;s=<string>, \
             ns=<index>;g=<guid> or ns=<index>;b=<base64>"
        )
    })
}

/// `ns=1,i=1005` → `ns=1;i=1005`; `None` when the text is not in that form.
fn kubeedge_comma_form(text: &str) -> Option<String> {
    let rest = text.strip_prefix("ns=")?;
    let (index, id) = rest.split_once(',')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("ns={index};{id}"))
}

/// Parses a browse path in OPC UA's relative path syntax (Part 4, Annex A), from the Objects
/// folder: `/2:Boiler/2:Temperature` follows hierarchical references, `.` aggregates. A path
/// that starts with a name (`2:Boiler/2:Temperature`) starts with `/`.
pub fn parse_browse_path(text: &str) -> Result<BrowsePath, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty browse path".into());
    }
    let text = if trimmed.starts_with(['/', '.', '<']) {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    };
    let path = RelativePath::try_from(&text).map_err(|e| {
        format!("{text:?} is not a browse path ({e}); write e.g. 2:Boiler/2:Temperature")
    })?;
    if path.elements.as_ref().is_none_or(Vec::is_empty) {
        return Err(format!("{text:?} names no node"));
    }
    Ok(BrowsePath { text, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::{ByteString, Guid, Identifier};

    #[test]
    fn every_node_id_form_parses() {
        let numeric = parse_node_id("ns=2;i=1005").expect("numeric");
        assert_eq!(numeric, NodeId::new(2, 1005u32));
        let string = parse_node_id("ns=2;s=Line 1.Speed").expect("string");
        assert_eq!(string, NodeId::new(2, "Line 1.Speed"));
        let guid = parse_node_id("ns=3;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63").expect("guid");
        assert_eq!(
            guid.identifier,
            Identifier::Guid(
                Guid::from_str("72962B91-FA75-4AE6-8D28-B404DC7DAF63").expect("valid guid")
            )
        );
        assert_eq!(guid.namespace, 3);
        let opaque = parse_node_id("ns=2;b=M/RbKBsRVkePCePcx24oRA==").expect("opaque");
        assert_eq!(
            opaque.identifier,
            Identifier::ByteString(
                ByteString::from_base64("M/RbKBsRVkePCePcx24oRA==").expect("base64")
            )
        );
        assert_eq!(
            parse_node_id(" i=2258 ").expect("ns 0"),
            NodeId::new(0, 2258u32)
        );
        assert_eq!(
            parse_node_id("ns=1,i=1005").expect("KubeEdge's comma"),
            NodeId::new(1, 1005u32)
        );
    }

    #[test]
    fn malformed_node_ids_are_refused() {
        for text in [
            "",
            "2",
            "ns=2",
            "ns=2;x=1",
            "ns=2;i=abc",
            "ns=99999;i=1",
            "ns=2;g=nope",
        ] {
            let error = parse_node_id(text).expect_err(text);
            assert!(error.contains("not a node id"), "{text}: {error}");
        }
    }

    #[test]
    fn browse_paths_parse_with_or_without_a_leading_slash() {
        let path = parse_browse_path("2:Boiler/2:Temperature").expect("valid");
        assert_eq!(path.text, "/2:Boiler/2:Temperature");
        let elements = path.path.elements.expect("elements");
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[1].target_name.namespace_index, 2);
        assert_eq!(elements[1].target_name.name.as_ref(), "Temperature");
        assert!(parse_browse_path("/2:Boiler.2:Setpoint").is_ok());
        assert!(parse_browse_path("  ").is_err());
        assert_eq!(
            NodeAddress::Path(parse_browse_path("2:A").expect("valid")).to_string(),
            "Objects/2:A"
        );
    }
}
