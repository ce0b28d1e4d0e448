//! Device and DeviceModel YAML from files and directories (`edgetwin edge --devices`, `ctl
//! apply -f`, `edgetwin convert -f`, `edgetwin pipeline test -f`). The parsing is the model's
//! ([`load::from_str`]); this module only reads.

use std::path::Path;

use edgetwin_model::devices::load::{self, Document, LoadError};

/// Reads a file as UTF-8 text; an error names the path.
pub fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every document of a YAML file.
pub fn from_file(path: &Path) -> Result<Vec<Document>, LoadError> {
    load::from_str(&read(path)?, &path.display().to_string())
}

/// Every document of the `*.yaml` / `*.yml` files of a directory (not recursive), in file-name
/// order.
pub fn from_dir(dir: &Path) -> Result<Vec<Document>, LoadError> {
    let unreadable = |source| LoadError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if load::is_manifest_file_name(&path) && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        documents.extend(from_file(&path)?);
    }
    Ok(documents)
}

/// A directory's documents ([`from_dir`]) or a file's ([`from_file`]).
pub fn from_path(path: &Path) -> Result<Vec<Document>, LoadError> {
    if path.is_dir() {
        from_dir(path)
    } else {
        from_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\n\
                         metadata: {name: thermo}\nspec: {}\n";
    const DEVICE: &str = "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\n\
                          metadata: {name: thermo-1}\nspec: {deviceModelRef: {name: thermo}}\n";

    #[test]
    fn loads_a_directory_in_file_name_order_and_reports_unreadable_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("b-device.yml"), DEVICE).expect("write");
        std::fs::write(dir.path().join("a-model.yaml"), MODEL).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").expect("write");
        std::fs::create_dir(dir.path().join("c.yaml")).expect("a directory named like YAML");
        let docs = from_path(dir.path()).expect("loads");
        let kinds: Vec<_> = docs.iter().map(|d| d.manifest.kind()).collect();
        assert_eq!(kinds, ["DeviceModel", "Device"]);
        assert!(docs[1].location.source.ends_with("b-device.yml"));

        let missing = dir.path().join("missing");
        let err = from_dir(&missing).expect_err("no such dir");
        assert!(matches!(err, LoadError::Read { .. }));
        assert!(err.to_string().contains("missing"), "{err}");
        let err = from_path(&missing).expect_err("no such file");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
