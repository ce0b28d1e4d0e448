//! DeviceTwin payloads from the MQTT bus, decoded as the edge agent and the mappers decode them
//! (the first byte picks the message), and a decoded twin update applied by the twin engine to a
//! twin that holds a value: nothing panics, every error is an answer.
#![no_main]

use edgetwin_model::twin::{DeviceTwin, TwinContext};
use edgetwin_model::wire::decode;
use edgetwin_model::wire::payload::{
    BaseMessage, DeviceMsg, DeviceSpecMessage, DeviceTwinDelta, DeviceTwinUpdate,
    MembershipDetailRequest, TwinReply,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match selector % 8 {
        0 | 1 => {
            let Ok(update) = decode::<DeviceTwinUpdate>(payload) else {
                return;
            };
            let ctx = TwinContext::new(1_700_000_000_000).with_event_id("fuzz");
            let seed: DeviceTwinUpdate = decode(
                br#"{"event_id":"s","timestamp":1,"twin":{"power":{"expected":{"value":"on"},"metadata":{"type":"string"}}}}"#,
            )
            .expect("the seed update decodes");
            let mut twin = DeviceTwin::new();
            twin.cloud_update(&ctx, &seed);
            if selector % 8 == 0 {
                twin.edge_update(&ctx, &update);
            } else {
                twin.cloud_update(&ctx, &update);
            }
            let _ = twin.get(&ctx, &BaseMessage::default());
        }
        2 => {
            let _ = decode::<BaseMessage>(payload);
        }
        3 => {
            let _ = decode::<DeviceMsg>(payload);
        }
        4 => {
            let _ = decode::<DeviceTwinDelta>(payload);
        }
        5 => {
            let _ = decode::<TwinReply>(payload);
        }
        6 => {
            let _ = decode::<MembershipDetailRequest>(payload);
        }
        _ => {
            let _ = decode::<DeviceSpecMessage>(payload);
        }
    }
});
