//! `edgetwin install` and `edgetwin uninstall`: put an edge node's binaries, its agent
//! configuration and hardened systemd units in place (see [`units`]), enable and start them;
//! and take them away again.
//!
//! What goes where (under `--root`, `/` by default):
//!
//! | file | mode | on uninstall |
//! |---|---|---|
//! | `PREFIX/bin/edgetwin`, `PREFIX/bin/edgetwin-mapper-*` | 0755 | removed |
//! | `/etc/systemd/system/edgetwin-edge.service`, `…/edgetwin-mapper-*.service` | 0644 | stopped, disabled, removed |
//! | `/etc/edgetwin/edge.yaml` | 0644 | kept (`--purge` removes `/etc/edgetwin`) |
//! | `/etc/edgetwin/node.token` (from `--token-file`) | 0600 | kept |
//! | `/etc/edgetwin/cloud-ca.pem` (from `--ca-file`) | 0644 | kept |
//! | `/etc/edgetwin/devices/*.yaml` (from `--devices`) | 0644 | kept |
//! | `/etc/edgetwin/installed-files` (what to remove) | 0644 | removed |
//! | `/var/lib/edgetwin` (the agent's store, created by systemd) | 0700 | kept (`--purge` removes it) |
//!
//! An existing `edge.yaml` is kept unless `--force`: a node's configuration is the operator's
//! once written. Binaries are replaced atomically (written beside, then renamed), so a running
//! service keeps its old file until it restarts. The written configuration is loaded back by
//! the agent's own loader before anything is written. With a `--root` other than `/` nothing
//! is enabled or started (a staging directory, an image being built, the tests).

pub mod units;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::edge::config::EdgeConfig;
use crate::tunnel::node::NodeName;
use units::{CloudLink, Layout};

/// The agent's configuration directory.
pub const CONFIG_DIR: &str = "/etc/edgetwin";
/// The agent's store (its systemd state directory).
pub const STATE_DIR: &str = "/var/lib/edgetwin";
/// Where the node token is kept.
pub const TOKEN_FILE: &str = "/etc/edgetwin/node.token";
/// Where the cloud's CA certificate is kept.
pub const CA_FILE: &str = "/etc/edgetwin/cloud-ca.pem";
/// Where the Device YAML of a node without a cloud is kept.
pub const DEVICES_DIR: &str = "/etc/edgetwin/devices";
/// The list of installed binaries and units, for `uninstall`.
pub const MANIFEST: &str = "/etc/edgetwin/installed-files";
/// Where systemd units go.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The default binary prefix.
pub const DEFAULT_PREFIX: &str = "/usr/local";
/// The default broker address (the agent's embedded broker).
pub const DEFAULT_BROKER: &str = "127.0.0.1:1883";

/// A mapper the installer knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MapperKind {
    /// `edgetwin-mapper-gpio`.
    Gpio,
    /// `edgetwin-mapper-modbus`.
    Modbus,
    /// `edgetwin-mapper-sim`.
    Sim,
}

impl MapperKind {
    /// Every mapper, for messages.
    pub const ALL: [MapperKind; 3] = [MapperKind::Gpio, MapperKind::Modbus, MapperKind::Sim];

    /// `gpio`, `modbus`, `sim`.
    pub fn name(self) -> &'static str {
        match self {
            MapperKind::Gpio => "gpio",
            MapperKind::Modbus => "modbus",
            MapperKind::Sim => "sim",
        }
    }

    /// The mapper named `name`.
    pub fn parse(name: &str) -> Result<MapperKind, InstallError> {
        MapperKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                InstallError::Usage(format!("unknown mapper {name:?}: use gpio, modbus or sim"))
            })
    }

    /// Its binary.
    pub fn binary(self) -> &'static str {
        match self {
            MapperKind::Gpio => "edgetwin-mapper-gpio",
            MapperKind::Modbus => "edgetwin-mapper-modbus",
            MapperKind::Sim => "edgetwin-mapper-sim",
        }
    }

    /// What it is, for the unit's description.
    pub fn description(self) -> &'static str {
        match self {
            MapperKind::Gpio => "GPIO mapper",
            MapperKind::Modbus => "Modbus mapper",
            MapperKind::Sim => "simulated-device mapper",
        }
    }
}

/// What `edgetwin install` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// The filesystem root to install into (`/`).
    pub root: PathBuf,
    /// The binaries' prefix (`/usr/local`).
    pub prefix: PathBuf,
    /// Where the binaries to install are (the directory of the running `edgetwin`).
    pub from: PathBuf,
    /// The edge node's name.
    pub node: String,
    /// The mappers to run.
    pub mappers: Vec<MapperKind>,
    /// The embedded broker's address.
    pub broker: String,
    /// The cloud's tunnel URL.
    pub cloud_url: Option<String>,
    /// The node token to install.
    pub token_file: Option<PathBuf>,
    /// The cloud's CA certificate to install.
    pub ca_file: Option<PathBuf>,
    /// Allow a plain `ws://` cloud URL.
    pub insecure: bool,
    /// Device YAML (a file or a directory) to serve without a cloud.
    pub devices: Option<PathBuf>,
    /// Replace an existing `edge.yaml`.
    pub force: bool,
    /// Enable and start the units (only with root `/`).
    pub start: bool,
}

/// Why installing or uninstalling failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The options do not make a working node.
    #[error("{0}")]
    Usage(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// `systemctl` failed.
    #[error("systemctl {args}: {detail}")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// What it said.
        detail: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `root` joined with an absolute path of the target system.
fn under(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// A file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    /// Its path on the node.
    path: PathBuf,
    contents: Contents,
    mode: u32,
    /// Listed in the manifest (removed by `uninstall`); configuration is not.
    removable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Contents {
    Text(String),
    CopyOf(PathBuf),
}

/// Checks the options and lists the files to write, in order.
fn plan(options: &InstallOptions) -> Result<Vec<Planned>, InstallError> {
    let usage = |m: String| InstallError::Usage(m);
    NodeName::new(&options.node).map_err(|e| usage(format!("--node: {e}")))?;
    if options.cloud_url.is_none() && options.devices.is_none() {
        return Err(usage(
            "give the cloud (--cloud-url, --token-file, --ca-file) or the node's Devices (--devices FILE|DIR)".into(),
        ));
    }
    let cloud = match &options.cloud_url {
        None => {
            if options.token_file.is_some() || options.ca_file.is_some() {
                return Err(usage("--token-file and --ca-file need --cloud-url".into()));
            }
            None
        }
        Some(url) => {
            if options.token_file.is_none() {
                return Err(usage(
                    "--cloud-url needs --token-file (the node's token: `edgetwin cloud token create NODE` on the cloud)".into(),
                ));
            }
            let secure = url.starts_with("wss://");
            let plain_allowed = url.starts_with("ws://") && options.insecure;
            if !(secure || plain_allowed) {
                return Err(usage(format!(
                    "--cloud-url {url:?}: use wss://HOST:PORT (ws:// only with --insecure)"
                )));
            }
            if secure && options.ca_file.is_none() {
                return Err(usage(
                    "a wss:// cloud needs --ca-file (the CA its certificate chains to)".into(),
                ));
            }
            Some(CloudLink {
                url: url.clone(),
                ca: options.ca_file.is_some(),
                insecure: options.insecure,
            })
        }
    };
    let bin_dir = Path::new("/").join(&options.prefix).join("bin");
    let layout = Layout {
        bin_dir: bin_dir.display().to_string(),
        node: options.node.clone(),
        broker: options.broker.clone(),
        cloud,
        devices: options.devices.is_some(),
    };
    let config = units::edge_config(&layout);
    // The agent's own loader must accept what is written.
    EdgeConfig::from_yaml(&config, "edge.yaml (to install)")
        .map_err(|e| usage(format!("the configuration would not load: {e}")))?;

    let mut files = Vec::new();
    let binary = |name: &str| Planned {
        path: bin_dir.join(name),
        contents: Contents::CopyOf(options.from.join(name)),
        mode: 0o755,
        removable: true,
    };
    files.push(binary("edgetwin"));
    for kind in &options.mappers {
        files.push(binary(kind.binary()));
    }
    let config_file = |name: &str, contents: Contents, mode: u32| Planned {
        path: Path::new(CONFIG_DIR).join(name),
        contents,
        mode,
        removable: false,
    };
    files.push(config_file("edge.yaml", Contents::Text(config), 0o644));
    if let Some(token) = &options.token_file {
        files.push(config_file(
            "node.token",
            Contents::CopyOf(token.clone()),
            0o600,
        ));
    }
    if let Some(ca) = &options.ca_file {
        files.push(config_file(
            "cloud-ca.pem",
            Contents::CopyOf(ca.clone()),
            0o644,
        ));
    }
    if let Some(devices) = &options.devices {
        for source in device_files(devices)? {
            let name = source.file_name().unwrap_or_default().to_owned();
            files.push(Planned {
                path: Path::new(DEVICES_DIR).join(name),
                contents: Contents::CopyOf(source),
                mode: 0o644,
                removable: false,
            });
        }
    }
    let unit = |name: String, text: String| Planned {
        path: Path::new(UNIT_DIR).join(name),
        contents: Contents::Text(text),
        mode: 0o644,
        removable: true,
    };
    files.push(unit(units::EDGE_UNIT.into(), units::edge_unit(&layout)));
    for kind in &options.mappers {
        files.push(unit(
            units::unit_name(kind.binary()),
            units::mapper_unit(*kind, &layout),
        ));
    }
    Ok(files)
}

/// The YAML files of `--devices`: the file itself, or a directory's `*.yaml` / `*.yml`.
fn device_files(path: &Path) -> Result<Vec<PathBuf>, InstallError> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(InstallError::Usage(format!(
            "--devices {}: no .yaml files in it",
            path.display()
        )));
    }
    Ok(files)
}

/// Installs: writes every planned file under the root, records the manifest, and (root `/`,
/// `start`) reloads systemd, enables and starts the units. Says what it did on `out`.
pub fn install(options: &InstallOptions, out: &mut dyn Write) -> Result<(), InstallError> {
    let files = plan(options)?;
    let root = &options.root;
    let mut installed = Vec::new();
    for file in &files {
        let target = under(root, &file.path);
        if file.path.ends_with("edge.yaml") && target.exists() && !options.force {
            let _ = writeln!(
                out,
                "kept      {} (exists; --force replaces it)",
                file.path.display()
            );
            continue;
        }
        write_file(&target, &file.contents, file.mode)?;
        let _ = writeln!(out, "installed {}", file.path.display());
        if file.removable {
            installed.push(file.path.display().to_string());
        }
    }
    let manifest = format!("{}\n{}\n", units::WRITTEN_BY, installed.join("\n"));
    write_file(&under(root, MANIFEST), &Contents::Text(manifest), 0o644)?;
    let unit_names: Vec<String> = std::iter::once(units::EDGE_UNIT.to_owned())
        .chain(options.mappers.iter().map(|k| units::unit_name(k.binary())))
        .collect();
    if root != Path::new("/") || !options.start {
        let _ = writeln!(
            out,
            "not started (root {}); on the node: systemctl daemon-reload && systemctl enable --now {}",
            root.display(),
            unit_names.join(" ")
        );
        return Ok(());
    }
    systemctl(&["daemon-reload"])?;
    let mut args = vec!["enable", "--now"];
    args.extend(unit_names.iter().map(String::as_str));
    systemctl(&args)?;
    let _ = writeln!(out, "enabled and started {}", unit_names.join(" "));
    Ok(())
}

/// Uninstalls: stops and disables the installed units (root `/`), removes every file of the
/// manifest and the manifest; with `purge` also `/etc/edgetwin` and the agent's store.
pub fn uninstall(root: &Path, purge: bool, out: &mut dyn Write) -> Result<(), InstallError> {
    let manifest = under(root, MANIFEST);
    let listed = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(InstallError::Usage(format!(
                "{} not found: nothing was installed by `edgetwin install` under {}",
                MANIFEST,
                root.display()
            )));
        }
        Err(err) => return Err(io(&manifest)(err)),
    };
    let files: Vec<&str> = listed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let unit_names: Vec<&str> = files
        .iter()
        .filter(|f| f.starts_with(UNIT_DIR))
        .filter_map(|f| Path::new(f).file_name()?.to_str())
        .collect();
    if root == Path::new("/") && !unit_names.is_empty() {
        let mut args = vec!["disable", "--now"];
        args.extend(&unit_names);
        systemctl(&args)?;
        let _ = writeln!(out, "stopped and disabled {}", unit_names.join(" "));
    }
    for file in &files {
        let path = under(root, file);
        // A unit edited by hand since is still ours to remove only if it still says so.
        if file.starts_with(UNIT_DIR) && path.exists() && !units::written_by_us(&path) {
            let _ = writeln!(
                out,
                "left      {file} (no longer written by edgetwin install)"
            );
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                let _ = writeln!(out, "removed   {file}");
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(&path)(err)),
        }
    }
    std::fs::remove_file(&manifest).map_err(io(&manifest))?;
    if root == Path::new("/") && !unit_names.is_empty() {
        systemctl(&["daemon-reload"])?;
    }
    if purge {
        // The store of a dynamic user lives in /var/lib/private, linked from /var/lib.
        for dir in [CONFIG_DIR, STATE_DIR, "/var/lib/private/edgetwin"] {
            let path = under(root, dir);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path).map_err(io(&path))?,
                Ok(_) => std::fs::remove_file(&path).map_err(io(&path))?,
                Err(_) => continue,
            }
            let _ = writeln!(out, "removed   {dir}");
        }
    } else {
        let _ = writeln!(
            out,
            "kept      {CONFIG_DIR} and {STATE_DIR} (--purge removes them)"
        );
    }
    Ok(())
}

/// Writes one file with its mode: beside it first, then renamed over it (a running binary keeps
/// its old file).
fn write_file(target: &Path, contents: &Contents, mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut partial = target.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    match contents {
        Contents::Text(text) => std::fs::write(&partial, text).map_err(io(&partial))?,
        Contents::CopyOf(source) => {
            std::fs::copy(source, &partial).map_err(io(source))?;
        }
    }
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))
        .map_err(io(&partial))?;
    std::fs::rename(&partial, target).map_err(io(target))
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let output =
        Command::new("systemctl")
            .args(args)
            .output()
            .map_err(|e| InstallError::Systemctl {
                args: args.join(" "),
                detail: e.to_string(),
            })?;
    if !output.status.success() {
        return Err(InstallError::Systemctl {
            args: args.join(" "),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(root: &Path, from: &Path) -> InstallOptions {
        InstallOptions {
            root: root.to_owned(),
            prefix: PathBuf::from(DEFAULT_PREFIX),
            from: from.to_owned(),
            node: "pi-traffic".into(),
            mappers: vec![MapperKind::Gpio],
            broker: DEFAULT_BROKER.into(),
            cloud_url: None,
            token_file: None,
            ca_file: None,
            insecure: false,
            devices: Some(from.join("devices.yaml")),
            force: false,
            start: false,
        }
    }

    #[test]
    fn options_that_cannot_make_a_working_node_are_refused() {
        let dir = Path::new("/nonexistent");
        let mut bad = options(dir, dir);
        bad.node = "Pi_Traffic".into();
        assert!(plan(&bad).is_err_and(|e| e.to_string().contains("--node")));
        let mut bad = options(dir, dir);
        bad.devices = None;
        assert!(plan(&bad).is_err_and(|e| e.to_string().contains("--cloud-url")));
        bad.cloud_url = Some("wss://cloud:10000".into());
        assert!(plan(&bad).is_err_and(|e| e.to_string().contains("--token-file")));
        bad.token_file = Some(dir.join("token"));
        assert!(plan(&bad).is_err_and(|e| e.to_string().contains("--ca-file")));
        bad.cloud_url = Some("ws://cloud:10000".into());
        assert!(plan(&bad).is_err_and(|e| e.to_string().contains("--insecure")));
        bad.insecure = true;
        assert!(plan(&bad).is_ok());
        assert_eq!(
            MapperKind::parse("zigbee").map_err(|e| e.to_string()),
            Err("unknown mapper \"zigbee\": use gpio, modbus or sim".into())
        );
    }

    #[test]
    fn install_writes_modes_keeps_the_config_and_uninstall_removes_only_its_files() {
        use std::os::unix::fs::PermissionsExt;
        let from = tempfile::tempdir().expect("temp dir");
        let root = tempfile::tempdir().expect("temp dir");
        for name in ["edgetwin", "edgetwin-mapper-gpio"] {
            std::fs::write(from.path().join(name), b"#!/bin/sh\n").expect("binary");
        }
        std::fs::write(from.path().join("devices.yaml"), b"# devices\n").expect("devices");
        let opts = options(root.path(), from.path());
        let mut out = Vec::new();
        install(&opts, &mut out).expect("installed");
        let mode = |p: &str| {
            std::fs::metadata(under(root.path(), p))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode("/usr/local/bin/edgetwin-mapper-gpio"), 0o755);
        assert_eq!(mode("/etc/systemd/system/edgetwin-edge.service"), 0o644);
        assert_eq!(mode("/etc/edgetwin/devices/devices.yaml"), 0o644);
        let config = under(root.path(), "/etc/edgetwin/edge.yaml");
        std::fs::write(&config, "nodeName: edited\n").expect("edit");
        let mut again = Vec::new();
        install(&opts, &mut again).expect("installed again");
        assert!(String::from_utf8_lossy(&again).contains("kept      /etc/edgetwin/edge.yaml"));
        assert_eq!(
            std::fs::read_to_string(&config).ok().as_deref(),
            Some("nodeName: edited\n")
        );

        let mut removed = Vec::new();
        uninstall(root.path(), false, &mut removed).expect("uninstalled");
        assert!(!under(root.path(), "/usr/local/bin/edgetwin").exists());
        assert!(!under(root.path(), "/etc/systemd/system/edgetwin-edge.service").exists());
        assert!(config.exists(), "the configuration is kept");
        assert!(
            uninstall(root.path(), false, &mut removed).is_err(),
            "nothing left"
        );
        install(&opts, &mut Vec::new()).expect("installed again");
        uninstall(root.path(), true, &mut Vec::new()).expect("purged");
        assert!(!under(root.path(), CONFIG_DIR).exists());
    }
}
