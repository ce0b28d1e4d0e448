//! Validation on write, with Kubernetes-style field paths and messages.
//!
//! Like the API server with the generated CRD schema, the embedded registry rejects objects that
//! do not parse into the typed model. On top of that (an admission check Kubernetes would need a
//! webhook for) it checks a Device against its DeviceModel: every property must be in the model
//! and every desired value must be valid for the property's type, limits and access mode.
//!
//! Sizes follow `edgetwin_model::limits`, so that nothing accepted here is refused further on: a
//! Device (as the edge gets it, without status) and a DeviceModel are at most
//! [`MAX_OBJECT_BYTES`] of JSON, a desired value at most [`MAX_VALUE_BYTES`]. Labels and
//! annotations are checked as the API server checks them.
//!
//! A Device may name a DeviceModel that does not exist (yet): Kubernetes accepts such dangling
//! references, and applying a directory must not depend on file order. The write then succeeds
//! with a warning, and its desired values are checked once the model is there (by the device
//! controller, which reports them in the property's condition).

use serde::de::DeserializeOwned;

use crate::cloud::registry::FieldError;
use edgetwin_model::devices::{Device, DeviceModel, ObjectMeta};
use edgetwin_model::limits::{self, MAX_OBJECT_BYTES, MAX_VALUE_BYTES};
use edgetwin_model::wire::cloud_edge::edge_view;

/// What validation found: errors reject the write, warnings are returned with it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses JSON into a typed object; a failure names the field path (`spec.properties[0].type`).
pub(crate) fn parse<T: DeserializeOwned>(json: &serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(json).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            "<root>".to_owned()
        } else {
            path
        };
        error(field, err.into_inner().to_string())
    })
}

/// Checks `metadata.name` (DNS-1123 subdomain) and `metadata.namespace` (DNS-1123 label).
pub(crate) fn check_name_and_namespace(name: &str, namespace: &str, errors: &mut Vec<FieldError>) {
    if let Err(why) = dns_subdomain(name) {
        errors.push(error(
            "metadata.name",
            format!("Invalid value: {name:?}: {why}"),
        ));
    }
    if let Err(why) = dns_label(namespace) {
        errors.push(error(
            "metadata.namespace",
            format!("Invalid value: {namespace:?}: {why}"),
        ));
    }
}

/// Checks a Device against itself and, when it exists, its DeviceModel.
pub(crate) fn device(device: &Device, model: Option<&DeviceModel>) -> Findings {
    let mut findings = Findings::default();
    check_name_and_namespace(device.name(), device.namespace(), &mut findings.errors);
    check_labels_and_annotations(&device.metadata, &mut findings.errors);
    check_size("Device", &edge_view(device), &mut findings.errors);
    let model_name = device.model_name();
    if model_name.is_none_or(str::is_empty) {
        findings
            .errors
            .push(error("spec.deviceModelRef.name", "Required value"));
    }
    let model = match (model_name, model) {
        (Some(name), None) if !name.is_empty() => {
            findings.warnings.push(format!(
                "DeviceModel {name:?} does not exist in namespace {:?}: desired values are not type-checked until it does",
                device.namespace()
            ));
            None
        }
        (_, model) => model,
    };
    let mut seen = std::collections::HashSet::new();
    for (index, property) in device.spec.properties.iter().enumerate() {
        let at = format!("spec.properties[{index}]");
        if property.name.is_empty() {
            findings
                .errors
                .push(error(format!("{at}.name"), "Required value"));
            continue;
        }
        if !seen.insert(property.name.as_str()) {
            findings.errors.push(error(
                format!("{at}.name"),
                format!("Duplicate value: {:?}", property.name),
            ));
        }
        if let Some(desired) = &property.desired
            && desired.value.len() > MAX_VALUE_BYTES
        {
            findings.errors.push(error(
                format!("{at}.desired.value"),
                format!(
                    "Too long: must have at most {MAX_VALUE_BYTES} bytes ({}: the largest value the edge takes), got {}",
                    limits::human(MAX_VALUE_BYTES),
                    desired.value.len()
                ),
            ));
            continue;
        }
        let Some(model) = model else { continue };
        let Some(model_property) = model.property(&property.name) else {
            findings.errors.push(error(
                format!("{at}.name"),
                format!(
                    "Not found: {:?}: DeviceModel {:?} has no such property",
                    property.name,
                    model.name()
                ),
            ));
            continue;
        };
        if let Some(desired) = &property.desired
            && let Err(why) = model_property.check_desired(&desired.value)
        {
            findings.errors.push(error(
                format!("{at}.desired.value"),
                format!("Invalid value: {:?}: {why}", desired.value),
            ));
        }
    }
    findings
}

/// Checks a DeviceModel: names, duplicate properties, limits that are not numbers, empty ranges.
pub(crate) fn device_model(model: &DeviceModel) -> Findings {
    let mut findings = Findings::default();
    check_name_and_namespace(model.name(), model.namespace(), &mut findings.errors);
    check_labels_and_annotations(&model.metadata, &mut findings.errors);
    check_size("DeviceModel", model, &mut findings.errors);
    let mut seen = std::collections::HashSet::new();
    for (index, property) in model.spec.properties.iter().enumerate() {
        let at = format!("spec.properties[{index}]");
        if property.name.is_empty() {
            findings
                .errors
                .push(error(format!("{at}.name"), "Required value"));
        } else if !seen.insert(property.name.as_str()) {
            findings.errors.push(error(
                format!("{at}.name"),
                format!("Duplicate value: {:?}", property.name),
            ));
        }
        match property.limits() {
            Err(why) => findings
                .errors
                .push(error(at, format!("Invalid value: {why}"))),
            Ok(limits) if limits.is_empty_range() => findings.errors.push(error(
                format!("{at}.minimum"),
                format!(
                    "Invalid value: {:?}: must not be larger than maximum {:?}",
                    property.minimum.as_deref().unwrap_or_default(),
                    property.maximum.as_deref().unwrap_or_default()
                ),
            )),
            Ok(_) => {}
        }
    }
    findings
}

/// Refuses an object larger than [`MAX_OBJECT_BYTES`] as JSON: the edge could not take it (a
/// membership update carries a Device and its model through the tunnel, the retained spec
/// message carries both to the mapper).
fn check_size(kind: &str, object: &impl serde::Serialize, errors: &mut Vec<FieldError>) {
    let size = limits::json_size(object);
    if size > MAX_OBJECT_BYTES {
        errors.push(error(
            "<root>",
            format!(
                "Too long: the {kind} is {size} bytes as JSON, it must have at most {MAX_OBJECT_BYTES} bytes ({}: the largest object the edge takes)",
                limits::human(MAX_OBJECT_BYTES)
            ),
        ));
    }
}

/// Label keys and values, and annotation keys, as the API server checks them
/// (`k8s.io/apimachinery` `ValidateLabels`, `ValidateAnnotations`).
fn check_labels_and_annotations(meta: &ObjectMeta, errors: &mut Vec<FieldError>) {
    for (key, value) in meta.labels.iter().flatten() {
        if let Err(why) = qualified_name(key) {
            errors.push(error(
                "metadata.labels",
                format!("Invalid value: {key:?}: {why}"),
            ));
        }
        if let Err(why) = label_value(value) {
            errors.push(error(
                "metadata.labels",
                format!("Invalid value: {value:?}: {why}"),
            ));
        }
    }
    for key in meta.annotations.iter().flatten().map(|(key, _)| key) {
        if let Err(why) = qualified_name(&key.to_ascii_lowercase()) {
            errors.push(error(
                "metadata.annotations",
                format!("Invalid value: {key:?}: {why}"),
            ));
        }
    }
}

/// The regex the API server gives in its messages for a label value and a name part.
const NAME_PART_REGEX: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

/// A qualified name (`[prefix/]name`): the name part at most 63 characters of alphanumerics,
/// `-`, `_` and `.`, starting and ending alphanumeric; the prefix a DNS-1123 subdomain.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".into());
        }
        dns_subdomain(prefix).map_err(|why| format!("prefix part {why}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    if !name_part_chars_ok(name) {
        return Err(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{NAME_PART_REGEX}')"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of alphanumerics, `-`, `_` and `.`, starting
/// and ending alphanumeric.
fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !value.is_empty() && !name_part_chars_ok(value) {
        return Err(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '({NAME_PART_REGEX})?')"
        ));
    }
    Ok(())
}

fn name_part_chars_ok(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    text.starts_with(alnum)
        && text.ends_with(alnum)
        && text
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated labels of lower-case letters,
/// digits and `-`, starting and ending alphanumeric.
fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name is required".into());
    }
    if name.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    if name.split('.').all(|label| label_chars_ok(label).is_ok()) {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into())
    }
}

/// A DNS-1123 label: at most 63 characters of lower-case letters, digits and `-`, starting and
/// ending alphanumeric.
fn dns_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    label_chars_ok(name).map_err(|()| {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character".into()
    })
}

fn label_chars_ok(label: &str) -> Result<(), ()> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !label.is_empty()
        && label.starts_with(alnum)
        && label.ends_with(alnum)
        && label.chars().all(|c| alnum(c) || c == '-');
    if ok { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetwin_model::devices::{
        AccessMode, DeviceModelRef, DeviceModelSpec, DeviceProperty, DeviceSpec, ModelProperty,
        TwinProperty,
    };
    use edgetwin_model::value::PropertyType;

    fn model() -> DeviceModel {
        DeviceModel::new(
            "light-model",
            DeviceModelSpec {
                properties: vec![
                    ModelProperty::new("red", PropertyType::Boolean),
                    ModelProperty {
                        minimum: Some("0".into()),
                        maximum: Some("255".into()),
                        ..ModelProperty::new("brightness", PropertyType::Int)
                    },
                    ModelProperty {
                        access_mode: Some(AccessMode::ReadOnly),
                        ..ModelProperty::new("temperature", PropertyType::Float)
                    },
                ],
                ..DeviceModelSpec::default()
            },
        )
    }

    fn device(properties: &[(&str, Option<&str>)]) -> Device {
        Device::new(
            "light",
            DeviceSpec {
                device_model_ref: Some(DeviceModelRef {
                    name: "light-model".into(),
                }),
                properties: properties
                    .iter()
                    .map(|(name, desired)| DeviceProperty {
                        name: (*name).into(),
                        desired: desired.map(TwinProperty::new),
                        ..DeviceProperty::default()
                    })
                    .collect(),
                ..DeviceSpec::default()
            },
        )
    }

    fn fields(findings: &Findings) -> Vec<String> {
        findings.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn desired_values_are_checked_against_the_model_with_field_paths() {
        let bad = device(&[
            ("red", Some("true")),
            ("brightness", Some("300")),
            ("temperature", Some("20")),
            ("blue", Some("x")),
            ("red", None),
        ]);
        assert_eq!(
            fields(&super::device(&bad, Some(&model()))),
            [
                "spec.properties[1].desired.value: Invalid value: \"300\": the value 300 is above the maximum 255",
                "spec.properties[2].desired.value: Invalid value: \"20\": the property is ReadOnly: it cannot take a desired value",
                "spec.properties[3].name: Not found: \"blue\": DeviceModel \"light-model\" has no such property",
                "spec.properties[4].name: Duplicate value: \"red\"",
            ]
        );
        let good = device(&[
            ("red", Some("false")),
            ("brightness", Some("7")),
            ("temperature", None),
        ]);
        assert_eq!(super::device(&good, Some(&model())), Findings::default());
    }

    #[test]
    fn a_missing_model_is_a_warning_and_skips_type_checks() {
        let findings = super::device(&device(&[("red", Some("not a bool"))]), None);
        assert!(findings.errors.is_empty());
        assert_eq!(findings.warnings.len(), 1);
        assert!(findings.warnings[0].contains("\"light-model\" does not exist"));
    }

    #[test]
    fn names_must_be_dns_names_and_the_model_ref_is_required() {
        let mut bad = device(&[]);
        bad.metadata.name = Some("Traffic_Light".into());
        bad.metadata.namespace = Some("a.b".into());
        bad.spec.device_model_ref = None;
        let errors = fields(&super::device(&bad, None));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("metadata.name: Invalid value: \"Traffic_Light\""));
        assert!(errors[1].starts_with("metadata.namespace: Invalid value: \"a.b\""));
        assert_eq!(errors[2], "spec.deviceModelRef.name: Required value");
        for ok in ["a", "traffic-light", "a.b-c.d9"] {
            assert!(dns_subdomain(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "A", &"a".repeat(254)] {
            assert!(dns_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn models_report_duplicates_bad_limits_and_empty_ranges() {
        let mut broken = model();
        broken
            .spec
            .properties
            .push(ModelProperty::new("red", PropertyType::Int));
        broken.spec.properties.push(ModelProperty {
            maximum: Some("hot".into()),
            ..ModelProperty::new("heat", PropertyType::Float)
        });
        broken.spec.properties.push(ModelProperty {
            minimum: Some("9".into()),
            maximum: Some("1".into()),
            ..ModelProperty::new("range", PropertyType::Int)
        });
        assert_eq!(
            fields(&device_model(&broken)),
            [
                "spec.properties[3].name: Duplicate value: \"red\"",
                "spec.properties[4]: Invalid value: the model's maximum \"hot\" is not a number",
                "spec.properties[5].minimum: Invalid value: \"9\": must not be larger than maximum \"1\"",
            ]
        );
        assert!(device_model(&model()).errors.is_empty());
    }

    #[test]
    fn parse_errors_name_the_field_path() {
        let json = serde_json::json!({
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "m"},
            "spec": {"properties": [{"name": "a", "type": "INT"}, {"name": "b", "type": "DECIMAL"}]}
        });
        let err = parse::<DeviceModel>(&json).expect_err("bad enum");
        assert_eq!(err.field, "spec.properties[1].type");
        assert!(err.message.contains("DECIMAL"), "{}", err.message);
    }
}
