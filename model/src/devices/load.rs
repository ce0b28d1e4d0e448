//! Parsing KubeEdge YAML: one or many `---` documents of a text, each dispatched by `apiVersion` /
//! `kind` into a [`Manifest`]. Reading files and directories is the caller's (the edge agent's,
//! `edgetwin`'s, the SDK's); they report what they cannot read as [`LoadError::Read`].
//!
//! Errors name the file, the line (and column and field path when known). Helm templates, which
//! are not YAML until rendered, are named as such; v1alpha2 objects point at `edgetwin convert`.

use std::path::Path;

pub use super::load_error::{LoadError, Location};
use super::yaml::{Chunk, TypeMeta, documents};
use super::{API_VERSION, DEVICE_KIND, DEVICE_MODEL_KIND, Device, DeviceModel, GROUP};
use crate::limits;

/// A Device or a DeviceModel.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    /// A Device.
    Device(Device),
    /// A DeviceModel.
    DeviceModel(DeviceModel),
}

impl Manifest {
    /// `kind` of the object.
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Device(_) => DEVICE_KIND,
            Manifest::DeviceModel(_) => DEVICE_MODEL_KIND,
        }
    }

    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        match self {
            Manifest::Device(d) => d.name(),
            Manifest::DeviceModel(m) => m.name(),
        }
    }

    /// `metadata.namespace` of the object (`default` when missing).
    pub fn namespace(&self) -> &str {
        match self {
            Manifest::Device(d) => d.namespace(),
            Manifest::DeviceModel(m) => m.namespace(),
        }
    }
}

impl serde::Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self {
            Manifest::Device(d) => d.serialize(ser),
            Manifest::DeviceModel(m) => m.serialize(ser),
        }
    }
}

/// A loaded object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The object.
    pub manifest: Manifest,
    /// Where its document starts.
    pub location: Location,
}

/// Loads every document of a YAML text. `source` names the text in errors (a path, `<stdin>`).
pub fn from_str(text: &str, source: &str) -> Result<Vec<Document>, LoadError> {
    documents(text)
        .iter()
        .map(|chunk| load_document(chunk, source))
        .collect()
}

/// Whether a directory entry is one [`from_str`] should load: a `*.yaml` or `*.yml` file name.
/// Callers that read a directory load these files in file-name order.
pub fn is_manifest_file_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// What a document declares itself to be.
pub(crate) enum DeclaredKind {
    /// A v1beta1 Device or DeviceModel: `kind` is one of ours.
    V1beta1(&'static str),
    /// A Device or DeviceModel of another version of our group.
    OtherVersion {
        api_version: String,
        kind: &'static str,
    },
}

/// Reads `apiVersion` / `kind` and sorts the document into v1beta1, other versions of
/// `devices.kubeedge.io`, or an error for anything else.
pub(crate) fn declared_kind(chunk: &Chunk<'_>, source: &str) -> Result<DeclaredKind, LoadError> {
    let at = chunk.location(source);
    let meta: TypeMeta = chunk.parse(source)?;
    let api_version = meta.api_version.ok_or(LoadError::MissingTypeMeta {
        at: at.clone(),
        field: "apiVersion",
    })?;
    let kind = meta.kind.ok_or(LoadError::MissingTypeMeta {
        at: at.clone(),
        field: "kind",
    })?;
    let ours = [DEVICE_KIND, DEVICE_MODEL_KIND]
        .into_iter()
        .find(|k| *k == kind);
    let in_group = api_version
        .split_once('/')
        .is_some_and(|(group, _)| group == GROUP);
    match ours {
        Some(kind) if api_version == API_VERSION => Ok(DeclaredKind::V1beta1(kind)),
        Some(kind) if in_group => Ok(DeclaredKind::OtherVersion { api_version, kind }),
        _ => Err(LoadError::UnknownKind {
            at,
            api_version,
            kind,
        }),
    }
}

/// Parses a v1beta1 document of the given kind and checks it has a name.
pub(crate) fn parse_v1beta1(
    chunk: &Chunk<'_>,
    source: &str,
    kind: &'static str,
) -> Result<Manifest, LoadError> {
    let manifest = if kind == DEVICE_KIND {
        Manifest::Device(chunk.parse(source)?)
    } else {
        Manifest::DeviceModel(chunk.parse(source)?)
    };
    if manifest.name().is_empty() {
        return Err(LoadError::MissingName {
            at: chunk.location(source),
            kind,
        });
    }
    let size = match &manifest {
        Manifest::Device(device) => limits::json_size(device),
        Manifest::DeviceModel(model) => limits::json_size(model),
    };
    limits::check(
        || format!("{kind} {:?}", manifest.name()),
        size,
        limits::MAX_OBJECT_BYTES,
    )
    .map_err(|too_large| LoadError::TooLarge {
        at: chunk.location(source),
        too_large,
    })?;
    Ok(manifest)
}

fn load_document(chunk: &Chunk<'_>, source: &str) -> Result<Document, LoadError> {
    match declared_kind(chunk, source)? {
        DeclaredKind::V1beta1(kind) => Ok(Document {
            manifest: parse_v1beta1(chunk, source, kind)?,
            location: chunk.location(source),
        }),
        DeclaredKind::OtherVersion { api_version, kind } => Err(LoadError::OldApiVersion {
            at: chunk.location(source),
            api_version,
            kind: kind.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::PropertyType;
    use edgetwin_testkit::fixtures::{files_starting_with, kubeedge_dir};

    const MODEL_AND_DEVICE: &str = "\
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: thermo
spec:
  protocol: modbus
  properties:
    - name: temperature
      type: FLOAT
      accessMode: ReadOnly
      minimum: \"0\"
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: thermo-1
  namespace: plant
spec:
  deviceModelRef:
    name: thermo
  protocol:
    protocolName: modbus
    configData:
  properties:
    - name: temperature
      collectCycle: 1000
      visitors:
        protocolName: modbus
        configData: {register: InputRegister, offset: 2}
";

    #[test]
    fn loads_a_model_and_a_device_from_one_stream() {
        let docs = from_str(MODEL_AND_DEVICE, "both.yaml").expect("loads");
        assert_eq!(docs.len(), 2);
        let Manifest::DeviceModel(model) = &docs[0].manifest else {
            panic!("first is the model");
        };
        assert_eq!(
            model.property("temperature").map(|p| p.property_type),
            Some(PropertyType::Float)
        );
        let Manifest::Device(device) = &docs[1].manifest else {
            panic!("second is the device");
        };
        assert_eq!(docs[1].location.line, 13);
        assert_eq!(device.device_id(), "plant/thermo-1");
        // `configData:` with nothing under it is null, i.e. absent.
        assert_eq!(
            device.spec.protocol.as_ref().map(|p| &p.config_data),
            Some(&None)
        );
        let visitor = device.spec.properties[0]
            .visitors
            .as_ref()
            .expect("visitor");
        let config = visitor.config_data.as_ref().expect("config");
        assert_eq!(config["offset"], 2);
    }

    #[test]
    fn wrong_field_types_name_file_line_and_path() {
        let text = MODEL_AND_DEVICE.replace("collectCycle: 1000", "collectCycle: often");
        let err = from_str(&text, "both.yaml").expect_err("bad cycle");
        assert!(
            err.to_string()
                .starts_with("both.yaml:26:21: spec.properties[0].collectCycle: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_enum_values_are_errors() {
        let text = MODEL_AND_DEVICE.replace("type: FLOAT", "type: DECIMAL");
        let err = from_str(&text, "m.yaml").expect_err("bad type");
        let message = err.to_string();
        assert!(
            message.starts_with("m.yaml:9:13: spec.properties[0].type: "),
            "{message}"
        );
    }

    #[test]
    fn old_versions_other_kinds_and_missing_fields_are_clear_errors() {
        let old = "apiVersion: devices.kubeedge.io/v1alpha2\nkind: Device\nmetadata: {name: a}\nspec: {}\n";
        let err = from_str(old, "old.yaml").expect_err("v1alpha2");
        assert!(matches!(err, LoadError::OldApiVersion { .. }));
        assert!(
            err.to_string()
                .contains("convert it with `edgetwin convert -f old.yaml`"),
            "{err}"
        );

        let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let err = from_str(other, "cm.yaml").expect_err("ConfigMap");
        assert_eq!(
            err.to_string(),
            "cm.yaml:1: ConfigMap v1 is not a devices.kubeedge.io/v1beta1 Device or DeviceModel"
        );

        let no_kind = "---\napiVersion: devices.kubeedge.io/v1beta1\n";
        let err = from_str(no_kind, "k.yaml").expect_err("no kind");
        assert_eq!(err.to_string(), "k.yaml:2: the document has no kind");

        let no_name =
            "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\nmetadata: {}\nspec: {}\n";
        let err = from_str(no_name, "n.yaml").expect_err("no name");
        assert_eq!(
            err.to_string(),
            "n.yaml:1: the DeviceModel has no metadata.name"
        );
    }

    /// A file's documents (reading is the caller's business; tests read their fixtures).
    fn from_file(path: &Path) -> Result<Vec<Document>, LoadError> {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        from_str(&text, &path.display().to_string())
    }

    #[test]
    fn manifest_files_are_yaml_and_yml_files() {
        assert!(is_manifest_file_name(Path::new("dir/a-model.yaml")));
        assert!(is_manifest_file_name(Path::new("b-device.yml")));
        assert!(!is_manifest_file_name(Path::new("notes.txt")));
        assert!(!is_manifest_file_name(Path::new("yaml")));
    }

    #[test]
    fn manifests_serialize_back_to_loadable_yaml() {
        let docs = from_str(MODEL_AND_DEVICE, "both.yaml").expect("loads");
        let manifests: Vec<_> = docs.iter().map(|d| d.manifest.clone()).collect();
        let yaml = crate::devices::yaml::to_yaml_stream(&manifests).expect("serializes");
        let again = from_str(&yaml, "again.yaml").expect("reloads");
        let again: Vec<_> = again.into_iter().map(|d| d.manifest).collect();
        assert_eq!(again, manifests);
    }

    #[test]
    fn the_traffic_light_fixture_loads_and_fits_its_model() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traffic-light.yaml");
        let docs = from_file(&path).expect("loads");
        let [model, device] = &docs[..] else {
            panic!("a model and a device, got {docs:?}");
        };
        let (Manifest::DeviceModel(model), Manifest::Device(device)) =
            (&model.manifest, &device.manifest)
        else {
            panic!("model first, then device");
        };
        assert!(model.spec.problems().is_empty());
        assert_eq!(device.check_against(model), []);
        assert_eq!(device.device_id(), "default/traffic-light-01");
        let red = device.property("red").expect("red");
        assert_eq!(
            red.collect_cycle(),
            Some(std::time::Duration::from_millis(500))
        );
        let cycles = model.property("cycles").expect("cycles");
        assert!(cycles.check_value("-1").is_err());
        assert!(cycles.check_desired("3").is_err());
    }

    #[test]
    fn every_kubeedge_v1beta1_sample_loads_or_fails_clearly() {
        let Some(dir) = kubeedge_dir("samples", "every_kubeedge_v1beta1_sample_loads") else {
            return;
        };
        let samples = files_starting_with(&dir, "v1beta1__");
        assert_eq!(samples.len(), 12, "the fixture set changed");
        let mut loaded = 0;
        for path in &samples {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let result = from_file(path);
            if name.contains("helm-template") {
                let err = result.expect_err("a Helm template is not YAML");
                assert!(matches!(err, LoadError::Template { .. }), "{name}: {err}");
                let at = err.location().expect("has a location");
                assert!(at.source.ends_with(name) && at.line > 0, "{err}");
            } else if name == "v1beta1__mqtt__mqttdevice-instance.yaml" {
                // Upstream-invalid: the first line is at column 0, the rest indented by 3.
                let err = result.expect_err("invalid YAML");
                assert!(matches!(err, LoadError::Yaml { .. }), "{name}: {err}");
                assert!(
                    err.to_string()
                        .starts_with(&format!("{}:2:", path.display())),
                    "{err}"
                );
            } else {
                let docs = result.unwrap_or_else(|e| panic!("{name} does not load: {e}"));
                assert_eq!(docs.len(), 1, "{name}");
                loaded += 1;
            }
        }
        assert_eq!(loaded, 9);
    }

    #[test]
    fn kubeedge_v1beta1_samples_keep_their_values() {
        let Some(dir) = kubeedge_dir("samples", "kubeedge_v1beta1_samples_keep_their_values")
        else {
            return;
        };
        let load_one = |name: &str| {
            let mut docs = from_file(&dir.join(name)).expect("loads");
            docs.remove(0).manifest
        };
        let Manifest::Device(device) = load_one("v1beta1__modbus__temperature-instance.yaml")
        else {
            panic!("a Device");
        };
        assert_eq!(device.node_name(), Some("kind-worker"));
        let switch = device.property("temperature-switch").expect("property");
        assert_eq!(switch.desired.as_ref().map(|d| d.value.as_str()), Some("1"));
        assert_eq!(
            switch.collect_cycle(),
            Some(std::time::Duration::from_secs(10))
        );
        let config = device
            .spec
            .protocol
            .as_ref()
            .and_then(|p| p.config_data.as_ref());
        assert_eq!(
            config.map(|c| c["port"].clone()),
            Some(serde_json::json!("5502"))
        );

        let Manifest::DeviceModel(model) = load_one("v1beta1__modbus__temperature-model.yaml")
        else {
            panic!("a DeviceModel");
        };
        let temperature = model.property("temperature").expect("property");
        assert!(temperature.check_value("100.0").is_ok());
        assert!(temperature.check_value("100.5").is_err());

        let Manifest::Device(vled) = load_one("v1beta1__virtual-led__vled-instance.yaml") else {
            panic!("a Device");
        };
        let status = vled.status.as_ref().expect("status");
        let twin = status.twin("status").expect("twin");
        assert_eq!(
            twin.observed_desired.as_ref().map(|d| d.value.as_str()),
            Some("100")
        );
        // 1000000000 is nanoseconds: one second.
        assert_eq!(
            vled.property("status").and_then(|p| p.report_cycle()),
            Some(std::time::Duration::from_secs(1))
        );
    }

    #[test]
    fn an_object_larger_than_the_edge_takes_is_an_error_naming_the_limit() {
        let yaml = format!(
            "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata:\n  name: big\n  annotations:\n    note: \"{}\"\nspec: {{}}\n",
            "a".repeat(crate::limits::MAX_OBJECT_BYTES)
        );
        let error = from_str(&yaml, "big.yaml").expect_err("too large");
        assert!(matches!(error, LoadError::TooLarge { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with("big.yaml")
                && text.contains("Device \"big\"")
                && text.contains("262144"),
            "{text}"
        );
    }
}
