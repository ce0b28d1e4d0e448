//! Tunnel frames as both ends read them, and the controller ⇄ agent messages inside: a frame
//! that decodes encodes to one that decodes to the same frame.
#![no_main]

use edgetwin_core::tunnel::frame::Frame;
use edgetwin_model::wire::cloud_edge::{parse_edge_message, parse_membership};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = Frame::decode(text) else {
        return;
    };
    let encoded = frame.encode().expect("a decoded frame encodes");
    let again = Frame::decode(&encoded).expect("an encoded frame decodes");
    // Floats in a message's content may not survive a round trip bit for bit; compare text.
    assert_eq!(again.encode().expect("encodes"), encoded);
    if let Frame::Msg { message, .. } = &frame {
        let _ = parse_membership(message);
        let _ = parse_edge_message(message);
    }
});
