//! Secrets of the database sinks (passwords, tokens): from a file or the environment, never
//! from the Device YAML, and never logged.
//!
//! Each secret has a list of variable names, edgetwin's first and KubeEdge mapper-framework's
//! last (`PASSWORD`, `TOKEN`, `USERNAME`), so that a mapper deployed like a KubeEdge mapper keeps
//! working. For every name `N`, `N_FILE` (a path, e.g. a mounted Kubernetes Secret; one trailing
//! newline is ignored) is tried before `N` itself. Secrets are read when a sink connects, so a
//! rotated file is picked up at the next reconnect.

use std::fmt;

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

/// The first of `names` that is set (each as `N_FILE`, then `N`), or `None`. An error names the
/// variable and the file that cannot be read, never a value.
pub fn lookup(names: &[&str]) -> Result<Option<Secret>, String> {
    lookup_with(names, |name| std::env::var(name).ok())
}

/// [`lookup`] with the environment given as a function (tests).
fn lookup_with(
    names: &[&str],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    for name in names {
        let file_var = format!("{name}_FILE");
        if let Some(path) = env(&file_var).filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{file_var}={path}: cannot read the file: {e}"))?;
            let value = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            return Ok(Some(Secret(value.to_owned())));
        }
        if let Some(value) = env(name) {
            return Ok(Some(Secret(value)));
        }
    }
    Ok(None)
}

/// How to set a secret, for error messages: `EDGETWIN_X (or EDGETWIN_X_FILE, or X)`.
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
        let found = lookup_with(&names, both).expect("readable");
        assert_eq!(found.as_ref().map(Secret::expose), Some("from-file"));

        let kubeedge = env(&[("PASSWORD", "kube")]);
        let found = lookup_with(&names, kubeedge).expect("set");
        assert_eq!(found.as_ref().map(Secret::expose), Some("kube"));

        assert_eq!(lookup_with(&names, env(&[])), Ok(None));
    }

    #[test]
    fn an_unreadable_file_is_named_and_secrets_are_never_printed() {
        let missing = env(&[("EDGETWIN_INFLUXDB2_TOKEN_FILE", "/nonexistent/token")]);
        let err = lookup_with(&["EDGETWIN_INFLUXDB2_TOKEN"], missing).expect_err("unreadable");
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
