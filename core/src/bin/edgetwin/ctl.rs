//! `edgetwin ctl`: argument parsing only; the verbs are `edgetwin_core::ctl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `edgetwin ctl` flags and verb.
#[derive(Debug, Args)]
#[cfg_attr(not(feature = "cloud"), allow(dead_code))]
pub struct CtlArgs {
    /// The registry API URL (default: the `registry.url` file in the data directory).
    #[arg(long, global = true, env = "EDGETWIN_SERVER")]
    server: Option<String>,
    /// The API token (default: the `registry.token` file in the data directory).
    #[arg(long, global = true, env = "EDGETWIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cloud's data directory, where it writes the API URL and token.
    #[arg(long, global = true, env = "EDGETWIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The namespace (default: `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
#[cfg_attr(not(feature = "cloud"), allow(dead_code))]
enum Verb {
    /// Create or update the Devices and DeviceModels in files or directories of YAML.
    Apply {
        /// A YAML file, or a directory of `*.yaml` / `*.yml` files. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// List Devices or DeviceModels, or show one.
    Get {
        /// `devices` (`device`, `dev`) or `devicemodels` (`devicemodel`, `dm`).
        resource: String,
        /// One object's name.
        name: Option<String>,
        /// Output format: wide, json, yaml or name (default: a table).
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// List across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show a Device (desired, reported and actuation state per property, events) or a
    /// DeviceModel in detail.
    Describe {
        /// `device` or `devicemodel`.
        resource: String,
        /// The object's name.
        name: String,
    },
    /// Set desired property values of a Device: `set [device] NAME prop=value…`.
    Set {
        /// `[device] NAME prop=value…`.
        #[arg(required = true, num_args = 2.., value_name = "[device] NAME prop=value")]
        args: Vec<String>,
    },
    /// Change an object with a JSON merge patch or a JSON patch.
    Patch {
        /// `device` or `devicemodel`.
        resource: String,
        /// The object's name.
        name: String,
        /// The patch type: `merge` (JSON merge patch, RFC 7386) or `json` (JSON patch, RFC 6902).
        #[arg(long = "type", default_value = "merge")]
        patch_type: String,
        /// The patch, as JSON.
        #[arg(short = 'p', long)]
        patch: String,
    },
    /// Delete objects by name, or the objects described in files.
    Delete {
        /// `device` or `devicemodel` (not with `-f`).
        resource: Option<String>,
        /// Names of the objects to delete.
        names: Vec<String>,
        /// Delete what these files or directories describe.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
    },
    /// Print every object, then each change as it happens, until interrupted.
    Watch {
        /// `devices` (default) or `devicemodels`.
        resource: Option<String>,
        /// Watch all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only changes after this resourceVersion.
        #[arg(long)]
        resource_version: Option<u64>,
        /// Output format: json, yaml or name (default: a row per change).
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
}

/// Runs `edgetwin ctl`: 0 on success, 1 on failure (the reason on stderr, like kubectl).
#[cfg(feature = "cloud")]
pub fn run(args: CtlArgs) -> ExitCode {
    use std::io::Write;
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(edgetwin_core::ctl::CtlError::Io)
        .and_then(|runtime| runtime.block_on(execute(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Each failed object was printed already.
        Err(edgetwin_core::ctl::CtlError::Partial { .. }) => ExitCode::FAILURE,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "{err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "cloud")]
async fn execute(args: CtlArgs) -> Result<(), edgetwin_core::ctl::CtlError> {
    use edgetwin_core::cloud::registry::Kind;
    use edgetwin_core::ctl::{Ctl, CtlError, connect, output::Format, parse_kind, parse_targets};

    let client = connect(
        args.server.as_deref(),
        args.token.as_deref(),
        args.data_dir.as_deref(),
    )?;
    let ctl = Ctl::new(client, args.namespace.as_deref());
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let format = |output: Option<String>| output.unwrap_or_default().parse::<Format>();
    match args.verb {
        Verb::Apply { files } => ctl.apply(&files, &mut out, &mut err).await,
        Verb::Get {
            resource,
            name,
            output,
            all_namespaces,
        } => {
            let kind = parse_kind(&resource)?;
            ctl.get(
                kind,
                name.as_deref(),
                format(output)?,
                all_namespaces,
                &mut out,
                &mut err,
            )
            .await
        }
        Verb::Describe { resource, name } => {
            ctl.describe(parse_kind(&resource)?, &name, &mut out).await
        }
        Verb::Set { args } => {
            // `set device NAME a=b` and `set NAME a=b` (a Device named like a resource word
            // still works: `set device a=b` sets `a` on the Device named "device").
            let skip_word = args.len() > 2
                && !args[1].contains('=')
                && parse_kind(&args[0]).ok() == Some(Kind::Device);
            let args = if skip_word { &args[1..] } else { &args[..] };
            ctl.set(&args[0], &args[1..], &mut out).await
        }
        Verb::Patch {
            resource,
            name,
            patch_type,
            patch,
        } => {
            ctl.patch(parse_kind(&resource)?, &name, &patch_type, &patch, &mut out)
                .await
        }
        Verb::Delete {
            resource,
            names,
            files,
        } => match (resource, files.is_empty()) {
            (None, false) => ctl.delete_files(&files, &mut out, &mut err).await,
            (Some(resource), true) => {
                let targets = parse_targets(&resource, &names)?;
                ctl.delete_named(&targets, &mut out, &mut err).await
            }
            (Some(_), false) => Err(CtlError::Usage("name objects or pass -f, not both".into())),
            (None, true) => Err(CtlError::Usage(
                "you must provide one or more resources by argument or filename".into(),
            )),
        },
        Verb::Watch {
            resource,
            all_namespaces,
            resource_version,
            output,
        } => {
            let kind = parse_kind(resource.as_deref().unwrap_or("devices"))?;
            ctl.watch(
                kind,
                all_namespaces,
                resource_version,
                format(output)?,
                &mut out,
            )
            .await
        }
    }
}

/// Without the `cloud` feature the client is not built.
#[cfg(not(feature = "cloud"))]
pub fn run(_args: CtlArgs) -> ExitCode {
    eprintln!("edgetwin ctl: this binary was built without the `cloud` feature");
    ExitCode::from(2)
}
