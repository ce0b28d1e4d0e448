//! YAML plumbing shared by the loader and the converter: splitting a stream into documents that
//! remember their first line, typed parsing that reports the absolute line, column and field
//! path, and writing YAML.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_saphyr::MessageFormatter;

use super::load_error::{LoadError, Location};

/// One document of a YAML stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk<'a> {
    /// The document's text, including its `---` line if it has one.
    pub text: &'a str,
    /// The 1-based line of the stream where `text` starts.
    pub first_line: usize,
    /// The 1-based line of the document's first content (after its `---` line and comments).
    pub content_line: usize,
}

/// `apiVersion` and `kind` of a document, read before the typed parse to pick the type.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TypeMeta {
    pub api_version: Option<String>,
    pub kind: Option<String>,
}

/// Splits a YAML stream at its `---` lines. Documents holding only comments, blank lines and
/// markers are left out.
pub(crate) fn documents(text: &str) -> Vec<Chunk<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_document_start(line) && offset > start {
            chunks.push(Chunk::new(&text[start..offset], start_line));
            start = offset;
            start_line = index + 1;
        }
        offset += line.len();
    }
    chunks.push(Chunk::new(&text[start..], start_line));
    chunks.retain(|c| c.text.lines().any(has_content));
    chunks
}

fn is_document_start(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

fn has_content(line: &str) -> bool {
    let line = line.trim();
    let line = match line.strip_prefix("---") {
        Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    !(line.is_empty() || line.starts_with('#') || line == "...")
}

impl<'a> Chunk<'a> {
    fn new(text: &'a str, first_line: usize) -> Self {
        let skipped = text.lines().take_while(|l| !has_content(l)).count();
        Self {
            text,
            first_line,
            content_line: first_line + skipped,
        }
    }

    /// Where the document's content starts.
    pub fn location(&self, source: &str) -> Location {
        Location::new(source, self.content_line, None)
    }

    /// Parses the document into `T`. Errors carry the absolute line and column, the field path
    /// (when serde knows it) and, when the text looks like a Helm/Go template, say so.
    pub fn parse<T: DeserializeOwned>(&self, source: &str) -> Result<T, LoadError> {
        let mut path = None;
        let result = serde_saphyr::with_deserializer_from_str(self.text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = Some(e.path().to_string()).filter(|p| p != "." && p != "?");
                e.into_inner()
            })
        });
        result.map_err(|err| self.error(source, &err, path))
    }

    fn error(&self, source: &str, err: &serde_saphyr::Error, path: Option<String>) -> LoadError {
        let message = serde_saphyr::UserMessageFormatter
            .format_message(err.without_snippet())
            .into_owned();
        if let Some(template_line) = self.template_line() {
            return LoadError::Template {
                at: Location::new(source, template_line, None),
                yaml_error: message,
            };
        }
        let (line, column) = match err.location() {
            Some(l) if l.line() > 0 => (
                self.first_line + usize::try_from(l.line()).unwrap_or(usize::MAX) - 1,
                usize::try_from(l.column()).ok(),
            ),
            _ => (self.first_line, None),
        };
        LoadError::Yaml {
            at: Location::new(source, line, column),
            path,
            message,
        }
    }

    /// The absolute line of the first Go template action (`{{`), if any.
    fn template_line(&self) -> Option<usize> {
        self.text
            .lines()
            .position(|l| l.contains("{{"))
            .map(|i| self.first_line + i)
    }
}

/// Writes values as one YAML stream, `---` between documents.
pub(crate) fn to_yaml_stream<T: Serialize>(
    values: &[T],
) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(value)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_keeps_their_first_line() {
        let text = "# leading comment\n---\na: 1\n---   # marker with comment\n\nb: 2\n--- \n# only a comment\n---\n...\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].first_line, 2);
        assert_eq!(docs[0].content_line, 3);
        assert_eq!(docs[0].text, "---\na: 1\n");
        assert_eq!(docs[1].first_line, 4);
        assert_eq!(docs[1].content_line, 6);
        assert!(docs[1].text.contains("b: 2"));
    }

    #[test]
    fn a_single_document_without_markers_starts_at_line_one() {
        let docs = documents("\u{feff}kind: Device\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].first_line, 1);
        assert!(documents("").is_empty());
        assert!(documents("# nothing\n\n").is_empty());
    }

    #[test]
    fn dashes_inside_a_line_are_not_markers() {
        let docs = documents("a: ---\nb: \"--- x\"\n----\n");
        assert_eq!(docs.len(), 1);
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: i64,
    }

    #[test]
    fn type_errors_name_the_absolute_line_and_the_field_path() {
        let text = "---\ninner: []\n---\n# second\ninner:\n  - count: 1\n  - count: many\n";
        let docs = documents(text);
        assert!(docs[0].parse::<Outer>("f.yaml").is_ok());
        let err = docs[1]
            .parse::<Outer>("f.yaml")
            .expect_err("count is not an integer");
        let LoadError::Yaml { at, path, .. } = &err else {
            panic!("expected a YAML error, got {err:?}");
        };
        assert_eq!((at.line, at.column), (7, Some(12)));
        assert_eq!(path.as_deref(), Some("inner[1].count"));
        assert!(err.to_string().starts_with("f.yaml:7:12: inner[1].count: "));
    }

    #[test]
    fn syntax_errors_name_the_absolute_line() {
        let docs = documents("a: 1\n---\nb: 2\n   c: 3\n");
        let err = docs[1]
            .parse::<serde_json::Value>("s.yaml")
            .expect_err("bad indentation");
        let LoadError::Yaml { at, path, .. } = &err else {
            panic!("expected a YAML error, got {err:?}");
        };
        assert_eq!(at.line, 4);
        assert_eq!(path, &None);
    }

    #[test]
    fn template_text_is_named_as_such() {
        let docs = documents("kind: Device\nmetadata:\n  name: {{ .Values.name }}\n");
        let err = docs[0]
            .parse::<TypeMetaWithName>("t.yaml")
            .expect_err("template");
        let LoadError::Template { at, .. } = &err else {
            panic!("expected a template error, got {err:?}");
        };
        assert_eq!(at.line, 3);
        assert!(err.to_string().contains("Helm"), "{err}");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct TypeMetaWithName {
        metadata: Named,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Named {
        name: String,
    }

    #[test]
    fn writes_a_stream_with_separators() {
        let out = to_yaml_stream(&[serde_json::json!({"a": 1}), serde_json::json!({"b": "x"})])
            .expect("serializes");
        assert_eq!(out, "a: 1\n---\nb: x\n");
    }
}
