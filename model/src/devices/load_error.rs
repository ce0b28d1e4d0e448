//! Where a YAML document is, and why it could not be loaded.

use std::fmt;
use std::path::PathBuf;

use super::API_VERSION;

/// A place in a YAML source: `file:line[:column]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file path, or a name like `<stdin>`.
    pub source: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl Location {
    /// A location.
    pub fn new(source: &str, line: usize, column: Option<usize>) -> Self {
        Self {
            source: source.to_owned(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        Ok(())
    }
}

/// Why a YAML source could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid YAML, or does not have the shape of the object.
    #[error("{at}: {}{message}", path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
    Yaml {
        /// Where.
        at: Location,
        /// The field path, e.g. `spec.properties[2].collectCycle`, when known.
        path: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The text is a Helm / Go template (`{{ … }}`), which is not YAML until rendered.
    #[error(
        "{at}: this is a Helm template ({{{{ … }}}}), not plain YAML: render it first \
         (helm template …) and load the output (YAML error: {yaml_error})"
    )]
    Template {
        /// The first line with a template action.
        at: Location,
        /// The YAML error the template text caused.
        yaml_error: String,
    },
    /// The document has no `apiVersion` or no `kind`.
    #[error("{at}: the document has no {field}")]
    MissingTypeMeta {
        /// Where the document starts.
        at: Location,
        /// `apiVersion` or `kind`.
        field: &'static str,
    },
    /// A KubeEdge device object of another API version (v1alpha2).
    #[error(
        "{at}: {kind} {api_version} is not supported, only {API_VERSION} is: convert it with \
         `edgetwin convert -f {}`", at.source
    )]
    OldApiVersion {
        /// Where the document starts.
        at: Location,
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
    },
    /// Some other object, not a Device or DeviceModel.
    #[error("{at}: {kind} {api_version} is not a {API_VERSION} Device or DeviceModel")]
    UnknownKind {
        /// Where the document starts.
        at: Location,
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
    },
    /// The object has no `metadata.name`.
    #[error("{at}: the {kind} has no metadata.name")]
    MissingName {
        /// Where the document starts.
        at: Location,
        /// The object's kind.
        kind: &'static str,
    },
    /// The object is larger than the edge takes ([`crate::limits::MAX_OBJECT_BYTES`] of JSON).
    #[error("{at}: {too_large} (as JSON): the edge takes objects up to that size")]
    TooLarge {
        /// Where the document starts.
        at: Location,
        /// What, how large, and the limit.
        too_large: crate::limits::TooLarge,
    },
}

impl LoadError {
    /// Where the error is, when it is in a YAML source.
    pub fn location(&self) -> Option<&Location> {
        match self {
            LoadError::Read { .. } => None,
            LoadError::Yaml { at, .. }
            | LoadError::Template { at, .. }
            | LoadError::MissingTypeMeta { at, .. }
            | LoadError::OldApiVersion { at, .. }
            | LoadError::UnknownKind { at, .. }
            | LoadError::MissingName { at, .. }
            | LoadError::TooLarge { at, .. } => Some(at),
        }
    }
}
