//! `edgetwin cloud token …`: node tokens for the tunnel (`edgetwin_core::tunnel::auth`).

use std::path::Path;

use anyhow::{Context, Result};
use edgetwin_core::tunnel::NodeName;
use edgetwin_core::tunnel::auth::TokenStore;

/// Creates (or replaces) the nodes' tokens in `db` and prints them on stdout: the token alone on
/// its line for one node (so that `TOKEN=$(edgetwin cloud token create edge-1)` works), `NODE
/// TOKEN` lines for several.
pub fn create_tokens(nodes: &[String], db: &Path) -> Result<()> {
    let nodes = nodes
        .iter()
        .map(|node| NodeName::new(node))
        .collect::<Result<Vec<_>, _>>()?;
    let store = TokenStore::open(db)?;
    let tokens = store.create_many(&nodes).context("creating node tokens")?;
    match (nodes.as_slice(), tokens.as_slice()) {
        ([_], [token]) => println!("{}", token.expose()),
        _ => {
            for (node, token) in nodes.iter().zip(&tokens) {
                println!("{node} {}", token.expose());
            }
        }
    }
    eprintln!(
        "{} token(s) stored (hashed) in {}; each replaces the node's previous one and is shown only this once",
        tokens.len(),
        db.display()
    );
    Ok(())
}

/// Removes `node`'s token from `db`.
pub fn revoke_token(node: &str, db: &Path) -> Result<()> {
    let node = NodeName::new(node)?;
    let store = TokenStore::open(db)?;
    if store.revoke(&node)? {
        eprintln!("token of node {node} revoked");
    } else {
        eprintln!("node {node} had no token; nothing to revoke");
    }
    Ok(())
}
