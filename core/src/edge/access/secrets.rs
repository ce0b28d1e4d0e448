//! The bus's secrets in the agent's data dir: the node's spec key (`bus/spec.key`) and one
//! credentials file per client of `bus.clients` (`bus/{name}.json`, or the client's
//! `credentialsFile`), all mode 0600 in a 0700 directory.
//!
//! The agent makes what is missing at start and keeps what exists, so a client's password and
//! the spec key survive restarts; deleting a file makes a new secret (a new spec key is written
//! into every client's file). What a credentials file holds: [`BusCredentials`].

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use edgetwin_model::mac::to_hex;
use edgetwin_model::wire::spec_auth::{BusCredentials, SpecKey};

use super::config::BusConfig;
use super::policy::ClientGrant;

/// Why the bus's secrets could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds something else than what the agent writes there.
    #[error("{path}: {reason} (delete it to make a new one)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The node's bus secrets, loaded or made.
#[derive(Debug)]
pub struct NodeSecrets {
    /// The key that seals the spec messages.
    pub spec_key: SpecKey,
    /// Each client of `bus.clients` with its password, in the configuration's order.
    pub clients: Vec<ClientGrant>,
    /// Where each client's credentials file is, in the same order.
    pub files: Vec<PathBuf>,
}

/// The directory of the bus's secrets in `data_dir`.
pub fn secrets_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("bus")
}

/// Where the credentials file of the client `name` is by default.
pub fn default_credentials_file(data_dir: &Path, name: &str) -> PathBuf {
    secrets_dir(data_dir).join(format!("{name}.json"))
}

/// Loads the spec key and the credentials of every client of `bus`, making what is missing.
pub fn load_or_create(data_dir: &Path, bus: &BusConfig) -> Result<NodeSecrets, SecretsError> {
    let dir = secrets_dir(data_dir);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    let key_file = dir.join("spec.key");
    let spec_key = match fs::read_to_string(&key_file) {
        Ok(text) => SpecKey::from_hex(&text).map_err(|e| SecretsError::Unreadable {
            path: key_file.clone(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SpecKey::from_bytes(rand::random());
            write_secret(&key_file, &format!("{}\n", key.to_hex()))?;
            tracing::info!(file = %key_file.display(), "made the node's spec key");
            key
        }
        Err(e) => return Err(io(&key_file)(e)),
    };
    let mut clients = Vec::with_capacity(bus.clients.len());
    let mut files = Vec::with_capacity(bus.clients.len());
    for client in &bus.clients {
        let file = client
            .credentials_file
            .clone()
            .unwrap_or_else(|| default_credentials_file(data_dir, &client.name));
        let existing = match fs::read_to_string(&file) {
            Ok(text) => Some(BusCredentials::from_json(&text).map_err(|reason| {
                SecretsError::Unreadable {
                    path: file.clone(),
                    reason,
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&file)(e)),
        };
        let password = match &existing {
            Some(c) if c.username == client.name => c.password.clone(),
            _ => to_hex(&rand::random::<[u8; 32]>()),
        };
        let wanted = BusCredentials {
            username: client.name.clone(),
            password: password.clone(),
            spec_key: spec_key.clone(),
        };
        if existing.as_ref() != Some(&wanted) {
            write_secret(&file, &wanted.to_json())?;
            tracing::info!(client = %client.name, file = %file.display(), "wrote the bus credentials of a client");
        }
        clients.push(ClientGrant::new(client, password));
        files.push(file);
    }
    Ok(NodeSecrets {
        spec_key,
        clients,
        files,
    })
}

/// Writes `text` to `path` with mode 0600, replacing it atomically.
fn write_secret(path: &Path, text: &str) -> Result<(), SecretsError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&temporary))?;
    fs::rename(&temporary, path).map_err(io(path))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::access::config::BusClientConfig;

    fn bus(names: &[&str]) -> BusConfig {
        BusConfig {
            clients: names
                .iter()
                .map(|name| BusClientConfig {
                    name: (*name).to_owned(),
                    protocols: vec!["gpio".into()],
                    ..BusClientConfig::default()
                })
                .collect(),
            ..BusConfig::default()
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_made_once_private_and_kept_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path(), &bus(&["gpio"])).expect("made");
        let file = default_credentials_file(dir.path(), "gpio");
        assert_eq!(first.files, std::slice::from_ref(&file));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&secrets_dir(dir.path()).join("spec.key")), 0o600);
        assert_eq!(mode(&secrets_dir(dir.path())), 0o700);
        let written = BusCredentials::from_json(&fs::read_to_string(&file).expect("read"))
            .expect("a credentials file");
        assert_eq!(written.username, "gpio");
        assert_eq!(written.password, first.clients[0].password());
        assert_eq!(written.spec_key, first.spec_key);

        let again = load_or_create(dir.path(), &bus(&["gpio", "app"])).expect("loaded");
        assert_eq!(again.spec_key, first.spec_key);
        assert_eq!(again.clients[0].password(), first.clients[0].password());
        assert_ne!(again.clients[1].password(), first.clients[0].password());
    }

    #[test]
    fn a_new_spec_key_reaches_every_credentials_file_and_a_broken_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path(), &bus(&["gpio"])).expect("made");
        fs::remove_file(secrets_dir(dir.path()).join("spec.key")).expect("removed");
        let second = load_or_create(dir.path(), &bus(&["gpio"])).expect("made again");
        assert_ne!(second.spec_key, first.spec_key);
        let file = default_credentials_file(dir.path(), "gpio");
        let written = BusCredentials::from_json(&fs::read_to_string(&file).expect("read"))
            .expect("a credentials file");
        assert_eq!(written.spec_key, second.spec_key);
        assert_eq!(written.password, first.clients[0].password());

        fs::write(&file, "not json").expect("write");
        let error = load_or_create(dir.path(), &bus(&["gpio"])).expect_err("unreadable");
        assert!(error.to_string().contains("gpio.json"), "{error}");
    }
}
