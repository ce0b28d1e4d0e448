//! Test support: KubeEdge's own files, from the directory in `EDGETWIN_KUBEEDGE_FIXTURES`.

use std::path::PathBuf;

/// `$EDGETWIN_KUBEEDGE_FIXTURES/<sub>`, or `None` (after printing that the test skips) when the
/// variable is unset.
pub(crate) fn kubeedge_dir(sub: &str, test: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os("EDGETWIN_KUBEEDGE_FIXTURES") else {
        println!("{test}: EDGETWIN_KUBEEDGE_FIXTURES is unset, skipping");
        return None;
    };
    let dir = PathBuf::from(root).join(sub);
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    Some(dir)
}

/// The files of a fixture directory whose name starts with `prefix`, sorted.
pub(crate) fn files_starting_with(dir: &std::path::Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture directory is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}
