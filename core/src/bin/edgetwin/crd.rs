//! `edgetwin crd print` and `edgetwin crd write DIR`: the Device and DeviceModel CRDs generated
//! from the Rust types (the same text as the committed `crds/*.yaml`).

use std::path::Path;
use std::process::ExitCode;

use edgetwin_core::crd;

/// Prints both CRDs as one YAML stream.
pub fn print() -> ExitCode {
    match crd::files() {
        Ok(files) => {
            let stream: Vec<String> = files.into_iter().map(|f| f.yaml).collect();
            super::write_stdout(stream.join("---\n").as_bytes(), "edgetwin crd print")
        }
        Err(e) => {
            eprintln!("edgetwin crd print: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes `devices.yaml` and `devicemodels.yaml` into `dir` (created if missing).
pub fn write(dir: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("edgetwin crd write: cannot create {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    match crd::write_files(dir) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edgetwin crd write: {e}");
            ExitCode::from(1)
        }
    }
}
