//! The edgetwin GPIO mapper.

pub mod chip;
