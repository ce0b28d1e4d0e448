//! The Modbus mapper's codec: a property's visitor configuration (JSON, from the Device) and the
//! registers or bits a device returns, decoded into a value; a decoded value encoded again.
//! Errors, never panics.
#![no_main]

use edgetwin_mapper_modbus::codec::Items;
use edgetwin_mapper_modbus::config::VisitorConfig;
use edgetwin_mapper_modbus::plan::PlanLimits;
use edgetwin_model::value::PropertyType;
use libfuzzer_sys::fuzz_target;

const TYPES: [PropertyType; 6] = [
    PropertyType::Int,
    PropertyType::Float,
    PropertyType::Double,
    PropertyType::Boolean,
    PropertyType::String,
    PropertyType::Bytes,
];

fuzz_target!(|data: &[u8]| {
    // [type][config length][config JSON][registers, big-endian u16s]
    let [ty, length, rest @ ..] = data else {
        return;
    };
    let (config, words) = rest.split_at(usize::from(*length).min(rest.len()));
    let Ok(config) = serde_json::from_slice::<VisitorConfig>(config) else {
        return;
    };
    let ty = TYPES[usize::from(*ty) % TYPES.len()].clone();
    let Ok(field) = config.field(ty, &PlanLimits::default()) else {
        return;
    };
    let registers: Vec<u16> = words
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let bits: Vec<bool> = words.iter().map(|b| b & 1 == 1).collect();
    for items in [Items::Registers(&registers), Items::Bits(&bits)] {
        if let Ok(value) = field.decode(items) {
            let _ = field.encode(&value);
        }
    }
});
