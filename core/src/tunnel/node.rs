//! The name of an edge node, checked once at the boundary.

use std::fmt;

/// A node name: a Kubernetes node name (RFC 1123 DNS subdomain): 1 to 253 characters of lower-case
/// ASCII letters, digits, `-` and `.`, each dot-separated label 1 to 63 characters long, starting
/// and ending with a letter or digit. Such a name is also a valid DNS name, which is what
/// client-certificate authentication compares against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

/// Why a string is not a node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node name {name:?}: {reason}")]
pub struct NodeNameError {
    /// The rejected input.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl NodeName {
    /// Checks `name` (see the type docs).
    pub fn new(name: &str) -> Result<Self, NodeNameError> {
        let fail = |reason| {
            Err(NodeNameError {
                name: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() {
            return fail("empty");
        }
        if name.len() > 253 {
            return fail("longer than 253 characters");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return fail("each dot-separated part must be 1 to 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return fail("only lower-case letters, digits, '-' and '.' are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return fail("each part must start and end with a letter or digit");
            }
        }
        Ok(NodeName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeName {
    type Err = NodeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_node_names_are_accepted() {
        for name in ["edge-1", "a", "pi.lab.example", "n0", &"x".repeat(63)] {
            assert_eq!(NodeName::new(name).expect(name).as_str(), name);
        }
    }

    #[test]
    fn malformed_names_are_rejected_with_a_reason() {
        for (name, reason) in [
            ("", "empty"),
            ("Edge", "lower-case"),
            ("a/b", "lower-case"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a..b", "1 to 63"),
            (&"x".repeat(64), "1 to 63"),
            (&"a.".repeat(127), "253"),
        ] {
            let error = NodeName::new(name).expect_err(name);
            assert!(error.reason.contains(reason), "{name:?}: {error}");
            assert!(error.to_string().contains("invalid node name"), "{error}");
        }
    }
}
