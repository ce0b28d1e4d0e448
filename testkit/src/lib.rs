//! edgetwin's test kit: the real parts tests of every crate share.
//!
//! - [`peers`]: whether a test must fail or may skip when an outside peer (a program, a Python
//!   package, the KubeEdge fixtures) is missing;
//! - [`fixtures`]: KubeEdge's own files, from the directory in `EDGETWIN_KUBEEDGE_FIXTURES`;
//! - [`binaries`]: the workspace's binaries for process tests in other packages than theirs.
//!
//! Helpers return errors or panic with a message that names what is missing and how to get it.

pub mod binaries;
pub mod fixtures;
pub mod peers;
