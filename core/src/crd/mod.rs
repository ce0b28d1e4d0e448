//! The Device and DeviceModel custom resources for kube-rs ([`resource`]) and their
//! `CustomResourceDefinition`s, generated from the model's types
//! (`kube::CustomResourceExt::crd()`), checked against the structural-schema rules
//! ([`structural`]) and rendered as the YAML committed under `crds/` (`cargo xtask gen-crds`
//! writes it; a test fails when the committed files are stale).

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub mod resource;
pub mod structural;

use resource::{KubeDevice, KubeDeviceModel};
use structural::{Rules, Violation, check_crd};

/// The first line of every generated file.
pub const HEADER: &str = "# Generated from the Rust types in model/src/devices by `cargo xtask gen-crds`. Do not edit.\n";

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
    titled(KubeDevice::crd(), "Device")
}

/// The DeviceModel CRD.
pub fn device_model() -> CustomResourceDefinition {
    titled(KubeDeviceModel::crd(), "DeviceModel")
}

/// The schema's title is the Rust type's name: the kind's, not the wrapper's.
fn titled(mut crd: CustomResourceDefinition, kind: &str) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.title = Some(kind.to_owned());
        }
    }
    crd
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

/// The schema as `#[derive(CustomResource)]` will render it inside the Device CRD, checked against
/// the Kubernetes structural-schema rules that apply to this subtree.
#[cfg(test)]
mod crd_schema_tests {
    use kube::core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
    use schemars::generate::SchemaSettings;
    use schemars::transform::AddNullable;
    use serde_json::Value as Json;

    use edgetwin_model::pipeline::PipelineSpec;

    /// The settings kube-derive 5 uses for CRD schemas.
    fn crd_schema() -> Json {
        let generator = SchemaSettings::openapi3()
            .with(|s| {
                s.inline_subschemas = true;
                s.meta_schema = None;
            })
            .with_transform(AddNullable::default())
            .with_transform(StructuralSchemaRewriter)
            .with_transform(OptionalEnum)
            .with_transform(OptionalIntOrString)
            .into_generator();
        generator.into_root_schema_for::<PipelineSpec>().to_value()
    }

    /// Every violation of the structural rules below `path`.
    fn violations(node: &Json, path: &str, found: &mut Vec<String>) {
        let Some(object) = node.as_object() else {
            found.push(format!("{path}: not a schema object"));
            return;
        };
        let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true));
        if !object.contains_key("type") && !int_or_string {
            found.push(format!("{path}: no type"));
        }
        for keyword in [
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "definitions",
            "$defs",
        ] {
            if object.contains_key(keyword) {
                found.push(format!("{path}: uses {keyword}"));
            }
        }
        if object.contains_key("properties") && object.contains_key("additionalProperties") {
            found.push(format!("{path}: both properties and additionalProperties"));
        }
        if let Some(properties) = object.get("properties").and_then(Json::as_object) {
            for (name, child) in properties {
                violations(child, &format!("{path}.{name}"), found);
            }
        }
        for keyword in ["items", "additionalProperties"] {
            if let Some(child) = object.get(keyword).filter(|c| c.is_object()) {
                violations(child, &format!("{path}.{keyword}"), found);
            }
        }
    }

    #[test]
    fn the_pipeline_schema_is_structural() {
        let schema = crd_schema();
        let mut found = Vec::new();
        violations(&schema, "pipeline", &mut found);
        assert!(found.is_empty(), "{found:#?}\n{schema:#}");
    }

    #[test]
    fn the_schema_has_the_documented_shape() {
        let schema = crd_schema();
        assert_eq!(schema["type"], "array");
        let step = &schema["items"];
        assert_eq!(step["type"], "object");
        let kinds: Vec<&str> = step["properties"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            kinds,
            [
                "clamp",
                "deadband",
                "map",
                "rateLimit",
                "round",
                "scale",
                "window"
            ]
        );
        let window = &step["properties"]["window"]["properties"];
        assert_eq!(window["period"]["x-kubernetes-int-or-string"], true);
        assert_eq!(
            window["aggregate"]["enum"],
            serde_json::json!(["min", "max", "mean", "sum", "last"])
        );
        assert_eq!(
            step["properties"]["map"]["additionalProperties"]["type"],
            "string"
        );
        // Ranges the API server can check before the pipeline is built.
        assert_eq!(window["size"]["minimum"], 1);
        assert_eq!(window["size"]["maximum"], 100_000);
        assert_eq!(
            step["properties"]["round"]["properties"]["decimals"]["maximum"],
            15
        );
    }
}
