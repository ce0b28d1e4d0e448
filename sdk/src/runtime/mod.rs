//! The mapper runtime (partial build while the model lands).
#![allow(dead_code)]
mod inbox;
mod options;
mod state;
mod twin;
