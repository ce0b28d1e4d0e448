//! `edgetwin new mapper NAME`: writes a new mapper crate (a driver skeleton with its
//! configuration types, a binary, a Device/DeviceModel example and a test that runs the
//! conformance suite) that builds and passes its tests as generated.
//!
//! The templates are files under `core/templates/mapper/`, embedded at build time; the SDK
//! depends on this crate, so the scaffolding cannot use the SDK and only writes text.

use std::path::{Path, PathBuf};

/// One template: its path in the generated crate and its text.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/mapper/Cargo.toml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../templates/mapper/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/mapper/src/lib.rs.tmpl"),
    ),
    (
        "src/main.rs",
        include_str!("../templates/mapper/src/main.rs.tmpl"),
    ),
    (
        "resources/device.yaml",
        include_str!("../templates/mapper/resources/device.yaml.tmpl"),
    ),
    (
        "tests/conformance.rs",
        include_str!("../templates/mapper/tests/conformance.rs.tmpl"),
    ),
];

/// The SDK of the checkout this binary was built from.
pub const DEFAULT_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// Why a mapper crate could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a protocol and crate name.
    #[error(
        "invalid mapper name {0:?}: use lower-case letters, digits and single dashes, \
         starting with a letter (e.g. `acme-plc`)"
    )]
    InvalidName(String),
    /// The target directory exists; nothing is overwritten.
    #[error("{0} already exists; choose another name or --dir")]
    Exists(PathBuf),
    /// The SDK path has no `Cargo.toml` of `edgetwin-sdk`.
    #[error(
        "{0} is not the edgetwin-sdk crate (no Cargo.toml naming edgetwin-sdk); pass --sdk-path"
    )]
    NoSdk(PathBuf),
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The names derived from a mapper name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The protocol name and crate prefix, e.g. `acme-plc`.
    pub name: String,
    /// The library crate identifier, e.g. `acme_plc_mapper`.
    pub crate_ident: String,
    /// The type prefix, e.g. `AcmePlc` (`AcmePlcDriver`).
    pub type_prefix: String,
}

impl Names {
    /// Checks `name` and derives the identifiers.
    pub fn new(name: &str) -> Result<Names, ScaffoldError> {
        let valid = name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && !name.contains("--")
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ScaffoldError::InvalidName(name.to_owned()));
        }
        let type_prefix = name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Names {
            name: name.to_owned(),
            crate_ident: format!("{}_mapper", name.replace('-', "_")),
            type_prefix,
        })
    }

    /// Fills a template's placeholders.
    fn render(&self, template: &str, sdk_path: &str) -> String {
        template
            .replace("{{name}}", &self.name)
            .replace("{{crate}}", &self.crate_ident)
            .replace("{{Type}}", &self.type_prefix)
            .replace("{{sdk_path}}", sdk_path)
    }
}

/// Writes the crate `{name}-mapper` into `parent`, depending on the SDK at `sdk_path`.
/// Returns the crate directory.
pub fn new_mapper(name: &str, parent: &Path, sdk_path: &Path) -> Result<PathBuf, ScaffoldError> {
    let names = Names::new(name)?;
    let sdk_manifest = sdk_path.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&sdk_manifest)
        .is_ok_and(|text| text.contains("name = \"edgetwin-sdk\""));
    if !is_sdk {
        return Err(ScaffoldError::NoSdk(sdk_path.to_owned()));
    }
    let sdk_path = sdk_path
        .canonicalize()
        .map_err(|source| ScaffoldError::Io {
            path: sdk_path.to_owned(),
            source,
        })?;
    // TOML basic strings: a Windows-style path or a quote would need escaping.
    let sdk_text = sdk_path.display().to_string().replace('\\', "/");
    let root = parent.join(format!("{name}-mapper"));
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    for (relative, template) in TEMPLATES {
        let path = root.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ScaffoldError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, names.render(template, &sdk_text))
            .map_err(|source| ScaffoldError::Io { path, source })?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        let names = Names::new("acme-plc2").expect("valid");
        assert_eq!(names.crate_ident, "acme_plc2_mapper");
        assert_eq!(names.type_prefix, "AcmePlc2");
        for bad in [
            "",
            "Acme",
            "1plc",
            "plc-",
            "a--b",
            "a_b",
            "a b",
            &"x".repeat(41),
        ] {
            assert!(
                matches!(Names::new(bad), Err(ScaffoldError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let names = Names::new("demo").expect("valid");
        for (path, template) in TEMPLATES {
            let text = names.render(template, "/sdk");
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
        }
    }

    #[test]
    fn the_crate_is_written_once_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sdk = Path::new(DEFAULT_SDK_PATH);
        let root = new_mapper("demo", dir.path(), sdk).expect("written");
        assert_eq!(root, dir.path().join("demo-mapper"));
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"demo-mapper\""));
        let sdk_abs = sdk.canonicalize().expect("sdk exists");
        assert!(manifest.contains(&format!("path = \"{}\"", sdk_abs.display())));
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib");
        assert!(lib.contains("pub struct DemoDriver"));
        assert!(lib.contains("const PROTOCOL: &'static str = \"demo\";"));
        assert!(root.join("tests/conformance.rs").is_file());
        assert!(root.join("resources/device.yaml").is_file());

        let again = new_mapper("demo", dir.path(), sdk).expect_err("exists");
        assert!(matches!(again, ScaffoldError::Exists(_)));
        let no_sdk = new_mapper("other", dir.path(), dir.path()).expect_err("not the sdk");
        assert!(matches!(no_sdk, ScaffoldError::NoSdk(_)));
    }
}
