//! The Device and DeviceModel `CustomResourceDefinition`s, generated from the Rust types
//! (`kube::CustomResourceExt::crd()`), checked against the structural-schema rules and rendered
//! as the YAML committed under `crds/` (`cargo xtask gen-crds` writes it; a test fails when the
//! committed files are stale).

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::structural::{Rules, Violation, check_crd};
use super::{Device, DeviceModel};

/// The first line of every generated file.
pub const HEADER: &str =
    "# Generated from the Rust types in core/src/model by `cargo xtask gen-crds`. Do not edit.\n";

/// A generated CRD file: its name under `crds/` and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdFile {
    /// File name, e.g. `devices.yaml`.
    pub file_name: &'static str,
    /// The YAML text.
    pub yaml: String,
}

/// Why the CRDs could not be produced or written.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A generated schema breaks a structural-schema rule: the API server would refuse it.
    #[error("the generated {crd} CRD is not structural:\n{}", list(violations))]
    NotStructural {
        /// The CRD name.
        crd: String,
        /// The broken rules.
        violations: Vec<Violation>,
    },
    /// The CRD could not be serialized.
    #[error("cannot serialize the {crd} CRD: {message}")]
    Serialize {
        /// The CRD name.
        crd: String,
        /// The serializer's message.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Device CRD.
pub fn device() -> CustomResourceDefinition {
    Device::crd()
}

/// The DeviceModel CRD.
pub fn device_model() -> CustomResourceDefinition {
    DeviceModel::crd()
}

/// Both CRDs as the files committed under `crds/`, after checking them against the
/// [`Rules::Strict`] structural rules.
pub fn files() -> Result<Vec<CrdFile>, CrdError> {
    Ok(vec![
        CrdFile {
            file_name: "devices.yaml",
            yaml: render(&device())?,
        },
        CrdFile {
            file_name: "devicemodels.yaml",
            yaml: render(&device_model())?,
        },
    ])
}

/// Checks a CRD and renders it as YAML, [`HEADER`] first.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let serialize_error = |message: String| CrdError::Serialize {
        crd: name.clone(),
        message,
    };
    let json = serde_json::to_value(crd).map_err(|e| serialize_error(e.to_string()))?;
    let violations = check_crd(&json, Rules::Strict);
    if !violations.is_empty() {
        return Err(CrdError::NotStructural {
            crd: name,
            violations,
        });
    }
    let yaml = serde_saphyr::to_string(crd).map_err(|e| serialize_error(e.to_string()))?;
    Ok(format!("{HEADER}{yaml}"))
}

/// Writes [`files`] into `dir` and returns the paths written.
pub fn write_files(dir: &Path) -> Result<Vec<PathBuf>, CrdError> {
    let mut written = Vec::new();
    for file in files()? {
        let path = dir.join(file.file_name);
        std::fs::write(&path, &file.yaml).map_err(|source| CrdError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion;

    use super::*;

    fn only_version(crd: &CustomResourceDefinition) -> &CustomResourceDefinitionVersion {
        assert_eq!(crd.spec.versions.len(), 1);
        &crd.spec.versions[0]
    }

    #[test]
    fn committed_crds_are_up_to_date() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        for file in files().expect("CRDs generate") {
            let path = dir.join(file.file_name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == file.yaml,
                "crds/{} is stale or missing: run `cargo xtask gen-crds` and commit the result",
                file.file_name
            );
        }
    }

    #[test]
    fn generated_crds_are_structural_under_strict_rules() {
        for crd in [device(), device_model()] {
            let json = serde_json::to_value(&crd).expect("serializes");
            let violations = check_crd(&json, Rules::Strict);
            assert!(violations.is_empty(), "{}", list(&violations));
        }
    }

    #[test]
    fn device_crd_has_names_columns_and_status_subresource() {
        let crd = device();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("devices.devices.kubeedge.io")
        );
        assert_eq!(crd.spec.group, "devices.kubeedge.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["dev".to_owned()]));
        let version = only_version(&crd);
        assert_eq!(version.name, "v1beta1");
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        let columns: Vec<(&str, &str)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Node", ".spec.nodeName"),
                ("Model", ".spec.deviceModelRef.name"),
                ("Protocol", ".spec.protocol.protocolName"),
                ("State", ".status.state"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }

    #[test]
    fn device_model_crd_has_names_and_status_subresource() {
        let crd = device_model();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("devicemodels.devices.kubeedge.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["dm".to_owned()]));
        let version = only_version(&crd);
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
    }

    #[test]
    fn free_form_fields_are_kept_by_the_api_server() {
        let json = serde_json::to_value(device()).expect("serializes");
        let spec = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties";
        for field in [
            "/protocol/properties/configData",
            "/properties/items/properties/visitors/properties/configData",
            "/properties/items/properties/pushMethod/properties/anomalyDetection",
        ] {
            let node = json
                .pointer(&format!("{spec}{field}"))
                .unwrap_or_else(|| panic!("{field} is in the schema"));
            assert_eq!(node["type"], "object", "{field}");
            assert_eq!(
                node["x-kubernetes-preserve-unknown-fields"], true,
                "{field}"
            );
        }
    }

    #[test]
    fn rendered_yaml_reads_back_as_the_same_crd() {
        for crd in [device(), device_model()] {
            let yaml = render(&crd).expect("renders");
            assert!(yaml.starts_with(HEADER));
            let back: serde_json::Value = serde_saphyr::from_str(&yaml).expect("valid YAML");
            assert_eq!(back, serde_json::to_value(&crd).expect("serializes"));
        }
    }

    #[test]
    fn write_files_writes_both_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write_files(dir.path()).expect("writes");
        assert_eq!(written.len(), 2);
        for (path, file) in written.iter().zip(files().expect("generates")) {
            assert_eq!(std::fs::read_to_string(path).expect("reads"), file.yaml);
        }
        let err = write_files(&dir.path().join("missing")).expect_err("no such dir");
        assert!(matches!(err, CrdError::Write { .. }), "{err}");
    }
}
