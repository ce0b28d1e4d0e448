//! MQTT topics as the edge agent and the mappers read them: a topic that parses prints back to
//! itself, and one that does not has an error without control characters in it (the error is
//! logged).
#![no_main]

use edgetwin_model::wire::Topic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Topic::parse(text) {
        Ok(topic) => {
            let printed = topic.to_string();
            assert_eq!(Topic::parse(&printed).ok(), Some(topic), "{printed:?}");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.contains(char::is_control), "{message:?}");
        }
    }
});
