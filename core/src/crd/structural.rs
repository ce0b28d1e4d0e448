//! A checker for the rules the Kubernetes API server applies to a CRD's `openAPIV3Schema` when
//! the CRD is created (`apiextensions.k8s.io/v1`: the schema must be *structural*, see
//! "Specifying a structural schema" in the Kubernetes docs).
//!
//! No API server runs in this project's tests, so this re-states the rules over plain JSON:
//!
//! - every node has a `type` (one of the six OpenAPI types), except nodes marked
//!   `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`; `type: object` at the
//!   root, never `nullable` there;
//! - inside `allOf` / `anyOf` / `oneOf` / `not` no `type`, `description`, `title`, `default`,
//!   `nullable`, `additionalProperties` or `x-kubernetes-*` (except the int-or-string pattern), and
//!   every field or item named there is also specified outside;
//! - `properties` and `additionalProperties` are mutually exclusive, `additionalProperties` is
//!   never `false` and never at the root; `uniqueItems`, `$ref`, `definitions`, `dependencies`,
//!   `patternProperties`, `additionalItems`, `id`, `$schema` and unknown keywords are refused;
//! - `metadata` at the root restricts at most `name` and `generateName`; `apiVersion` and `kind`
//!   are strings;
//! - arrays have `items` (one schema); list/map-type extensions match the node type;
//! - with the status subresource, the root has no logical junctors, `nullable`,
//!   `additionalProperties`, `enum` or `default` (only keys that keep `properties.status` whole).
//!
//! [`Rules::Strict`] adds one rule of edgetwin's: an object node with no `properties`, no
//! `additionalProperties` and no `x-kubernetes-preserve-unknown-fields` is refused, because the
//! API server would silently prune everything written inside it (free-form maps must be marked).

use std::fmt;

use serde_json::{Map, Value};

/// Which rules to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// What the API server enforces.
    ApiServer,
    /// The API server's rules plus: no object node whose content would be pruned.
    Strict,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, e.g. `openAPIV3Schema.properties[spec].properties[configData]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Keywords of `JSONSchemaProps` (apiextensions v1); the API server refuses any other key.
const KNOWN_KEYWORDS: &[&str] = &[
    "id",
    "$schema",
    "$ref",
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "additionalProperties",
    "patternProperties",
    "dependencies",
    "additionalItems",
    "definitions",
    "externalDocs",
    "example",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Keywords the API server refuses in a CRD schema.
const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "id",
    "$schema",
    "$ref",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
];

const OPENAPI_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Keys allowed at the root of the schema when the status subresource is enabled (so that the
/// status schema can be extracted as `properties.status` without losing validation).
const ROOT_KEYS_WITH_STATUS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];

/// Keys that must not appear inside a logical junctor (`allOf`, `anyOf`, `oneOf`, `not`).
const FORBIDDEN_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "title",
    "default",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

const JUNCTORS: &[&str] = &["allOf", "anyOf", "oneOf"];

/// Checks every version of a `CustomResourceDefinition` (as JSON).
pub fn check_crd(crd: &Value, rules: Rules) -> Vec<Violation> {
    let mut violations = Vec::new();
    let Some(versions) = crd.pointer("/spec/versions").and_then(Value::as_array) else {
        violations.push(Violation {
            path: "spec.versions".into(),
            message: "must be a list of versions".into(),
        });
        return violations;
    };
    for (i, version) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
            violations.push(Violation {
                path,
                message: "is required: every served version needs a schema".into(),
            });
            continue;
        };
        let has_status = version.pointer("/subresources/status").is_some();
        violations.extend(check_schema_at(schema, has_status, rules, path));
    }
    violations
}

/// Checks one `openAPIV3Schema`. `status_subresource` tells whether the CRD version enables the
/// status subresource (which restricts the root).
pub fn check_schema(schema: &Value, status_subresource: bool, rules: Rules) -> Vec<Violation> {
    check_schema_at(schema, status_subresource, rules, "openAPIV3Schema".into())
}

fn check_schema_at(
    schema: &Value,
    status_subresource: bool,
    rules: Rules,
    path: String,
) -> Vec<Violation> {
    let mut checker = Checker {
        rules,
        violations: Vec::new(),
    };
    if status_subresource && let Some(root) = schema.as_object() {
        for key in root.keys() {
            if !ROOT_KEYS_WITH_STATUS.contains(&key.as_str()) {
                checker.report(
                    &path,
                    format!(
                        "{key:?} is not allowed at the root when the status subresource is \
                         enabled"
                    ),
                );
            }
        }
    }
    checker.node(schema, Level::Root, &path);
    checker.violations
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
    /// `metadata` at the root: the API server owns its schema.
    RootMetadata,
}

struct Checker {
    rules: Rules,
    violations: Vec<Violation>,
}

impl Checker {
    fn report(&mut self, path: &str, message: impl Into<String>) {
        self.violations.push(Violation {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// A schema node outside of logical junctors.
    fn node(&mut self, schema: &Value, level: Level, path: &str) {
        let Some(s) = schema.as_object() else {
            self.report(path, "must be a schema object");
            return;
        };
        self.keywords(s, path);
        let ty = self.node_type(s, level, path);
        let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
        let int_or_string = flag(s, "x-kubernetes-int-or-string");

        if level == Level::Root {
            if ty.is_some_and(|t| t != "object") {
                self.report(path, "type must be object at the root");
            }
            if flag(s, "nullable") {
                self.report(path, "nullable cannot be true at the root");
            }
            if s.contains_key("additionalProperties") {
                self.report(path, "additionalProperties must not be used at the root");
            }
            self.root_fields(s, path);
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            self.report(
                path,
                "uniqueItems cannot be true (the runtime complexity becomes quadratic)",
            );
        }
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
            self.report(
                path,
                "x-kubernetes-preserve-unknown-fields must be true or undefined",
            );
        }
        if int_or_string && preserve {
            self.report(
                path,
                "x-kubernetes-preserve-unknown-fields must be false if x-kubernetes-int-or-string is true",
            );
        }
        if flag(s, "x-kubernetes-embedded-resource") && ty != Some("object") {
            self.report(
                path,
                "type must be object if x-kubernetes-embedded-resource is true",
            );
        }
        self.list_and_map_types(s, ty, path);
        self.object_members(s, level, path);
        self.array_items(s, ty, path);

        if self.rules == Rules::Strict
            && !matches!(level, Level::Root | Level::RootMetadata)
            && ty == Some("object")
            && !preserve
            && !s.contains_key("properties")
            && !s.contains_key("additionalProperties")
        {
            self.report(
                path,
                "object without properties, additionalProperties or \
                 x-kubernetes-preserve-unknown-fields: the API server would prune all its content",
            );
        }

        let junctor_exempt = int_or_string_pattern(s);
        for junctor in JUNCTORS {
            if let Some(list) = s.get(*junctor) {
                let Some(list) = list.as_array() else {
                    self.report(&format!("{path}.{junctor}"), "must be a list of schemas");
                    continue;
                };
                for (i, nested) in list.iter().enumerate() {
                    let exempt = match junctor_exempt {
                        IntOrString::AnyOf => *junctor == "anyOf",
                        IntOrString::FirstAllOf => *junctor == "allOf" && i == 0,
                        IntOrString::No => false,
                    };
                    if !exempt {
                        self.nested(nested, s, &format!("{path}.{junctor}[{i}]"));
                    }
                }
            }
        }
        if let Some(not) = s.get("not") {
            self.nested(not, s, &format!("{path}.not"));
        }
    }

    fn keywords(&mut self, s: &Map<String, Value>, path: &str) {
        for key in s.keys() {
            if !KNOWN_KEYWORDS.contains(&key.as_str()) {
                self.report(
                    path,
                    format!("unknown keyword {key:?} (not a field of JSONSchemaProps)"),
                );
            } else if UNSUPPORTED_KEYWORDS.contains(&key.as_str()) {
                self.report(path, format!("{key} is not supported in a CRD schema"));
            }
        }
    }

    /// Checks `type` and returns it when it is valid.
    fn node_type<'a>(
        &mut self,
        s: &'a Map<String, Value>,
        level: Level,
        path: &str,
    ) -> Option<&'a str> {
        match s.get("type") {
            None => {
                let exempt = flag(s, "x-kubernetes-int-or-string")
                    || flag(s, "x-kubernetes-preserve-unknown-fields");
                if !exempt {
                    let message = match level {
                        Level::Root => "type must not be empty at the root",
                        Level::Item => "type must not be empty for specified array items",
                        Level::Field | Level::RootMetadata => {
                            "type must not be empty for specified object fields"
                        }
                    };
                    self.report(path, message);
                }
                None
            }
            Some(Value::String(t)) if OPENAPI_TYPES.contains(&t.as_str()) => Some(t),
            Some(Value::String(t)) if t == "null" => {
                self.report(path, "type cannot be null (use nullable)");
                None
            }
            Some(other) => {
                self.report(
                    path,
                    format!("type must be one of {OPENAPI_TYPES:?} (a single string), not {other}"),
                );
                None
            }
        }
    }

    /// `metadata`, `apiVersion` and `kind` at the root.
    fn root_fields(&mut self, s: &Map<String, Value>, path: &str) {
        let Some(properties) = s.get("properties").and_then(Value::as_object) else {
            return;
        };
        for field in ["apiVersion", "kind"] {
            if let Some(schema) = properties.get(field)
                && schema.get("type") != Some(&Value::String("string".into()))
            {
                self.report(
                    &format!("{path}.properties[{field}]"),
                    "type must be string",
                );
            }
        }
        let Some(metadata) = properties.get("metadata") else {
            return;
        };
        let meta_path = format!("{path}.properties[metadata]");
        let Some(metadata) = metadata.as_object() else {
            return; // reported by the recursion into properties
        };
        if metadata.get("type") != Some(&Value::String("object".into())) {
            self.report(&meta_path, "type must be object");
        }
        let only_names = metadata.iter().all(|(key, value)| match key.as_str() {
            "type" => true,
            "properties" => value
                .as_object()
                .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName")),
            _ => false,
        });
        if !only_names {
            self.report(
                &meta_path,
                "must not specify anything other than name and generateName \
                 (the API server owns metadata)",
            );
        }
    }

    fn list_and_map_types(&mut self, s: &Map<String, Value>, ty: Option<&str>, path: &str) {
        if let Some(list_type) = s.get("x-kubernetes-list-type") {
            if ty != Some("array") {
                self.report(
                    path,
                    "type must be array if x-kubernetes-list-type is specified",
                );
            }
            let list_type = list_type.as_str().unwrap_or_default();
            if !["atomic", "set", "map"].contains(&list_type) {
                self.report(path, "x-kubernetes-list-type must be atomic, set or map");
            }
            let has_keys = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .is_some_and(|k| !k.is_empty());
            if list_type == "map" && !has_keys {
                self.report(
                    path,
                    "x-kubernetes-list-map-keys must not be empty if x-kubernetes-list-type is map",
                );
            }
            if list_type != "map" && has_keys {
                self.report(
                    path,
                    "x-kubernetes-list-type must be map if x-kubernetes-list-map-keys is non-empty",
                );
            }
        } else if s.contains_key("x-kubernetes-list-map-keys") {
            self.report(
                path,
                "x-kubernetes-list-type must be map if x-kubernetes-list-map-keys is non-empty",
            );
        }
        if let Some(map_type) = s.get("x-kubernetes-map-type") {
            if ty != Some("object") {
                self.report(
                    path,
                    "type must be object if x-kubernetes-map-type is specified",
                );
            }
            if !matches!(map_type.as_str(), Some("atomic" | "granular")) {
                self.report(path, "x-kubernetes-map-type must be atomic or granular");
            }
        }
    }

    /// `properties` and `additionalProperties`.
    fn object_members(&mut self, s: &Map<String, Value>, level: Level, path: &str) {
        let properties = s.get("properties");
        match s.get("additionalProperties") {
            Some(Value::Bool(false)) => {
                self.report(path, "additionalProperties cannot be false");
            }
            Some(Value::Bool(true)) | None => {}
            Some(schema) => {
                if properties.is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty())) {
                    self.report(
                        path,
                        "additionalProperties and properties are mutually exclusive",
                    );
                }
                self.node(
                    schema,
                    Level::Field,
                    &format!("{path}.additionalProperties"),
                );
            }
        }
        if let Some(properties) = properties {
            let Some(properties) = properties.as_object() else {
                self.report(&format!("{path}.properties"), "must be a map of schemas");
                return;
            };
            for (name, schema) in properties {
                let child = if level == Level::Root && name == "metadata" {
                    Level::RootMetadata
                } else {
                    Level::Field
                };
                self.node(schema, child, &format!("{path}.properties[{name}]"));
            }
        }
    }

    fn array_items(&mut self, s: &Map<String, Value>, ty: Option<&str>, path: &str) {
        match s.get("items") {
            None if ty == Some("array") => {
                self.report(path, "items must be specified for an array")
            }
            None => {}
            Some(Value::Array(_)) => {
                self.report(path, "items must be a schema object and not an array")
            }
            Some(items) => self.node(items, Level::Item, &format!("{path}.items")),
        }
    }

    /// A schema inside a logical junctor; `outside` is the schema the junctor belongs to.
    fn nested(&mut self, schema: &Value, outside: &Map<String, Value>, path: &str) {
        let Some(s) = schema.as_object() else {
            self.report(path, "must be a schema object");
            return;
        };
        self.keywords(s, path);
        for key in FORBIDDEN_IN_JUNCTORS {
            if s.contains_key(*key) {
                self.report(
                    path,
                    format!("{key} must not be set inside allOf/anyOf/oneOf/not to be structural"),
                );
            }
        }
        if let Some(properties) = s.get("properties").and_then(Value::as_object) {
            let outside_properties = outside.get("properties").and_then(Value::as_object);
            for (name, nested) in properties {
                let field_path = format!("{path}.properties[{name}]");
                if name == "metadata" {
                    self.report(
                        &field_path,
                        "metadata must not be specified in a nested context",
                    );
                }
                match outside_properties
                    .and_then(|p| p.get(name))
                    .and_then(Value::as_object)
                {
                    Some(outside_field) => self.nested(nested, outside_field, &field_path),
                    None => self.report(
                        &field_path,
                        "is specified inside a logical junctor but not in the schema outside it",
                    ),
                }
            }
        }
        if let Some(items) = s.get("items") {
            let item_path = format!("{path}.items");
            match outside.get("items").and_then(Value::as_object) {
                Some(outside_items) => self.nested(items, outside_items, &item_path),
                None => self.report(
                    &item_path,
                    "is specified inside a logical junctor but not in the schema outside it",
                ),
            }
        }
        for junctor in JUNCTORS {
            if let Some(list) = s.get(*junctor).and_then(Value::as_array) {
                for (i, inner) in list.iter().enumerate() {
                    self.nested(inner, outside, &format!("{path}.{junctor}[{i}]"));
                }
            }
        }
        if let Some(not) = s.get("not") {
            self.nested(not, outside, &format!("{path}.not"));
        }
    }
}

fn flag(s: &Map<String, Value>, key: &str) -> bool {
    s.get(key) == Some(&Value::Bool(true))
}

enum IntOrString {
    No,
    AnyOf,
    FirstAllOf,
}

/// The two shapes in which int-or-string may use typed junctors:
/// `anyOf: [{type: integer}, {type: string}]`, or the same as the first `allOf` entry.
fn int_or_string_pattern(s: &Map<String, Value>) -> IntOrString {
    fn is_pattern(any_of: Option<&Value>) -> bool {
        any_of.and_then(Value::as_array).is_some_and(|list| {
            list.len() == 2
                && list[0] == serde_json::json!({"type": "integer"})
                && list[1] == serde_json::json!({"type": "string"})
        })
    }
    if is_pattern(s.get("anyOf")) {
        IntOrString::AnyOf
    } else if s
        .get("allOf")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .is_some_and(|first| is_pattern(first.get("anyOf")))
    {
        IntOrString::FirstAllOf
    } else {
        IntOrString::No
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use edgetwin_testkit::fixtures::{files_starting_with, kubeedge_dir};

    fn root(spec: Value) -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": spec,
            },
        })
    }

    fn messages(schema: &Value, rules: Rules) -> Vec<String> {
        check_schema(schema, false, rules)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Asserts that the schema breaks exactly one rule, at `path`, with a message containing
    /// `needle`.
    fn assert_one(schema: Value, path: &str, needle: &str) {
        let found = check_schema(&schema, false, Rules::ApiServer);
        assert_eq!(found.len(), 1, "expected one violation, got {found:#?}");
        assert_eq!(found[0].path, path, "{found:#?}");
        assert!(found[0].message.contains(needle), "{found:#?}");
    }

    /// Asserts that the schema breaks (at least) the rule at `path` whose message contains
    /// `needle`.
    fn assert_has(schema: Value, path: &str, needle: &str) {
        let found = check_schema(&schema, false, Rules::ApiServer);
        assert!(
            found
                .iter()
                .any(|v| v.path == path && v.message.contains(needle)),
            "expected {needle:?} at {path}, got {found:#?}"
        );
    }

    #[test]
    fn a_typed_schema_with_a_marked_free_form_map_passes_strict_rules() {
        let schema = root(json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "enum": ["a", "b"]},
                "count": {"type": "integer", "format": "int64", "nullable": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "configData": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "anything": {"x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "items": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "choice": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                    "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
                },
            },
        }));
        assert_eq!(messages(&schema, Rules::Strict), Vec::<String>::new());
    }

    #[test]
    fn an_untyped_field_is_refused() {
        assert_one(
            root(json!({"type": "object", "properties": {"value": {"description": "x"}}})),
            "openAPIV3Schema.properties[spec].properties[value]",
            "type must not be empty for specified object fields",
        );
    }

    #[test]
    fn an_untyped_array_item_and_a_missing_items_are_refused() {
        assert_one(
            root(json!({"type": "array", "items": {}})),
            "openAPIV3Schema.properties[spec].items",
            "type must not be empty for specified array items",
        );
        assert_one(
            root(json!({"type": "array"})),
            "openAPIV3Schema.properties[spec]",
            "items must be specified",
        );
    }

    #[test]
    fn a_type_list_or_null_type_is_refused() {
        assert_one(
            root(json!({"type": ["string", "null"]})),
            "openAPIV3Schema.properties[spec]",
            "a single string",
        );
        assert_one(
            root(json!({"type": "null"})),
            "openAPIV3Schema.properties[spec]",
            "type cannot be null",
        );
    }

    #[test]
    fn any_of_with_types_inside_is_refused() {
        // What schemars emits for an untagged enum: the types live inside the junctor only.
        let untagged = root(json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}));
        assert_has(
            untagged.clone(),
            "openAPIV3Schema.properties[spec]",
            "type must not be empty",
        );
        assert_has(
            untagged,
            "openAPIV3Schema.properties[spec].anyOf[1]",
            "type must not be set inside",
        );
        let with_parent = root(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}],
        }));
        assert_has(
            with_parent.clone(),
            "openAPIV3Schema.properties[spec].anyOf[0]",
            "type must not be set inside",
        );
        assert_has(
            with_parent,
            "openAPIV3Schema.properties[spec].anyOf[0].properties[a]",
            "type must not be set inside",
        );
    }

    #[test]
    fn fields_named_only_inside_a_junctor_are_refused() {
        assert_one(
            root(json!({
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "oneOf": [{"properties": {"b": {"minLength": 1}}}],
            })),
            "openAPIV3Schema.properties[spec].oneOf[0].properties[b]",
            "not in the schema outside it",
        );
    }

    #[test]
    fn nullable_and_description_inside_a_junctor_are_refused() {
        let found = messages(
            &root(json!({
                "type": "string",
                "anyOf": [{"nullable": true, "description": "x", "enum": ["a"]}],
            })),
            Rules::ApiServer,
        );
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found
                .iter()
                .any(|m| m.contains("description must not be set"))
        );
        assert!(found.iter().any(|m| m.contains("nullable must not be set")));
    }

    #[test]
    fn properties_with_additional_properties_is_refused() {
        assert_one(
            root(json!({
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            })),
            "openAPIV3Schema.properties[spec]",
            "mutually exclusive",
        );
        assert_one(
            root(json!({"type": "object", "additionalProperties": false})),
            "openAPIV3Schema.properties[spec]",
            "additionalProperties cannot be false",
        );
    }

    #[test]
    fn an_unmarked_free_form_object_is_refused_by_strict_rules_only() {
        let schema = root(json!({"type": "object"}));
        assert_eq!(messages(&schema, Rules::ApiServer), Vec::<String>::new());
        let strict = messages(&schema, Rules::Strict);
        assert_eq!(strict.len(), 1, "{strict:#?}");
        assert!(strict[0].contains("would prune"), "{strict:#?}");
    }

    #[test]
    fn constrained_metadata_is_refused_but_name_restrictions_are_allowed() {
        let mut schema = root(json!({"type": "object"}));
        schema["properties"]["metadata"] =
            json!({"type": "object", "properties": {"labels": {"type": "object"}}});
        assert_one(
            schema.clone(),
            "openAPIV3Schema.properties[metadata]",
            "other than name and generateName",
        );
        schema["properties"]["metadata"] =
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 63}}});
        assert_eq!(messages(&schema, Rules::ApiServer), Vec::<String>::new());
    }

    #[test]
    fn metadata_inside_a_junctor_is_refused() {
        let mut schema = root(json!({"type": "object"}));
        schema["anyOf"] = json!([{"properties": {"metadata": {}}}]);
        let found = messages(&schema, Rules::ApiServer);
        assert!(
            found
                .iter()
                .any(|m| m.contains("must not be specified in a nested context")),
            "{found:#?}"
        );
    }

    #[test]
    fn unsupported_and_unknown_keywords_are_refused() {
        assert_one(
            root(json!({"type": "object", "$ref": "#/definitions/Spec"})),
            "openAPIV3Schema.properties[spec]",
            "$ref is not supported",
        );
        assert_one(
            root(json!({"type": "string", "const": "x"})),
            "openAPIV3Schema.properties[spec]",
            "unknown keyword \"const\"",
        );
        assert_one(
            root(json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true})),
            "openAPIV3Schema.properties[spec]",
            "uniqueItems",
        );
        assert_one(
            root(json!({"type": "array", "items": [{"type": "string"}]})),
            "openAPIV3Schema.properties[spec]",
            "not an array",
        );
    }

    #[test]
    fn root_rules() {
        let found = messages(
            &json!({"type": "string", "nullable": true, "additionalProperties": {"type": "string"}}),
            Rules::ApiServer,
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("type must be object at the root"))
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("nullable cannot be true at the root"))
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("must not be used at the root"))
        );

        let mut schema = root(json!({"type": "object"}));
        schema["properties"]["kind"] = json!({"type": "integer"});
        assert_one(
            schema,
            "openAPIV3Schema.properties[kind]",
            "type must be string",
        );
    }

    #[test]
    fn status_subresource_restricts_root_keys() {
        let mut schema = root(json!({"type": "object"}));
        schema["title"] = json!("Device");
        schema["oneOf"] = json!([{"required": ["spec"]}]);
        assert!(check_schema(&schema, false, Rules::ApiServer).is_empty());
        let found = check_schema(&schema, true, Rules::ApiServer);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].message.contains("status subresource"));
    }

    #[test]
    fn list_and_map_type_extensions_must_match_the_node() {
        assert_one(
            root(json!({"type": "object", "x-kubernetes-list-type": "atomic"})),
            "openAPIV3Schema.properties[spec]",
            "type must be array",
        );
        assert_one(
            root(
                json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "map"}),
            ),
            "openAPIV3Schema.properties[spec]",
            "x-kubernetes-list-map-keys must not be empty",
        );
        assert_one(
            root(json!({"type": "string", "x-kubernetes-map-type": "atomic"})),
            "openAPIV3Schema.properties[spec]",
            "type must be object",
        );
        assert_one(
            root(
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false, "properties": {}}),
            ),
            "openAPIV3Schema.properties[spec]",
            "must be true or undefined",
        );
    }

    #[test]
    fn check_crd_walks_every_version_and_knows_about_the_status_subresource() {
        let good = root(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let crd = json!({
            "spec": {
                "versions": [
                    {"name": "v1", "schema": {"openAPIV3Schema": good}, "subresources": {"status": {}}},
                    {"name": "v2", "schema": {"openAPIV3Schema": root(json!({"type": "array"}))}},
                    {"name": "v3"},
                ]
            }
        });
        let found = check_crd(&crd, Rules::Strict);
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.versions[1].schema.openAPIV3Schema.properties[spec]",
                "spec.versions[2].schema.openAPIV3Schema",
            ]
        );
        assert_eq!(check_crd(&json!({}), Rules::Strict).len(), 1);
    }

    #[test]
    fn kubeedge_crds_pass_the_api_server_rules() {
        let Some(dir) = kubeedge_dir("crds", "kubeedge_crds_pass_the_api_server_rules") else {
            return;
        };
        let files = files_starting_with(&dir, "v1.");
        assert_eq!(files.len(), 7, "the fixture set changed");
        for path in &files {
            let text = std::fs::read_to_string(path).expect("readable");
            let crd: Value = serde_saphyr::from_str(&text).expect("valid YAML");
            let violations = check_crd(&crd, Rules::ApiServer);
            assert!(violations.is_empty(), "{}: {violations:#?}", path.display());
        }
        // KubeEdge's DeviceStatus has `spec: {type: object}`: accepted by the API server, but
        // everything written under it is pruned, which the strict rules point out.
        let status = dir.join("v1.23.1__devices_v1beta1_devicestatus.yaml");
        let text = std::fs::read_to_string(status).expect("readable");
        let crd: Value = serde_saphyr::from_str(&text).expect("valid YAML");
        let strict = check_crd(&crd, Rules::Strict);
        assert!(
            strict
                .iter()
                .any(|v| v.path.ends_with("openAPIV3Schema.properties[spec]")),
            "{strict:#?}"
        );
    }
}
