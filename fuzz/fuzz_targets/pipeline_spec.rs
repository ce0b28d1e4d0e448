//! A property's data pipeline as the Device declares it (`spec.properties[].pipeline`, JSON
//! here), built and driven with samples, ticks and desired values: errors, never panics.
#![no_main]

use edgetwin_model::pipeline::{Pipeline, PipelineSpec, Sample};
use edgetwin_model::value::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // [spec length][spec JSON][samples: 8 bytes each, an f64 and a time step]
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let (spec, samples) = rest.split_at(usize::from(length).min(rest.len()));
    let Ok(spec) = serde_json::from_slice::<PipelineSpec>(spec) else {
        return;
    };
    let Ok(mut pipeline) = Pipeline::build(&spec) else {
        return;
    };
    let mut now: u64 = 0;
    for chunk in samples.chunks_exact(9) {
        let value = f64::from_be_bytes(chunk[..8].try_into().expect("8 bytes"));
        now = now.saturating_add(u64::from(chunk[8]) * 100);
        let value = if chunk[8] % 3 == 0 {
            Value::Int(value as i64)
        } else {
            Value::Float(value)
        };
        match chunk[8] % 4 {
            0 => {
                let _ = pipeline.tick(now);
            }
            1 => {
                let _ = pipeline.on_write(value);
            }
            2 => {
                let _ = pipeline.report_now(Sample { value, at_ms: now });
            }
            _ => {
                let _ = pipeline.process(Sample { value, at_ms: now });
            }
        }
    }
});
