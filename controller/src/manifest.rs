//! Manifests: YAML files of `kubectl apply`-able objects, parsed into typed objects.
//!
//! Documents are split on `---` lines by hand (instead of serde_yaml's multi-document reader)
//! so that every document knows the line it starts on and one bad document never hides the
//! others. Syntax errors are whole-file errors: the caller keeps the file's last good objects.

use crate::model::{Kind, ObjectKey};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;
use tollhouse_api::{
    ApiRoute, ApiRouteSpec, Authorizer, AuthorizerSpec, Stage, StageSpec, UsagePlan, UsagePlanSpec,
};

/// The typed content of an object; Secret data has `stringData` already merged over `data`.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Stage spec.
    Stage(StageSpec),
    /// An ApiRoute spec.
    ApiRoute(ApiRouteSpec),
    /// A Secret's type, labels, annotations and data.
    Secret(std::sync::Arc<crate::model::SecretData>),
    /// A Service's ports.
    Service(crate::model::ServicePorts),
    /// An EndpointSlice.
    EndpointSlice(crate::model::EndpointSliceData),
    /// A UsagePlan spec.
    UsagePlan(UsagePlanSpec),
    /// An Authorizer spec.
    Authorizer(AuthorizerSpec),
}

/// One object read from a manifest, with the metadata the index needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Identity.
    pub key: ObjectKey,
    /// Line (1-based) where its document starts.
    pub line: usize,
    /// `metadata.generation`, when the manifest sets it.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`, when the manifest sets it.
    pub created: Option<Time>,
    /// Content.
    pub object: Object,
}

/// Something wrong in a file, with its position when known.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Problem {
    /// File, relative to the watched directory.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// What one document of a file turned into.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// A Stage, ApiRoute or Secret (boxed: it is far bigger than the other variants).
    Object(Box<Manifest>),
    /// Valid YAML but not a valid object; `key` names it when that much could be read, so the
    /// caller can keep its last good version.
    Invalid {
        /// The object it tried to be.
        key: Option<ObjectKey>,
        /// Why it is not valid.
        problem: Problem,
    },
    /// A kind the controller does not read (a Namespace, a ConfigMap): ignored.
    Ignored(Problem),
}

/// Parses one file. `Err` is a YAML syntax error, which invalidates the whole file.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Document>, Problem> {
    let mut documents = Vec::new();
    for chunk in split_documents(text) {
        let value: serde_yaml::Value = serde_yaml::from_str(&chunk.text).map_err(|e| {
            let location = e.location();
            Problem {
                file: file.to_string(),
                line: location.as_ref().map(|l| l.line() + chunk.offset),
                column: location.as_ref().map(|l| l.column()),
                message: shift_lines(&e.to_string(), chunk.offset),
            }
        })?;
        if value.is_null() {
            continue;
        }
        documents.push(typed(file, chunk.start, value));
    }
    Ok(documents)
}

struct Chunk {
    /// Lines before the chunk's first line.
    offset: usize,
    /// First line with content, for messages about the whole document.
    start: usize,
    text: String,
}

/// Splits on `---` (and `...`) marker lines. A marker is blanked rather than dropped so that
/// serde_yaml's line and column numbers inside a chunk stay those of the file, plus an offset.
fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        offset: 0,
        start: 0,
        text: String::new(),
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            let next = Chunk {
                offset: index,
                start: 0,
                text: String::new(),
            };
            chunks.push(std::mem::replace(&mut current, next));
            if is_start {
                current.text.push_str("   ");
                current.text.push_str(&line[3..]);
                current.text.push('\n');
                if !line[3..].trim().is_empty() {
                    current.start = number;
                }
            } else {
                current.offset = number;
            }
            continue;
        }
        let trimmed = line.trim_start();
        if current.start == 0 && !trimmed.is_empty() && !trimmed.starts_with('#') {
            current.start = number;
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    chunks.push(current);
    for chunk in &mut chunks {
        if chunk.start == 0 {
            chunk.start = chunk.offset + 1;
        }
    }
    chunks
}

/// Adds `offset` to every `line N` in a serde_yaml message, which counts from the chunk.
fn shift_lines(message: &str, offset: usize) -> String {
    const NEEDLE: &str = "line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(NEEDLE) {
        let (before, after) = rest.split_at(at + NEEDLE.len());
        out.push_str(before);
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn typed(file: &str, line: usize, value: serde_yaml::Value) -> Document {
    let problem = |message: String| Problem {
        file: file.to_string(),
        line: Some(line),
        column: None,
        message,
    };
    let text = |field: &str| {
        value
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        return Document::Invalid {
            key: None,
            problem: problem(
                "not a Kubernetes object: `apiVersion` and `kind` are required".into(),
            ),
        };
    };
    let Some(known) = Kind::from_kind(&kind) else {
        return Document::Ignored(problem(format!(
            "ignoring {api_version} {kind}: not a kind Tollhouse reads"
        )));
    };
    let metadata = value.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty());
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let key = name.map(|name| ObjectKey::new(known, namespace, name));
    let invalid = |key: Option<ObjectKey>, message: String| Document::Invalid {
        key,
        problem: problem(message),
    };
    if !known.accepts(&api_version) {
        return invalid(
            key,
            format!(
                "{kind}: unknown apiVersion `{api_version}` (expected `{}`)",
                known.api_version()
            ),
        );
    }
    let Some(key) = key else {
        return invalid(None, format!("{kind}: `metadata.name` is required"));
    };
    let result = match known {
        Kind::Stage => {
            serde_yaml::from_value::<Stage>(value).map(|s| (s.metadata, Object::Stage(s.spec)))
        }
        Kind::ApiRoute => serde_yaml::from_value::<ApiRoute>(value)
            .map(|r| (r.metadata, Object::ApiRoute(r.spec))),
        Kind::Secret => serde_yaml::from_value::<Secret>(value).map(|s| {
            let metadata = s.metadata.clone();
            (
                metadata,
                Object::Secret(std::sync::Arc::new(crate::convert::secret_data(s))),
            )
        }),
        Kind::UsagePlan => serde_yaml::from_value::<UsagePlan>(value)
            .map(|p| (p.metadata, Object::UsagePlan(p.spec))),
        Kind::Authorizer => serde_yaml::from_value::<Authorizer>(value)
            .map(|a| (a.metadata, Object::Authorizer(a.spec))),
        Kind::Service => serde_yaml::from_value::<Service>(value).map(|s| {
            (
                s.metadata.clone(),
                Object::Service(crate::convert::service_ports(&s)),
            )
        }),
        Kind::EndpointSlice => {
            let json = serde_json::to_value(&value).unwrap_or_default();
            let metadata = serde_yaml::from_value::<ObjectMeta>(
                value.get("metadata").cloned().unwrap_or_default(),
            );
            match (metadata, crate::convert::endpoint_slice(&json)) {
                (Ok(m), Some(data)) => Ok((m, Object::EndpointSlice(data))),
                (Err(e), _) => Err(e),
                (Ok(_), None) => {
                    return invalid(
                        Some(key.clone()),
                        format!(
                            "{key}: an EndpointSlice needs the label {}",
                            crate::convert::SERVICE_NAME_LABEL
                        ),
                    )
                }
            }
        }
    };
    match result {
        Ok((metadata, object)) => Document::Object(Box::new(manifest(key, line, metadata, object))),
        // serde quotes offending values, and in a Secret that value may be key material:
        // name the problem's place, never its text.
        Err(_) if known == Kind::Secret => invalid(
            Some(key.clone()),
            format!("{key}: not a valid Secret (details withheld: they could quote key material)"),
        ),
        Err(e) => invalid(Some(key.clone()), format!("{key}: {e}")),
    }
}

fn manifest(key: ObjectKey, line: usize, metadata: ObjectMeta, object: Object) -> Manifest {
    Manifest {
        key,
        line,
        generation: metadata.generation,
        created: metadata.creation_timestamp,
        object,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(docs: &[Document]) -> Vec<(String, usize)> {
        docs.iter()
            .filter_map(|d| match d {
                Document::Object(m) => Some((m.key.to_string(), m.line)),
                _ => None,
            })
            .collect()
    }

    const STAGE: &str = "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\nspec:\n  api: pets\n";

    #[test]
    fn reads_multi_document_files_with_start_lines_and_default_namespace() {
        let text = format!(
            "# leading comment\n---\n{STAGE}---\n\n---\n# only a comment\n---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: list\n  namespace: shop\nspec:\n  api: pets\n  path: /pets\n  integration:\n    type: MOCK\n"
        );
        let docs = parse_file("a.yaml", &text).unwrap();
        assert_eq!(
            objects(&docs),
            vec![
                ("Stage/default/prod".to_string(), 3),
                ("ApiRoute/shop/list".to_string(), 14)
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_file_line_and_column() {
        let text =
            format!("{STAGE}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n   bad: [\n");
        let err = parse_file("dir/b.yaml", &text).unwrap_err();
        assert_eq!(err.file, "dir/b.yaml");
        assert_eq!(err.line, Some(12), "{err:?}");
        assert!(err.column.is_some());
        assert!(err.message.contains("line 12"), "{}", err.message);
    }

    #[test]
    fn type_errors_name_the_document_line_and_the_object() {
        let text = format!(
            "{STAGE}---\napiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: broken\nspec:\n  basePath: /x\n"
        );
        let docs = parse_file("c.yaml", &text).unwrap();
        match &docs[1] {
            Document::Invalid {
                key: Some(key),
                problem,
            } => {
                assert_eq!(key.to_string(), "Stage/default/broken");
                assert_eq!(problem.line, Some(8));
                assert!(
                    problem.message.contains("missing field `api`"),
                    "{}",
                    problem.message
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_api_versions_are_errors_and_unknown_kinds_are_ignored() {
        let text = "apiVersion: tollhouse.dev/v2\nkind: Stage\nmetadata: {name: a}\nspec: {api: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
        let docs = parse_file("d.yaml", text).unwrap();
        assert!(
            matches!(&docs[0], Document::Invalid { key: Some(_), problem } if problem.message.contains("unknown apiVersion"))
        );
        assert!(matches!(&docs[1], Document::Ignored(p) if p.line == Some(6)));
    }

    #[test]
    fn secrets_merge_string_data_over_data() {
        // "b2xk" is base64 for "old".
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: web}\ndata:\n  tls.crt: b2xk\n  tls.key: b2xk\nstringData:\n  tls.key: new\n";
        let docs = parse_file("e.yaml", text).unwrap();
        let Document::Object(m) = &docs[0] else {
            panic!("{docs:?}")
        };
        let Object::Secret(data) = &m.object else {
            panic!("{docs:?}")
        };
        assert_eq!(data.data["tls.crt"], b"old");
        assert_eq!(data.data["tls.key"], b"new");
    }

    #[test]
    fn secret_errors_never_echo_values() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ndata: \"-----BEGIN PRIVATE KEY----- sekrit\"\n";
        let docs = parse_file("g.yaml", text).unwrap();
        let Document::Invalid { problem, .. } = &docs[0] else {
            panic!("{docs:?}")
        };
        assert!(!problem.message.contains("sekrit"), "{}", problem.message);
        assert!(
            problem.message.contains("details withheld"),
            "{}",
            problem.message
        );
        // An escaped quote inside the value must not shift what is withheld.
        let text =
            "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ndata: \"a\\\" sekrit \\\"b\"\n";
        let docs = parse_file("g.yaml", text).unwrap();
        let Document::Invalid { problem, .. } = &docs[0] else {
            panic!("{docs:?}")
        };
        assert!(!problem.message.contains("sekrit"), "{}", problem.message);
    }

    #[test]
    fn pem_lines_are_not_document_markers() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\nstringData:\n  tls.crt: |\n    -----BEGIN CERTIFICATE-----\n    abc\n    -----END CERTIFICATE-----\n";
        let docs = parse_file("f.yaml", text).unwrap();
        assert_eq!(objects(&docs), vec![("Secret/default/tls".to_string(), 1)]);
    }
}
