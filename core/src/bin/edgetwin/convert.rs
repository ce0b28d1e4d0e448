//! `edgetwin convert -f FILE`: KubeEdge v1alpha2 Device / DeviceModel YAML to v1beta1 on stdout;
//! warnings and errors on stderr, exit status 1 on error.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use edgetwin_model::devices::convert::{self, Conversion, ConvertError};

/// Converts `file` (`-` reads stdin) and prints the v1beta1 YAML.
pub fn run(file: &Path) -> ExitCode {
    match convert(file).and_then(|c| Ok((c.to_yaml()?, c))) {
        Ok((_, conversion)) if conversion.manifests.is_empty() => {
            eprintln!(
                "edgetwin convert: {}: no Device or DeviceModel in the input",
                file.display()
            );
            ExitCode::from(1)
        }
        Ok((yaml, conversion)) => {
            for warning in &conversion.warnings {
                eprintln!("warning: {warning}");
            }
            super::write_stdout(yaml.as_bytes(), "edgetwin convert")
        }
        Err(e) => {
            eprintln!("edgetwin convert: {e}");
            ExitCode::from(1)
        }
    }
}

fn convert(file: &Path) -> Result<Conversion, ConvertError> {
    if file != Path::new("-") {
        let text = edgetwin_core::manifests::read(file)?;
        return convert::from_str(&text, &file.display().to_string());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| edgetwin_model::devices::LoadError::Read {
            path: file.to_owned(),
            source,
        })?;
    convert::from_str(&text, "<stdin>")
}
