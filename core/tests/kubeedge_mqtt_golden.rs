//! Golden test against KubeEdge's own MQTT and beehive payloads.
//!
//! Every file under `$EDGETWIN_KUBEEDGE_FIXTURES/mqtt/` (recursively) must decode into the edgetwin
//! type its file name names and re-encode to JSON equal to the original, comparing struct keys
//! case-insensitively (Go reads `"State"` as `state`; edgetwin writes KubeEdge's canonical `state`)
//! and user-data keys (twin property names, attributes, data samples) exactly. A file that maps to
//! no type fails the test, so new fixtures cannot be skipped silently.

use std::path::{Path, PathBuf};

use edgetwin_model::wire::codec;
use edgetwin_model::wire::envelope::Envelope;
use edgetwin_model::wire::payload::{
    BaseMessage, DeviceData, DeviceMsg, DeviceTwinDelta, DeviceTwinDocument, DeviceTwinResult,
    DeviceTwinUpdate, DeviceUpdate, ErrorResult, MembershipDetailRequest, MembershipGetResult,
    MembershipUpdate, TwinReply,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Decodes a fixture's text and returns the re-encoded JSON.
type RoundTrip = fn(&str) -> Result<Value, String>;

/// Keys in the fixtures that KubeEdge's own types do not have: Go drops them on decode, and so
/// does edgetwin. Each entry must still exist in its file, so the list cannot go stale.
const DROPPED_KEYS: &[(&str, &str)] = &[(
    "verbatim__membership-update-content__added-devices__security-demo.json",
    "/added_devices/0/Power_Status",
)];

/// Keys whose value is a map keyed by user data, compared without case folding.
const USER_DATA_MAPS: &[&str] = &["twin", "delta", "data", "attributes"];

/// KubeEdge's canonical keys are lower case except this one (KubeEdge ≥ 1.18 `DeviceMsg`).
const MIXED_CASE_CANONICAL_KEYS: &[&str] = &["lastOnlineTime"];

#[test]
fn every_kubeedge_mqtt_fixture_round_trips() {
    let Some(root) = edgetwin_testkit::fixtures::kubeedge_dir("mqtt", "kubeedge_mqtt_golden")
    else {
        return;
    };
    let files = files_under(&root);
    let payloads: Vec<&PathBuf> = files
        .iter()
        .filter(|file| file.extension().is_none_or(|ext| ext != "md"))
        .collect();
    assert!(
        payloads.len() >= 40,
        "expected the KubeEdge MQTT fixtures under {}, found {} files",
        root.display(),
        payloads.len()
    );

    let failures: Vec<String> = payloads
        .iter()
        .filter_map(|file| {
            let shown = file.strip_prefix(&root).unwrap_or(file).display();
            check_fixture(file)
                .err()
                .map(|error| format!("{shown}: {error}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        payloads.len(),
        failures.join("\n")
    );
    println!("{} KubeEdge MQTT fixtures round-trip", payloads.len());
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn check_fixture(file: &Path) -> Result<(), String> {
    let file_name = file
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or("file name is not UTF-8")?;
    let in_beehive_dir = file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "beehive");
    let round_trip = round_trip_for(file_name, in_beehive_dir)
        .ok_or("no payload type is mapped to this file name; add it to round_trip_for")?;

    let raw = std::fs::read_to_string(file).map_err(|error| error.to_string())?;
    let text = if file_name.ends_with(".jsonc") {
        strip_line_comments(&raw)
    } else {
        raw
    };
    let mut original: Value =
        serde_json::from_str(&text).map_err(|error| format!("fixture is not JSON: {error}"))?;
    for (name, pointer) in DROPPED_KEYS {
        if *name == file_name && !remove_pointer(&mut original, pointer) {
            return Err(format!("DROPPED_KEYS entry {pointer} is not in the file"));
        }
    }

    let reencoded = round_trip(&text)?;
    check_canonical_keys(&reencoded, false)?;
    let (expected, actual) = (normalise(&original, false)?, normalise(&reencoded, false)?);
    if expected != actual {
        return Err(format!(
            "re-encoded JSON differs\n  original:   {expected}\n  re-encoded: {actual}"
        ));
    }
    Ok(())
}

/// Picks the payload type from the file name: `[verbatim__]{kind}__{qualifier}[__…].json[c]`.
fn round_trip_for(file_name: &str, in_beehive_dir: bool) -> Option<RoundTrip> {
    if in_beehive_dir {
        return Some(envelope_round_trip);
    }
    let stem = Path::new(file_name).file_stem()?.to_str()?;
    let stem = stem.strip_prefix("verbatim__").unwrap_or(stem);
    let mut parts = stem.split("__");
    let kind = parts.next()?;
    let qualifier = parts.next().unwrap_or_default();
    let ok = qualifier.starts_with("ok");
    let err = qualifier.starts_with("err");
    Some(match kind {
        // The led-raspberrypi example sends a twin update struct as its twin/get body.
        "device-twin-update" | "device-twin-get" | "device-twin-cloud_updated" => {
            round_trip::<DeviceTwinUpdate>
        }
        "device-twin-update-result" | "device-twin-get-result" if ok => twin_reply_ok,
        "device-twin-update-result" | "device-twin-get-result" if err => twin_reply_err,
        "device-twin-update-delta" => round_trip::<DeviceTwinDelta>,
        "device-twin-update-document" => round_trip::<DeviceTwinDocument>,
        "device-state-update" => round_trip::<DeviceUpdate>,
        "device-state-update-result" => round_trip::<DeviceMsg>,
        "node-membership-get" => round_trip::<BaseMessage>,
        "node-membership-get-result" => round_trip::<MembershipGetResult>,
        "node-membership-updated" | "membership-update-content" => round_trip::<MembershipUpdate>,
        "ke-device-data-update" => round_trip::<DeviceData>,
        _ => return None,
    })
}

fn round_trip<T: DeserializeOwned + Serialize>(text: &str) -> Result<Value, String> {
    let payload: T = codec::decode(text.as_bytes()).map_err(|error| error.to_string())?;
    to_json(&payload)
}

fn to_json<T: Serialize>(payload: &T) -> Result<Value, String> {
    let bytes = codec::encode(payload).map_err(|error| error.to_string())?;
    serde_json::from_slice(&bytes).map_err(|error| error.to_string())
}

fn twin_reply_ok(text: &str) -> Result<Value, String> {
    match codec::decode::<TwinReply>(text.as_bytes()).map_err(|error| error.to_string())? {
        TwinReply::Ok(_) => round_trip::<DeviceTwinResult>(text),
        TwinReply::Err(error) => Err(format!("TwinReply read a success as {error:?}")),
    }
}

fn twin_reply_err(text: &str) -> Result<Value, String> {
    match codec::decode::<TwinReply>(text.as_bytes()).map_err(|error| error.to_string())? {
        TwinReply::Err(_) => round_trip::<ErrorResult>(text),
        TwinReply::Ok(result) => Err(format!("TwinReply read a failure as {result:?}")),
    }
}

/// Decodes the envelope and its content (typed by the route's resource), then re-encodes both,
/// keeping the content's form (object or JSON text in a string).
fn envelope_round_trip(text: &str) -> Result<Value, String> {
    let mut envelope: Envelope = codec::decode(text.as_bytes()).map_err(|e| e.to_string())?;
    let resource = envelope.route.resource.clone().unwrap_or_default();
    if resource == "membership/detail" {
        retype_content::<MembershipDetailRequest>(&mut envelope)?;
    } else if resource.ends_with("/membership") {
        retype_content::<MembershipUpdate>(&mut envelope)?;
    } else if resource.ends_with("/twin/cloud_updated") || resource.ends_with("/twin/edge_updated")
    {
        retype_content::<DeviceTwinUpdate>(&mut envelope)?;
    } else {
        return Err(format!(
            "no content type is mapped to resource {resource:?}; add it to envelope_round_trip"
        ));
    }
    to_json(&envelope)
}

fn retype_content<T: DeserializeOwned + Serialize>(envelope: &mut Envelope) -> Result<(), String> {
    let form = envelope.content_form();
    let content: T = envelope
        .content_as()
        .map_err(|error| format!("content: {error}"))?;
    envelope
        .set_content(&content, form)
        .map_err(|error| error.to_string())
}

/// Lower-cases struct keys; keeps the keys of user-data maps as they are. Fails if two keys of
/// one object would collide, which would hide a difference.
fn normalise(value: &Value, is_user_data_map: bool) -> Result<Value, String> {
    Ok(match value {
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, child) in object {
                let key = if is_user_data_map {
                    key.clone()
                } else {
                    key.to_lowercase()
                };
                let child_is_user_data_map =
                    !is_user_data_map && USER_DATA_MAPS.contains(&key.as_str());
                let child = normalise(child, child_is_user_data_map)?;
                if out.insert(key.clone(), child).is_some() {
                    return Err(format!("keys collide after lower-casing: {key:?}"));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| normalise(item, false))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// Checks that edgetwin writes KubeEdge's canonical spelling for every struct key.
fn check_canonical_keys(value: &Value, is_user_data_map: bool) -> Result<(), String> {
    match value {
        Value::Object(object) => object.iter().try_for_each(|(key, child)| {
            if !is_user_data_map
                && key.to_lowercase() != *key
                && !MIXED_CASE_CANONICAL_KEYS.contains(&key.as_str())
            {
                return Err(format!("non-canonical key {key:?} in the output"));
            }
            let child_is_user_data_map =
                !is_user_data_map && USER_DATA_MAPS.contains(&key.as_str());
            check_canonical_keys(child, child_is_user_data_map)
        }),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_canonical_keys(item, false)),
        _ => Ok(()),
    }
}

/// Removes the value at a JSON pointer; false if there is none.
fn remove_pointer(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return false;
    };
    match value.pointer_mut(parent) {
        Some(Value::Object(object)) => object.remove(key).is_some(),
        _ => false,
    }
}

/// Removes `//` comments (outside strings) from JSONC text.
fn strip_line_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            while chars.next_if(|&next| next != '\n').is_some() {}
        } else {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

#[test]
fn comment_stripping_leaves_strings_alone() {
    let text = "{\"url\": \"http://x//y\", // note\n \"q\": \"a\\\"//b\" //+optional\n}";
    let stripped = strip_line_comments(text);
    let value: Value = serde_json::from_str(&stripped).expect("valid JSON after stripping");
    assert_eq!(value["url"], "http://x//y");
    assert_eq!(value["q"], "a\"//b");
}

#[test]
fn normalisation_folds_struct_keys_only() {
    let original = serde_json::json!({"State": "on", "twin": {"Red": {"Actual": {}}}});
    let folded = serde_json::json!({"state": "on", "twin": {"red": {"actual": {}}}});
    let expected = serde_json::json!({"state": "on", "twin": {"Red": {"actual": {}}}});
    assert_eq!(normalise(&original, false), Ok(expected.clone()));
    assert_ne!(normalise(&folded, false), Ok(expected));
    assert!(normalise(&serde_json::json!({"a": 1, "A": 2}), false).is_err());
}
