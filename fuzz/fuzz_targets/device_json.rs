//! Devices and DeviceModels as JSON (the registry API's bodies, the membership updates, the
//! retained spec message), then what the edge does with them: property schemas and the desired
//! values checked against their model.
#![no_main]

use edgetwin_model::devices::{Device, DeviceModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = serde_json::from_slice::<DeviceModel>(data) {
        let _ = model.spec.problems();
        for property in &model.spec.properties {
            let _ = property.limits();
            let _ = property.check_desired("1");
        }
        let back = serde_json::to_vec(&model).expect("a model encodes");
        let again: DeviceModel = serde_json::from_slice(&back).expect("decodes");
        assert_eq!(serde_json::to_vec(&again).expect("encodes"), back);
    }
    if let Ok(device) = serde_json::from_slice::<Device>(data) {
        for property in &device.spec.properties {
            let _ = property.collect_cycle();
            let _ = property.report_cycle();
        }
        let back = serde_json::to_vec(&device).expect("a device encodes");
        let again: Device = serde_json::from_slice(&back).expect("decodes");
        assert_eq!(serde_json::to_vec(&again).expect("encodes"), back);
    }
});
