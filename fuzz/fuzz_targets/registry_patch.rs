//! JSON merge patches (RFC 7386) and JSON patches (RFC 6902) from the registry API's bodies,
//! applied to a stored Device as the embedded registry applies them and parsed back into a Device
//! (the registry's path-tracking parse): errors, never panics.
#![no_main]

use edgetwin_model::devices::Device;
use edgetwin_model::merge_patch;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn stored() -> Value {
    json!({
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "lamp", "namespace": "default", "resourceVersion": "7",
                     "labels": {"zone": "a"}},
        "spec": {
            "deviceModelRef": {"name": "lamp-model"},
            "nodeName": "edge-1",
            "properties": [
                {"name": "power", "desired": {"value": "on"},
                 "visitors": {"protocolName": "gpio", "configData": {"pin": 17}}},
                {"name": "level", "collectCycle": 1000}
            ]
        },
        "status": {"twins": [{"propertyName": "power", "reported": {"value": "off"}}]}
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut document = stored();
    if selector % 2 == 0 {
        let Ok(patch) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        if !patch.is_object() {
            return;
        }
        merge_patch::apply(&mut document, &patch);
    } else {
        let Ok(operations) = serde_json::from_slice::<json_patch::Patch>(body) else {
            return;
        };
        if json_patch::patch(&mut document, &operations).is_err() {
            return;
        }
    }
    let _ = serde_path_to_error::deserialize::<_, Device>(&document);
});
