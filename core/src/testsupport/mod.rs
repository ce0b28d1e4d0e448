//! Helpers for tests of this crate and of others (feature `test-support`): real parts that a
//! test can misbehave on purpose, and throwaway certificates.

pub mod pki;
pub mod tcp_proxy;
