//! `edgetwin ctl`: kubectl-like verbs over the embedded registry's HTTP API.
//!
//! The binary only parses arguments; everything else is here so that tests drive the same code
//! against a real server. Verbs print to `out` (results) and `err` (warnings, per-object errors)
//! like kubectl, and return an error when the command failed (the binary then exits 1).

pub mod describe;
pub mod output;

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::output::{Format, kind_name};
use crate::cloud::registry::Kind;
use crate::cloud::registry::embedded::client::{ClientError, RegistryClient, Written};
use crate::cloud::registry::embedded::data_dir::DataDir;
use edgetwin_model::devices::load::{self, LoadError};
use edgetwin_model::devices::{Device, DeviceModel, Manifest};

/// Why a ctl command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The server refused, or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A manifest file could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The command line does not make sense.
    #[error("error: {0}")]
    Usage(String),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// Output could not be encoded.
    #[error("cannot encode output: {0}")]
    Encode(String),
    /// Some objects failed; each error was already printed.
    #[error("{failed} of {total} objects failed")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
    /// A watch ended with an error from the server.
    #[error("watch ended: {0}")]
    Watch(String),
}

/// Parses a resource name like kubectl: `devices`, `device`, `dev`, `devicemodels`,
/// `devicemodel`, `dm`, optionally with `.devices.kubeedge.io`.
pub fn parse_kind(text: &str) -> Result<Kind, CtlError> {
    let short = text.strip_suffix(".devices.kubeedge.io").unwrap_or(text);
    match short.to_ascii_lowercase().as_str() {
        "device" | "devices" | "dev" | "devs" => Ok(Kind::Device),
        "devicemodel" | "devicemodels" | "dm" | "dms" => Ok(Kind::DeviceModel),
        _ => Err(CtlError::Usage(format!(
            "the server doesn't have a resource type {text:?} (try devices or devicemodels)"
        ))),
    }
}

/// The objects a verb names, as kubectl takes them: `TYPE NAME…`, or `TYPE/NAME…` (what
/// `get -o name` prints, e.g. `device.devices.kubeedge.io/lamp`), grouped by kind in order.
pub fn parse_targets(
    resource: &str,
    names: &[String],
) -> Result<Vec<(Kind, Vec<String>)>, CtlError> {
    if !resource.contains('/') {
        return Ok(vec![(parse_kind(resource)?, names.to_vec())]);
    }
    let mut targets: Vec<(Kind, Vec<String>)> = Vec::new();
    for text in std::iter::once(resource).chain(names.iter().map(String::as_str)) {
        let Some((kind, name)) = text.split_once('/') else {
            return Err(CtlError::Usage(format!(
                "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {text:?})"
            )));
        };
        let kind = parse_kind(kind)?;
        if name.is_empty() || name.contains('/') {
            return Err(CtlError::Usage(format!(
                "{text:?} is not TYPE/NAME (e.g. device/traffic-light)"
            )));
        }
        match targets.last_mut() {
            Some((last, names)) if *last == kind => names.push(name.to_owned()),
            _ => targets.push((kind, vec![name.to_owned()])),
        }
    }
    Ok(targets)
}

/// Where the server is and how to authenticate: flags (or their environment variables) first,
/// then the files the cloud wrote into its data directory.
pub fn connect(
    server: Option<&str>,
    token: Option<&str>,
    data_dir: Option<&Path>,
) -> Result<RegistryClient, CtlError> {
    let dir = DataDir::new(data_dir.map_or_else(DataDir::default_location, Path::to_path_buf));
    let url = match server {
        Some(url) => url.to_owned(),
        None => dir.read_url().map_err(|err| {
            CtlError::Usage(format!(
                "no registry URL: pass --server or set EDGETWIN_SERVER, or start `edgetwin cloud` with data directory {} ({err})",
                dir.root().display()
            ))
        })?,
    };
    let token = match token {
        Some(token) => token.to_owned(),
        None => dir.read_token().map_err(|err| {
            CtlError::Usage(format!(
                "no API token: pass --token or set EDGETWIN_TOKEN, or point --data-dir at the cloud's data directory ({err})"
            ))
        })?,
    };
    Ok(RegistryClient::new(&url, &token)?)
}

/// A ctl session: a client and the namespace to work in.
#[derive(Debug, Clone)]
pub struct Ctl {
    client: RegistryClient,
    namespace: String,
    explicit_namespace: bool,
}

impl Ctl {
    /// A session in `namespace` (`None`: `default`, and objects may name their own).
    pub fn new(client: RegistryClient, namespace: Option<&str>) -> Self {
        Self {
            client,
            namespace: namespace.unwrap_or("default").to_owned(),
            explicit_namespace: namespace.is_some(),
        }
    }

    /// The namespace of a manifest object: its own, or the session's; a conflict with an
    /// explicit `-n` is an error, as in kubectl.
    fn namespace_for(&self, manifest: &Manifest) -> Result<String, CtlError> {
        match declared_namespace(manifest) {
            Some(ns) if self.explicit_namespace && ns != self.namespace => {
                Err(CtlError::Usage(format!(
                    "the namespace from the provided object {ns:?} does not match the namespace {:?}. You must pass '--namespace={ns}' to perform this operation.",
                    self.namespace
                )))
            }
            Some(ns) => Ok(ns),
            None => Ok(self.namespace.clone()),
        }
    }

    /// `apply -f FILE|DIR…`: loads every file first (any load error stops before writing), then
    /// creates or updates each object, printing `kind/name created|configured|unchanged`.
    pub async fn apply(
        &self,
        paths: &[PathBuf],
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let documents = load_paths(paths)?;
        let total = documents.len();
        let mut failed = 0;
        for document in documents {
            let mut manifest = document.manifest;
            let namespace = self.namespace_for(&manifest)?;
            set_namespace(&mut manifest, &namespace);
            let (kind, name) = (kind_of(&manifest), manifest.name().to_owned());
            let written = match &manifest {
                Manifest::Device(d) => {
                    self.client
                        .apply::<_, Value>(kind, &namespace, &name, d)
                        .await
                }
                Manifest::DeviceModel(m) => {
                    self.client
                        .apply::<_, Value>(kind, &namespace, &name, m)
                        .await
                }
            };
            match written {
                Ok(written) => {
                    for warning in &written.warnings {
                        writeln!(err, "Warning: {warning}")?;
                    }
                    let result = if written.result.is_empty() {
                        "configured"
                    } else {
                        &written.result
                    };
                    writeln!(out, "{}/{name} {result}", kind_name(kind))?;
                }
                Err(e) => {
                    failed += 1;
                    writeln!(
                        err,
                        "{} (when applying {} from {})",
                        e,
                        kind_name(kind),
                        document.location
                    )?;
                }
            }
        }
        if failed > 0 {
            return Err(CtlError::Partial { failed, total });
        }
        Ok(())
    }

    /// `get KIND [NAME] [-o FORMAT] [-A]`.
    pub async fn get(
        &self,
        kind: Kind,
        name: Option<&str>,
        format: Format,
        all_namespaces: bool,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        match kind {
            Kind::Device => {
                self.get_kind::<Device>(kind, name, format, all_namespaces, out, err)
                    .await
            }
            Kind::DeviceModel => {
                self.get_kind::<DeviceModel>(kind, name, format, all_namespaces, out, err)
                    .await
            }
        }
    }

    async fn get_kind<T: Printable>(
        &self,
        kind: Kind,
        name: Option<&str>,
        format: Format,
        all_namespaces: bool,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let (objects, single): (Vec<T>, bool) = match name {
            Some(name) => (
                vec![self.client.get(kind, &self.namespace, name).await?],
                true,
            ),
            None => {
                let namespace = (!all_namespaces).then_some(self.namespace.as_str());
                (self.client.list(kind, namespace).await?.items, false)
            }
        };
        match format {
            Format::Json | Format::Yaml => output::write_serialized(&objects, single, format, out),
            Format::Name => {
                for object in &objects {
                    writeln!(out, "{}/{}", kind_name(kind), object.object_name())?;
                }
                Ok(())
            }
            Format::Table | Format::Wide => {
                if objects.is_empty() {
                    if all_namespaces {
                        writeln!(err, "No resources found")?;
                    } else {
                        writeln!(err, "No resources found in {} namespace.", self.namespace)?;
                    }
                    return Ok(());
                }
                let table = T::table(
                    &objects,
                    all_namespaces && name.is_none(),
                    format == Format::Wide,
                    Timestamp::now(),
                );
                Ok(table.write(out)?)
            }
        }
    }

    /// `describe device|devicemodel NAME`.
    pub async fn describe(
        &self,
        kind: Kind,
        name: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let now = Timestamp::now();
        match kind {
            Kind::Device => {
                let device: Device = self.client.get(kind, &self.namespace, name).await?;
                let events = self.client.device_events(&self.namespace, name).await?;
                describe::device(&device, &events.items, now, out)?;
            }
            Kind::DeviceModel => {
                let model: DeviceModel = self.client.get(kind, &self.namespace, name).await?;
                describe::device_model(&model, now, out)?;
            }
        }
        Ok(())
    }

    /// `set [device] NAME prop=value…`: sets desired values by property name, in one request
    /// (the registry's `desired` subresource changes the named properties under its write lock,
    /// so concurrent sets of other properties are never lost and nothing needs retrying).
    pub async fn set(
        &self,
        name: &str,
        assignments: &[String],
        out: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let assignments = parse_assignments(assignments)?;
        let written = self
            .client
            .set_desired::<Value>(&self.namespace, name, &assignments)
            .await?;
        print_patched(out, Kind::Device, name, &written)
    }

    /// `patch KIND NAME --type merge|json -p JSON`: a JSON merge patch (RFC 7386) or a JSON
    /// patch (RFC 6902), as `kubectl patch` sends them for custom resources.
    pub async fn patch(
        &self,
        kind: Kind,
        name: &str,
        patch_type: &str,
        patch: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let patch: Value = serde_json::from_str(patch)
            .map_err(|e| CtlError::Usage(format!("the patch is not valid JSON: {e}")))?;
        let written = match patch_type {
            "merge" => {
                self.client
                    .merge_patch::<Value>(kind, &self.namespace, name, &patch)
                    .await?
            }
            "json" if patch.is_array() => {
                self.client
                    .json_patch::<Value>(kind, &self.namespace, name, &patch)
                    .await?
            }
            "json" => {
                return Err(CtlError::Usage(
                    "a JSON patch is an array of operations, e.g. [{\"op\":\"replace\",\"path\":\"/spec/nodeName\",\"value\":\"pi-2\"}]".into(),
                ));
            }
            other => {
                return Err(CtlError::Usage(format!(
                    "--type {other:?} is not supported: use merge (RFC 7386) or json (RFC 6902); custom resources have no strategic merge patch"
                )));
            }
        };
        print_patched(out, kind, name, &written)
    }

    /// `delete KIND NAME…`.
    pub async fn delete(
        &self,
        kind: Kind,
        names: &[String],
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        self.delete_named(&[(kind, names.to_vec())], out, err).await
    }

    /// `delete TYPE/NAME…`: deletes objects of several kinds (see [`parse_targets`]).
    pub async fn delete_named(
        &self,
        targets: &[(Kind, Vec<String>)],
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let targets: Vec<_> = targets
            .iter()
            .flat_map(|(kind, names)| {
                names
                    .iter()
                    .map(|n| (*kind, self.namespace.clone(), n.clone(), None))
            })
            .collect();
        self.delete_all(targets, out, err).await
    }

    /// `delete -f FILE|DIR…`: deletes the objects the files describe.
    pub async fn delete_files(
        &self,
        paths: &[PathBuf],
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        let mut targets = Vec::new();
        for document in load_paths(paths)? {
            let namespace = self.namespace_for(&document.manifest)?;
            let name = document.manifest.name().to_owned();
            targets.push((
                kind_of(&document.manifest),
                namespace,
                name,
                Some(document.location.to_string()),
            ));
        }
        self.delete_all(targets, out, err).await
    }

    async fn delete_all(
        &self,
        targets: Vec<(Kind, String, String, Option<String>)>,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        if targets.is_empty() {
            return Err(CtlError::Usage(
                "nothing to delete: name objects or pass -f".into(),
            ));
        }
        let total = targets.len();
        let mut failed = 0;
        for (kind, namespace, name, location) in targets {
            match self.client.delete::<Value>(kind, &namespace, &name).await {
                Ok(_) => writeln!(out, "{} {name:?} deleted", kind_name(kind))?,
                Err(e) => {
                    failed += 1;
                    match location {
                        Some(at) => writeln!(err, "{e} (from {at})")?,
                        None => writeln!(err, "{e}")?,
                    }
                }
            }
        }
        if failed > 0 {
            return Err(CtlError::Partial { failed, total });
        }
        Ok(())
    }

    /// `watch [KIND] [-A] [--resource-version N] [-o json|yaml]`: prints every existing object,
    /// then each change, until the server ends the stream.
    pub async fn watch(
        &self,
        kind: Kind,
        all_namespaces: bool,
        resource_version: Option<u64>,
        format: Format,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CtlError> {
        use futures::StreamExt;
        let namespace = (!all_namespaces).then_some(self.namespace.as_str());
        let mut events = self.client.watch(kind, namespace, resource_version).await?;
        if matches!(format, Format::Table | Format::Wide) {
            writeln!(out, "{}", watch_row(kind, None)?)?;
        }
        while let Some(event) = events.next().await {
            let event = event?;
            if event.kind == "ERROR" {
                let message = event.object["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned();
                return Err(CtlError::Watch(message));
            }
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&event).map_err(|e| CtlError::Encode(e.to_string()))?
                )?,
                Format::Yaml => {
                    let text = serde_saphyr::to_string(&event)
                        .map_err(|e| CtlError::Encode(e.to_string()))?;
                    write!(out, "---\n{text}")?;
                }
                Format::Name => writeln!(
                    out,
                    "{} {}/{}",
                    event.kind,
                    kind_name(kind),
                    event.object["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                )?,
                Format::Table | Format::Wide => writeln!(
                    out,
                    "{}",
                    watch_row(kind, Some((&event.kind, &event.object)))?
                )?,
            }
            out.flush()?;
        }
        Ok(())
    }
}

/// One line of `watch` output (the header with `None`), with fixed minimum column widths since
/// rows arrive one at a time.
fn watch_row(kind: Kind, event: Option<(&str, &Value)>) -> Result<String, CtlError> {
    const WIDTHS: [usize; 6] = [9, 12, 24, 10, 10, 44];
    let row: Vec<String> = match (kind, event) {
        (Kind::Device, None) => [
            "EVENT",
            "NAMESPACE",
            "NAME",
            "NODE",
            "STATE",
            "DESIRED",
            "REPORTED",
        ]
        .map(String::from)
        .to_vec(),
        (Kind::DeviceModel, None) => ["EVENT", "NAMESPACE", "NAME", "PROTOCOL", "PROPERTIES"]
            .map(String::from)
            .to_vec(),
        (Kind::Device, Some((event, object))) => {
            let device: Device = parse_object(object)?;
            vec![
                event.to_owned(),
                device.namespace().to_owned(),
                device.name().to_owned(),
                device.node_name().unwrap_or("<none>").to_owned(),
                device
                    .status
                    .as_ref()
                    .and_then(|s| s.state.clone())
                    .unwrap_or_else(|| "<none>".into()),
                or_none(output::desired_summary(&device)),
                or_none(output::reported_summary(&device)),
            ]
        }
        (Kind::DeviceModel, Some((event, object))) => {
            let model: DeviceModel = parse_object(object)?;
            vec![
                event.to_owned(),
                model.namespace().to_owned(),
                model.name().to_owned(),
                model
                    .spec
                    .protocol
                    .clone()
                    .unwrap_or_else(|| "<none>".into()),
                model.spec.properties.len().to_string(),
            ]
        }
    };
    Ok(output::padded(&row, &WIDTHS))
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

fn parse_object<T: DeserializeOwned>(object: &Value) -> Result<T, CtlError> {
    T::deserialize(object)
        .map_err(|e| CtlError::Client(ClientError::Decode(format!("watch event object: {e}"))))
}

/// `prop=value` pairs; the value may contain `=` and may be empty.
/// `kind/name patched`, or `… patched (no change)` when the write changed nothing.
fn print_patched<T>(
    out: &mut (dyn Write + Send),
    kind: Kind,
    name: &str,
    written: &Written<T>,
) -> Result<(), CtlError> {
    let suffix = if written.result == "unchanged" {
        " (no change)"
    } else {
        ""
    };
    writeln!(out, "{}/{name} patched{suffix}", kind_name(kind))?;
    Ok(())
}

fn parse_assignments(assignments: &[String]) -> Result<Vec<(String, String)>, CtlError> {
    if assignments.is_empty() {
        return Err(CtlError::Usage(
            "set needs at least one property=value".into(),
        ));
    }
    assignments
        .iter()
        .map(|a| match a.split_once('=') {
            Some((property, value)) if !property.is_empty() => {
                Ok((property.to_owned(), value.to_owned()))
            }
            _ => Err(CtlError::Usage(format!("{a:?} is not property=value"))),
        })
        .collect()
}

fn load_paths(paths: &[PathBuf]) -> Result<Vec<load::Document>, CtlError> {
    if paths.is_empty() {
        return Err(CtlError::Usage("must specify -f FILE or -f DIR".into()));
    }
    let mut documents = Vec::new();
    for path in paths {
        documents.extend(crate::manifests::from_path(path)?);
    }
    if documents.is_empty() {
        return Err(CtlError::Usage(format!(
            "no objects passed: {} holds no Device or DeviceModel",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(documents)
}

fn kind_of(manifest: &Manifest) -> Kind {
    match manifest {
        Manifest::Device(_) => Kind::Device,
        Manifest::DeviceModel(_) => Kind::DeviceModel,
    }
}

fn declared_namespace(manifest: &Manifest) -> Option<String> {
    match manifest {
        Manifest::Device(d) => d.metadata.namespace.clone(),
        Manifest::DeviceModel(m) => m.metadata.namespace.clone(),
    }
}

fn set_namespace(manifest: &mut Manifest, namespace: &str) {
    let meta = match manifest {
        Manifest::Device(d) => &mut d.metadata,
        Manifest::DeviceModel(m) => &mut m.metadata,
    };
    meta.namespace = Some(namespace.to_owned());
}

/// What `get` needs to print a kind.
trait Printable: DeserializeOwned + serde::Serialize + Sized {
    fn object_name(&self) -> &str;
    fn table(objects: &[Self], all_namespaces: bool, wide: bool, now: Timestamp) -> output::Table;
}

impl Printable for Device {
    fn object_name(&self) -> &str {
        self.name()
    }
    fn table(objects: &[Self], all_namespaces: bool, wide: bool, now: Timestamp) -> output::Table {
        output::device_table(objects, all_namespaces, wide, now)
    }
}

impl Printable for DeviceModel {
    fn object_name(&self) -> &str {
        self.name()
    }
    fn table(objects: &[Self], all_namespaces: bool, wide: bool, now: Timestamp) -> output::Table {
        output::model_table(objects, all_namespaces, wide, now)
    }
}

#[cfg(test)]
mod tests;
