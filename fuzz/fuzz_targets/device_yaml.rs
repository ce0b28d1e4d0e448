//! Device and DeviceModel YAML as `edgetwin edge --devices`, `ctl apply -f` and the mappers load
//! it: errors, never panics; what loads has a name and fits the edge's object limit.
#![no_main]

use edgetwin_model::devices::load;
use edgetwin_model::limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(documents) = load::from_str(text, "fuzz.yaml") else {
        return;
    };
    for document in documents {
        assert!(!document.manifest.name().is_empty());
        let size = match &document.manifest {
            load::Manifest::Device(device) => limits::json_size(device),
            load::Manifest::DeviceModel(model) => limits::json_size(model),
        };
        assert!(size <= limits::MAX_OBJECT_BYTES);
    }
});
