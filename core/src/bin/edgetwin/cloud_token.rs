//! `edgetwin cloud token …`: node tokens for the tunnel (`edgetwin_core::tunnel::auth`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use edgetwin_core::cloud::config::CloudConfig;
use edgetwin_core::tunnel::NodeName;
use edgetwin_core::tunnel::auth::TokenStore;

/// The token database: `db` itself, else `data_dir/cloud.db`, else the `cloud.db` of the
/// configuration file's `dataDir` (or of the default configuration), i.e. where
/// `edgetwin cloud` with the same configuration reads the tokens.
pub fn database(
    db: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<PathBuf> {
    if let Some(db) = db {
        return Ok(db);
    }
    let mut cloud = match config {
        Some(path) => CloudConfig::load(&path)?,
        None => CloudConfig::default(),
    };
    if let Some(dir) = data_dir {
        cloud.data_dir = dir;
    }
    Ok(cloud.cloud_db())
}

/// Creates (or replaces) the nodes' tokens in `db` and prints them on stdout: the token alone on
/// its line for one node (so that `TOKEN=$(edgetwin cloud token create edge-1)` works), `NODE
/// TOKEN` lines for several.
pub fn create_tokens(nodes: &[String], db: &Path) -> Result<()> {
    let nodes = nodes
        .iter()
        .map(|node| NodeName::new(node))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(dir) = db.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.is_dir()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        eprintln!("created the directory {}", dir.display());
    }
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
    if !db.is_file() {
        bail!(
            "no token database at {}: nothing to revoke (--db, --data-dir or --config name the cloud's)",
            db.display()
        );
    }
    let store = TokenStore::open(db)?;
    if store.revoke(&node)? {
        eprintln!("token of node {node} revoked");
    } else {
        eprintln!("node {node} had no token; nothing to revoke");
    }
    Ok(())
}
