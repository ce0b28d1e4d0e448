//! Helpers shared by the integration tests of this directory.

pub mod webdriver;
