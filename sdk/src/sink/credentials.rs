//! Secrets of the database sinks (passwords, tokens): from a file or the environment, never
//! from the Device YAML, and never logged.
//!
//! Each secret has a list of variable names, edgetwin's first and KubeEdge mapper-framework's
//! last (`PASSWORD`, `TOKEN`, `USERNAME`), so that a mapper deployed like a KubeEdge mapper keeps
//! working. For every name `N`, in order: the file `N` in the mapper's secrets directory
//! (`--secrets-dir`, e.g. a mounted Kubernetes Secret), the file named by `N_FILE`, then the
//! variable `N` itself (one trailing newline of a file is ignored). Secrets are read when a sink
//! connects, so a rotated file is picked up at the next reconnect.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A secret value. Its `Debug` never shows it (and it has no `Display`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the sinks of a mapper find their secrets. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    dir: Option<Arc<Path>>,
}

impl Secrets {
    /// Secrets from `dir` (if any), then the environment.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir: dir.map(Arc::from),
        }
    }

    /// The first of `names` that is set, or `None`. An error names the file that cannot be read,
    /// never a value.
    pub fn lookup(&self, names: &[&str]) -> Result<Option<Secret>, String> {
        lookup_with(self.dir.as_deref(), names, |name| std::env::var(name).ok())
    }
}

/// [`Secrets::lookup`] with the environment given as a function (tests).
fn lookup_with(
    dir: Option<&Path>,
    names: &[&str],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    for name in names {
        if let Some(file) = dir.map(|d| d.join(name)).filter(|f| f.exists()) {
            return read(&file, &format!("{}", file.display())).map(Some);
        }
        let file_var = format!("{name}_FILE");
        if let Some(path) = env(&file_var).filter(|p| !p.is_empty()) {
            return read(Path::new(&path), &format!("{file_var}={path}")).map(Some);
        }
        if let Some(value) = env(name) {
            return Ok(Some(Secret(value)));
        }
    }
    Ok(None)
}

/// A secret file's content without one trailing newline.
fn read(file: &Path, named: &str) -> Result<Secret, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("{named}: cannot read the file: {e}"))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(Secret(value.to_owned()))
}

/// How to set a secret, for error messages: `EDGETWIN_X or EDGETWIN_X_FILE, or X`.
pub fn how_to_set(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [first, rest @ ..] => {
            let mut text = format!("{first} or {first}_FILE");
            for name in rest {
                text.push_str(&format!(", or {name}"));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn files_come_before_variables_and_edgetwin_names_before_kubeedge_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").expect("written");
        let names = ["EDGETWIN_REDIS_PASSWORD", "PASSWORD"];
        let path = file.to_string_lossy().to_string();

        let both = env(&[
            ("EDGETWIN_REDIS_PASSWORD_FILE", &path),
            ("EDGETWIN_REDIS_PASSWORD", "from-var"),
        ]);
        let found = lookup_with(None, &names, both).expect("readable");
        assert_eq!(found.as_ref().map(Secret::expose), Some("from-file"));

        let kubeedge = env(&[("PASSWORD", "kube")]);
        let found = lookup_with(None, &names, kubeedge).expect("set");
        assert_eq!(found.as_ref().map(Secret::expose), Some("kube"));

        assert_eq!(lookup_with(None, &names, env(&[])), Ok(None));

        // The secrets directory comes first.
        std::fs::write(dir.path().join("EDGETWIN_REDIS_PASSWORD"), "from-dir\r\n")
            .expect("written");
        let found =
            lookup_with(Some(dir.path()), &names, env(&[("PASSWORD", "kube")])).expect("readable");
        assert_eq!(found.as_ref().map(Secret::expose), Some("from-dir"));
    }

    #[test]
    fn an_unreadable_file_is_named_and_secrets_are_never_printed() {
        let missing = env(&[("EDGETWIN_INFLUXDB2_TOKEN_FILE", "/nonexistent/token")]);
        let err =
            lookup_with(None, &["EDGETWIN_INFLUXDB2_TOKEN"], missing).expect_err("unreadable");
        assert!(
            err.starts_with("EDGETWIN_INFLUXDB2_TOKEN_FILE=/nonexistent/token: cannot read"),
            "{err}"
        );
        let secret = Secret("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(
            how_to_set(&["EDGETWIN_MYSQL_PASSWORD", "PASSWORD"]),
            "EDGETWIN_MYSQL_PASSWORD or EDGETWIN_MYSQL_PASSWORD_FILE, or PASSWORD"
        );
    }
}
