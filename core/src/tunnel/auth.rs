//! Node authentication: per-node tokens and client certificates.
//!
//! A token is 32 random bytes from the operating system, printed once as `et1_` + 64 hex digits.
//! The cloud stores only its SHA-256 hash, next to the node name, in sqlite; a presented token is
//! hashed and compared in constant time. Creating a token for a node replaces (revokes) the
//! previous one.
//!
//! A client certificate that the TLS layer verified against the client CA authenticates the node
//! named by one of its subject alternative DNS names (the common name is not consulted, as in
//! current TLS practice).

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use rand::TryRngCore;
use rand::rngs::OsRng;
use rusqlite::{Connection, OptionalExtension, params};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use super::node::NodeName;

const TOKEN_PREFIX: &str = "et1_";

/// A freshly created token. It is shown once and never stored; `Debug` does not reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret, for printing it once or sending it in the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a node could not be authenticated, or the token store failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials, a wrong token, or a token for another node. Deliberately vague.
    #[error("node {node} is not authorized: {reason}")]
    Unauthorized {
        /// The node the client claimed to be.
        node: NodeName,
        /// What was missing or wrong (safe to log; never contains the token).
        reason: &'static str,
    },
    /// The token database failed.
    #[error("token store {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// The sqlite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The operating system's random generator failed.
    #[error("cannot generate a token: {0}")]
    Random(String),
}

/// Node tokens, stored hashed in a sqlite file (table `tunnel_tokens`).
#[derive(Debug)]
pub struct TokenStore {
    path: String,
    conn: Mutex<Connection>,
}

impl TokenStore {
    /// Opens (creating if needed) the token table in the sqlite file at `path`.
    pub fn open(path: &Path) -> Result<Self, AuthError> {
        let display = path.display().to_string();
        let conn = super::cloud_db::open(
            path,
            "CREATE TABLE IF NOT EXISTS tunnel_tokens (
                 node TEXT PRIMARY KEY,
                 sha256 BLOB NOT NULL,
                 created_ms INTEGER NOT NULL
             )",
        )
        .map_err(|source| AuthError::Store {
            path: display.clone(),
            source,
        })?;
        Ok(TokenStore {
            path: display,
            conn: Mutex::new(conn),
        })
    }

    fn store_error(&self, source: rusqlite::Error) -> AuthError {
        AuthError::Store {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection half-updated (every
        // statement is atomic), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a token for `node`, replacing any previous one, and returns it (the only time it
    /// is ever visible).
    pub fn create(&self, node: &NodeName) -> Result<Token, AuthError> {
        let mut tokens = self.create_many(std::slice::from_ref(node))?;
        tokens
            .pop()
            .ok_or_else(|| AuthError::Random("no token generated".into()))
    }

    /// Creates tokens for many nodes in one transaction (provisioning a fleet), in order.
    pub fn create_many(&self, nodes: &[NodeName]) -> Result<Vec<Token>, AuthError> {
        let tokens = nodes
            .iter()
            .map(|_| generate_token())
            .collect::<Result<Vec<_>, _>>()?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.store_error(e))?;
        for (node, token) in nodes.iter().zip(&tokens) {
            tx.execute(
                "INSERT INTO tunnel_tokens (node, sha256, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node) DO UPDATE SET sha256 = ?2, created_ms = ?3",
                params![node.as_str(), hash_token(&token.0).as_slice(), now_ms],
            )
            .map_err(|e| self.store_error(e))?;
        }
        tx.commit().map_err(|e| self.store_error(e))?;
        Ok(tokens)
    }

    /// Removes `node`'s token; returns whether there was one.
    pub fn revoke(&self, node: &NodeName) -> Result<bool, AuthError> {
        let removed = self
            .conn()
            .execute("DELETE FROM tunnel_tokens WHERE node = ?1", [node.as_str()])
            .map_err(|e| self.store_error(e))?;
        Ok(removed > 0)
    }

    /// Checks that `presented` is `node`'s current token.
    pub fn verify(&self, node: &NodeName, presented: &str) -> Result<(), AuthError> {
        let stored: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT sha256 FROM tunnel_tokens WHERE node = ?1",
                [node.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.store_error(e))?;
        let presented = hash_token(presented);
        // Unknown nodes compare against a dummy so that timing does not reveal which nodes exist.
        let (expected, known) = match stored.as_deref().map(<[u8; 32]>::try_from) {
            Some(Ok(hash)) => (hash, true),
            _ => ([0u8; 32], false),
        };
        if constant_time_eq(&presented, &expected) && known {
            Ok(())
        } else {
            Err(AuthError::Unauthorized {
                node: node.clone(),
                reason: "unknown node or wrong token",
            })
        }
    }
}

/// 32 bytes from the operating system's generator, as `et1_` + 64 hex digits.
fn generate_token() -> Result<Token, AuthError> {
    let mut secret = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut secret)
        .map_err(|error| AuthError::Random(error.to_string()))?;
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 64);
    token.push_str(TOKEN_PREFIX);
    for byte in secret {
        token.push_str(&format!("{byte:02x}"));
    }
    Ok(Token(token))
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares without an early exit, so the time taken does not depend on where bytes differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether a (TLS-verified) client certificate names `node` among its subject alternative DNS
/// names.
pub fn certificate_names_node(cert: &CertificateDer<'_>, node: &NodeName) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(node.as_str()) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeName {
        NodeName::new(name).expect("node name")
    }

    #[test]
    fn tokens_verify_for_their_node_only_and_are_stored_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cloud.db");
        let store = TokenStore::open(&path).expect("open");
        let token = store.create(&node("edge-1")).expect("create");
        assert!(token.expose().starts_with("et1_"));
        assert_eq!(token.expose().len(), 4 + 64);
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");

        store
            .verify(&node("edge-1"), token.expose())
            .expect("valid");
        for (who, presented) in [
            ("edge-1", "et1_wrong"),
            ("edge-2", token.expose()),
            ("edge-1", ""),
        ] {
            let error = store.verify(&node(who), presented).expect_err(who);
            assert!(matches!(error, AuthError::Unauthorized { .. }), "{error}");
            assert!(!error.to_string().contains(token.expose()));
        }

        // Another process (the CLI) sees the same table; only the hash is in it.
        let raw = Connection::open(&path).expect("raw open");
        let stored: Vec<u8> = raw
            .query_row("SELECT sha256 FROM tunnel_tokens", [], |row| row.get(0))
            .expect("row");
        assert_eq!(stored, hash_token(token.expose()));
        let text: String = raw
            .query_row("SELECT hex(sha256) || node FROM tunnel_tokens", [], |row| {
                row.get(0)
            })
            .expect("row");
        assert!(!text.to_lowercase().contains(&token.expose()[4..]));
    }

    #[test]
    fn creating_again_rotates_and_revoking_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TokenStore::open(&dir.path().join("cloud.db")).expect("open");
        let first = store.create(&node("edge-1")).expect("create");
        let second = store.create(&node("edge-1")).expect("create");
        assert_ne!(first, second);
        assert!(store.verify(&node("edge-1"), first.expose()).is_err());
        store
            .verify(&node("edge-1"), second.expose())
            .expect("current");
        assert!(store.revoke(&node("edge-1")).expect("revoke"));
        assert!(!store.revoke(&node("edge-1")).expect("revoke again"));
        assert!(store.verify(&node("edge-1"), second.expose()).is_err());
    }

    #[test]
    fn many_tokens_are_created_at_once_each_for_its_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TokenStore::open(&dir.path().join("cloud.db")).expect("open");
        let nodes: Vec<NodeName> = (0..50).map(|i| node(&format!("n{i}"))).collect();
        let tokens = store.create_many(&nodes).expect("create");
        assert_eq!(tokens.len(), 50);
        for (n, token) in nodes.iter().zip(&tokens) {
            store.verify(n, token.expose()).expect("own token");
        }
        assert!(store.verify(&nodes[0], tokens[1].expose()).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn certificates_name_nodes_by_dns_subject_alternative_name() {
        let cert = rcgen::generate_simple_self_signed(vec!["edge-1".into(), "edge-1.lab".into()])
            .expect("cert");
        let der = cert.cert.der();
        assert!(certificate_names_node(der, &node("edge-1")));
        assert!(certificate_names_node(der, &node("edge-1.lab")));
        assert!(!certificate_names_node(der, &node("edge-2")));
        assert!(!certificate_names_node(
            &CertificateDer::from(vec![1, 2, 3]),
            &node("edge-1")
        ));
    }
}
