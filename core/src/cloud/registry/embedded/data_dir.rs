//! The cloud's data directory, as far as the embedded registry and `edgetwin ctl` share it:
//!
//! - `registry.db` — the sqlite file (plus its `-wal` / `-shm` companions);
//! - `registry.token` — the API's bearer token, created at first start, mode 0600;
//! - `registry.url` — where the running API listens (`http://127.0.0.1:PORT`), written after
//!   the listener is bound and removed at a clean shutdown.
//!
//! `edgetwin ctl` run as the same user finds the server and its token here without flags.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Error;

/// Environment variable naming the data directory (used when `--data-dir` is not given).
pub const DATA_DIR_ENV: &str = "EDGETWIN_DATA_DIR";

/// The data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (not created yet; see [`DataDir::create`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default location: `$EDGETWIN_DATA_DIR`, else `$XDG_DATA_HOME/edgetwin`, else
    /// `$HOME/.local/share/edgetwin`, else `./edgetwin-data`.
    pub fn default_location() -> PathBuf {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env(DATA_DIR_ENV)
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("edgetwin")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/edgetwin")))
            .unwrap_or_else(|| PathBuf::from("edgetwin-data"))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry's sqlite file.
    pub fn registry_db(&self) -> PathBuf {
        self.root.join("registry.db")
    }

    /// The API token file.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("registry.token")
    }

    /// The file with the running API's URL.
    pub fn url_file(&self) -> PathBuf {
        self.root.join("registry.url")
    }

    /// Creates the directory (and parents); a new directory is private to the user (0700).
    pub fn create(&self) -> Result<(), Error> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.root).map_err(|source| Error::Io {
            path: self.root.clone(),
            source,
        })
    }

    /// The API token: read from the token file, or generated (32 random bytes, hex) and written
    /// with mode 0600 when the file does not exist. A token file that others can read is
    /// tightened to 0600, with a warning.
    pub fn load_or_create_token(&self) -> Result<String, Error> {
        let path = self.token_file();
        let token = hex(&rand::random::<[u8; 32]>());
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(format!("{token}\n").as_bytes())
                    .map_err(|source| Error::Io {
                        path: path.clone(),
                        source,
                    })?;
                tracing::info!(path = %path.display(), "created the registry API token");
                Ok(token)
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                self.tighten_token_permissions()?;
                self.read_token()
            }
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// The API token from the token file.
    pub fn read_token(&self) -> Result<String, Error> {
        let path = self.token_file();
        let text = fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(Error::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the token file is empty",
                ),
            });
        }
        Ok(token)
    }

    /// Writes the URL of the running API (atomically: a reader sees the old or the new file).
    pub fn write_url(&self, url: &str) -> Result<(), Error> {
        let path = self.url_file();
        let temp = self.root.join(".registry.url.tmp");
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        fs::write(&temp, format!("{url}\n")).map_err(io)?;
        fs::rename(&temp, &path).map_err(io)
    }

    /// The URL of the running API, if it wrote one.
    pub fn read_url(&self) -> Result<String, Error> {
        let path = self.url_file();
        fs::read_to_string(&path)
            .map(|text| text.trim().to_owned())
            .map_err(|source| Error::Io { path, source })
    }

    /// Removes the URL file (at shutdown). A missing file is fine.
    pub fn remove_url(&self) {
        if let Err(err) = fs::remove_file(self.url_file())
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.url_file().display(), error = %err, "cannot remove the URL file");
        }
    }

    #[cfg(unix)]
    fn tighten_token_permissions(&self) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.token_file();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the token file was readable by others; setting it to 0600");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn tighten_token_permissions(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_once_private_and_then_reused() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = DataDir::new(temp.path().join("data"));
        dir.create().expect("create");
        let token = dir.load_or_create_token().expect("token");
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(dir.load_or_create_token().expect("again"), token);
        assert_eq!(dir.read_token().expect("read"), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&dir.token_file()), 0o600);
            assert_eq!(mode(dir.root()), 0o700);
            fs::set_permissions(dir.token_file(), fs::Permissions::from_mode(0o644))
                .expect("chmod");
            assert_eq!(dir.load_or_create_token().expect("tightened"), token);
            assert_eq!(mode(&dir.token_file()), 0o600);
        }
    }

    #[test]
    fn the_url_file_round_trips_and_missing_files_are_clear_errors() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = DataDir::new(temp.path());
        let err = dir.read_url().expect_err("no url yet");
        assert!(err.to_string().contains("registry.url"), "{err}");
        dir.write_url("http://127.0.0.1:1234").expect("write");
        assert_eq!(dir.read_url().expect("read"), "http://127.0.0.1:1234");
        dir.remove_url();
        assert!(dir.read_url().is_err());
        dir.remove_url();
        fs::write(dir.token_file(), "\n").expect("write");
        assert!(
            dir.read_token()
                .expect_err("empty")
                .to_string()
                .contains("empty")
        );
    }
}
