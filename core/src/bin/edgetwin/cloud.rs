//! `edgetwin cloud token …`: node tokens for the tunnel (`edgetwin_core::tunnel::auth`).

use std::path::Path;

use anyhow::{Context, Result};
use edgetwin_core::tunnel::NodeName;
use edgetwin_core::tunnel::auth::TokenStore;

/// Creates (or replaces) `node`'s token in `db` and prints it on stdout, alone on its line, so
/// that `TOKEN=$(edgetwin cloud token create edge-1)` works.
pub fn create_token(node: &str, db: &Path) -> Result<()> {
    let node = NodeName::new(node)?;
    let store = TokenStore::open(db)?;
    let token = store
        .create(&node)
        .with_context(|| format!("creating a token for node {node}"))?;
    println!("{}", token.expose());
    eprintln!(
        "token for node {node} stored (hashed) in {}; it replaces any previous one and is shown only this once",
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
