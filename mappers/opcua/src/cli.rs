//! The OPC-UA mapper's own command-line option; the rest go to the SDK's common parser.

use std::path::PathBuf;

/// Where the data directory is when neither `--data-dir` nor the environment names one.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/edgetwin/opcua";
/// The environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "EDGETWIN_OPCUA_DATA_DIR";

/// The help text of the OPC-UA options, appended to the SDK's (after a blank line).
pub const USAGE: &str = "\n\
OPC-UA OPTIONS:
  --data-dir DIR           the mapper's client certificate and trust list live in DIR/pki
                           (generated on first start) [env EDGETWIN_OPCUA_DATA_DIR, default
                           /var/lib/edgetwin/opcua]
";

/// Takes `--data-dir` out of `args` (without the program name); returns the data directory
/// (from the option, else `env`, else the default) and the arguments left for the SDK.
pub fn split(args: &[String], env: Option<PathBuf>) -> Result<(PathBuf, Vec<String>), String> {
    let mut data_dir = None;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--data-dir=") {
            data_dir = Some(PathBuf::from(value));
        } else if arg == "--data-dir" {
            let value = args.next().ok_or("--data-dir needs a value")?;
            data_dir = Some(PathBuf::from(value));
        } else {
            rest.push(arg.clone());
        }
    }
    let data_dir = data_dir
        .or(env)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        return Err("--data-dir: empty path".into());
    }
    Ok((data_dir, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_data_dir_comes_from_the_option_the_environment_or_the_default() {
        let (dir, rest) = split(&args(&["--node", "n", "--data-dir", "/d"]), None).expect("valid");
        assert_eq!(dir, PathBuf::from("/d"));
        assert_eq!(rest, args(&["--node", "n"]));
        let (dir, _) = split(&args(&["--data-dir=/e"]), Some("/env".into())).expect("valid");
        assert_eq!(dir, PathBuf::from("/e"));
        let (dir, _) = split(&[], Some("/env".into())).expect("valid");
        assert_eq!(dir, PathBuf::from("/env"));
        let (dir, _) = split(&[], None).expect("valid");
        assert_eq!(dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(split(&args(&["--data-dir"]), None).is_err());
        assert!(split(&args(&["--data-dir="]), None).is_err());
    }
}
