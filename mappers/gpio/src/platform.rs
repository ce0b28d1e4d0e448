//! Which board the mapper runs on, to choose the default backend: `rpi` on a Raspberry Pi,
//! `sim` anywhere else.

use std::path::Path;

use crate::config::BackendKind;

/// Where Linux exposes the board's device-tree `compatible` strings.
pub const COMPATIBLE: &str = "/proc/device-tree/compatible";

/// Whether device-tree `compatible` contents (NUL-separated strings such as
/// `raspberrypi,4-model-b\0brcm,bcm2711\0`) name a Raspberry Pi.
pub fn is_raspberry_pi(compatible: &[u8]) -> bool {
    compatible
        .split(|&b| b == 0)
        .any(|entry| entry.starts_with(b"raspberrypi,"))
}

/// The default backend for the board whose `compatible` file is at `path`, and why.
pub fn default_backend_from(path: &Path) -> (BackendKind, String) {
    match std::fs::read(path) {
        Ok(contents) if is_raspberry_pi(&contents) => (
            BackendKind::Rpi,
            format!("{} names a Raspberry Pi", path.display()),
        ),
        Ok(_) => (
            BackendKind::Sim,
            format!("{} names no Raspberry Pi", path.display()),
        ),
        Err(err) => (
            BackendKind::Sim,
            format!("no device tree ({}: {err})", path.display()),
        ),
    }
}

/// The default backend of this machine, and why (for the log).
pub fn default_backend() -> (BackendKind, String) {
    default_backend_from(Path::new(COMPATIBLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_raspberry_pi_compatible_strings() {
        assert!(is_raspberry_pi(b"raspberrypi,4-model-b\0brcm,bcm2711\0"));
        assert!(is_raspberry_pi(b"raspberrypi,5-model-b\0brcm,bcm2712\0"));
        assert!(!is_raspberry_pi(b"hardkernel,odroid-c4\0amlogic,sm1\0"));
        assert!(
            !is_raspberry_pi(b"brcm,bcm2711\0"),
            "the SoC alone is not a Pi"
        );
        assert!(!is_raspberry_pi(b""));
    }

    #[test]
    fn default_backend_follows_the_device_tree() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pi = dir.path().join("pi");
        std::fs::write(&pi, b"raspberrypi,3-model-b\0brcm,bcm2837\0").expect("write");
        assert_eq!(default_backend_from(&pi).0, BackendKind::Rpi);
        let other = dir.path().join("other");
        std::fs::write(&other, b"rockchip,rk3588\0").expect("write");
        assert_eq!(default_backend_from(&other).0, BackendKind::Sim);
        let (kind, why) = default_backend_from(&dir.path().join("missing"));
        assert_eq!(kind, BackendKind::Sim);
        assert!(why.contains("no device tree"), "{why}");
    }
}
