//! Integration URI templates: `https://${stageVariables.host}/v2/pets/{petId}?x={id}`.
//!
//! Parsed once by the controller, which refuses what cannot work with a condition, and bound
//! to a Stage's variables by both the controller (to say in status what the dataplane will do)
//! and the dataplane (which then renders one URI per request). A request value never reaches
//! the scheme or host: a path parameter is accepted only after the literal `/` or `?` that ends
//! the authority (stage variables may be in the host, as AWS allows), and values are
//! percent-encoded so that they cannot add a segment, a query parameter or a fragment.

use crate::path::PathTemplate;
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Where a URI template is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriForm {
    /// An absolute `http://` or `https://` URI.
    Absolute,
    /// A path template after a `backendRef` (the authority is an endpoint of the Service).
    Path,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
    Param { index: usize, greedy: bool },
}

/// A parsed URI template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriTemplate {
    form: UriForm,
    parts: Vec<Part>,
}

/// Why a URI template was refused or cannot be bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    /// The template itself is unusable.
    Invalid(String),
    /// It uses a stage variable the Stage does not define: AWS serves the route and fails its
    /// calls (reference §3a R7).
    UndefinedVariable(String),
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Invalid(why) => f.write_str(why),
            UriError::UndefinedVariable(name) => {
                write!(f, "stage variable `{name}` is not defined")
            }
        }
    }
}

impl std::error::Error for UriError {}

/// A stage variable name (AWS): 1 to 64 of `[A-Za-z0-9_]`.
pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl UriTemplate {
    /// Parses `raw` for a route with the path template `route`.
    pub fn parse(raw: &str, form: UriForm, route: &PathTemplate) -> Result<UriTemplate, UriError> {
        let invalid = |why: String| Err(UriError::Invalid(format!("uri {raw:?}: {why}")));
        let params = route.params();
        let mut parts = Vec::new();
        let mut literal = String::new();
        // Whether a literal `/` or `?` has ended the authority (always, for a path).
        let mut past_authority = form == UriForm::Path;
        let mut seen_scheme = false;
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return invalid("has an unmatched }".into());
            }
            let is_variable = rest[..open].ends_with('$');
            let text = &rest[..if is_variable { open - 1 } else { open }];
            literal.push_str(text);
            if !past_authority {
                past_authority = ends_authority(&mut seen_scheme, &literal);
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return invalid("has an unmatched {".into());
            };
            let inner = &after[..close];
            if inner.contains('{') {
                return invalid("has nested braces".into());
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            if is_variable {
                match inner.strip_prefix("stageVariables.") {
                    Some(name) if is_variable_name(name) => {
                        parts.push(Part::Variable(name.to_string()));
                    }
                    _ => {
                        return invalid(format!(
                        "${{{inner}}} is not ${{stageVariables.name}} with a name of [A-Za-z0-9_]"
                    ))
                    }
                }
            } else if let Some(index) = params.iter().position(|p| p == inner) {
                // A request value in the scheme or host would let a client choose the
                // upstream; stage variables may be there, as AWS allows.
                if !past_authority {
                    return invalid(format!(
                        "path parameter {{{inner}}} is in the scheme or host: request values may only go into the path and query"
                    ));
                }
                parts.push(Part::Param {
                    index,
                    greedy: route.greedy() && index + 1 == params.len(),
                });
            } else {
                let hint = if inner.ends_with('+') {
                    " (write a greedy parameter {proxy+} as {proxy})"
                } else {
                    ""
                };
                return invalid(format!(
                    "{{{inner}}} is not a path parameter of the route{hint}"
                ));
            }
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        match form {
            UriForm::Absolute => {
                let rest = raw
                    .strip_prefix("http://")
                    .or_else(|| raw.strip_prefix("https://"));
                if rest.is_none_or(str::is_empty) {
                    return Err(UriError::Invalid(format!(
                        "uri {raw:?} must start with http:// or https:// and name a host"
                    )));
                }
            }
            UriForm::Path => {
                if !raw.starts_with('/') {
                    return Err(UriError::Invalid(format!(
                        "with a backendRef, uri {raw:?} must be a path starting with /"
                    )));
                }
            }
        }
        Ok(UriTemplate { form, parts })
    }

    /// The stage variables the template uses.
    pub fn variables(&self) -> BTreeSet<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Variable(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Substitutes a Stage's variables and checks that the result is a usable URI for any
    /// parameter values.
    pub fn bind(&self, variables: &BTreeMap<String, String>) -> Result<BoundUri, UriError> {
        let mut path = Vec::new();
        let mut literal = String::new();
        let mut in_query = false;
        for part in &self.parts {
            match part {
                Part::Literal(l) => literal.push_str(l),
                Part::Variable(name) => literal.push_str(
                    variables
                        .get(name)
                        .ok_or_else(|| UriError::UndefinedVariable(name.clone()))?,
                ),
                Part::Param { index, greedy } => {
                    in_query |= literal.contains('?');
                    if !literal.is_empty() {
                        path.push(BoundPart::Literal(std::mem::take(&mut literal)));
                    }
                    path.push(BoundPart::Param {
                        index: *index,
                        greedy: *greedy,
                        in_query,
                    });
                }
            }
        }
        if !literal.is_empty() {
            path.push(BoundPart::Literal(literal));
        }
        let origin = match self.form {
            UriForm::Path => None,
            UriForm::Absolute => Some(Origin::split(&mut path)?),
        };
        let bound = BoundUri { origin, path };
        let placeholders = ["x"; 64];
        let rendered = bound.render(&placeholders, None);
        if bound.origin.is_some() || !bound.path.is_empty() {
            http::uri::PathAndQuery::try_from(rendered.as_str())
                .map_err(|e| UriError::Invalid(format!("invalid URI path: {e}")))?;
        }
        Ok(bound)
    }
}

/// Whether a literal chunk of an absolute URI reaches its path or query; `seen_scheme` says
/// whether an earlier chunk held the scheme's `://`.
fn ends_authority(seen_scheme: &mut bool, chunk: &str) -> bool {
    match chunk.find("://") {
        Some(i) => {
            *seen_scheme = true;
            chunk[i + 3..].contains(['/', '?'])
        }
        None => *seen_scheme && chunk.contains(['/', '?']),
    }
}

/// The scheme and authority of an absolute URI, fixed once variables are bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// Host and port.
    pub authority: http::uri::Authority,
}

impl Origin {
    /// Takes the scheme and authority off the first literal of `parts`.
    fn split(parts: &mut [BoundPart]) -> Result<Origin, UriError> {
        let absolute = || UriError::Invalid("URI must be absolute http:// or https://".into());
        let Some(BoundPart::Literal(first)) = parts.first_mut() else {
            return Err(absolute());
        };
        let after_scheme = first.find("://").map(|i| i + 3).ok_or_else(absolute)?;
        let end = first[after_scheme..]
            .find(['/', '?'])
            .map_or(first.len(), |i| after_scheme + i);
        let scheme = http::uri::Scheme::try_from(&first[..after_scheme - 3])
            .map_err(|e| UriError::Invalid(format!("invalid URI: {e}")))?;
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(absolute());
        }
        let authority = http::uri::Authority::try_from(&first[after_scheme..end])
            .map_err(|e| UriError::Invalid(format!("invalid URI host: {e}")))?;
        let rest = &first[end..];
        *first = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        Ok(Origin { scheme, authority })
    }
}

/// A URI template with a Stage's variables substituted: an origin (for an absolute URI) and
/// a path and query with slots for the request's parameter values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundUri {
    origin: Option<Origin>,
    path: Vec<BoundPart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BoundPart {
    Literal(String),
    Param {
        index: usize,
        greedy: bool,
        in_query: bool,
    },
}

/// Bytes a path value may not carry raw: a greedy value may span segments, others may not;
/// `;` and `\` (which some servers treat as separators) are encoded everywhere.
const PATH_GREEDY: &AsciiSet = &CONTROLS.add(b' ').add(b';').add(b'\\').add(b'?').add(b'#');
const PATH_SEGMENT: &AsciiSet = &PATH_GREEDY.add(b'/');
const QUERY_VALUE: &AsciiSet = &PATH_SEGMENT.add(b'&').add(b'=').add(b'+');

impl BoundUri {
    /// The scheme and authority, for an absolute URI.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// Whether there is no path template (a `backendRef` without a `uri`: the request's own
    /// path is sent).
    pub fn is_empty(&self) -> bool {
        self.path.is_empty()
    }

    /// The path and query for parameter values `params` (in the route's parameter order),
    /// with the request's `query` appended.
    pub fn render(&self, params: &[&str], query: Option<&str>) -> String {
        let mut s = String::with_capacity(128);
        for part in &self.path {
            match part {
                BoundPart::Literal(l) => s.push_str(l),
                BoundPart::Param {
                    index,
                    greedy,
                    in_query,
                } => {
                    let value = params.get(*index).copied().unwrap_or_default();
                    let set = match (in_query, greedy) {
                        (true, _) => QUERY_VALUE,
                        (false, true) => PATH_GREEDY,
                        (false, false) => PATH_SEGMENT,
                    };
                    s.extend(percent_encode(value.as_bytes(), set));
                }
            }
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            s.push(if s.contains('?') { '&' } else { '?' });
            s.push_str(q);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> PathTemplate {
        PathTemplate::parse(path).unwrap()
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn uris_use_only_route_parameters_and_valid_stage_variables() {
        let r = route("/pets/{petId}/{proxy+}");
        let ok = UriTemplate::parse(
            "https://${stageVariables.host}/v2/{petId}/{proxy}?q={petId}",
            UriForm::Absolute,
            &r,
        )
        .unwrap();
        assert_eq!(ok.variables(), BTreeSet::from(["host"]));
        for (raw, why) in [
            ("ftp://x/", "must start with http:// or https://"),
            ("http://", "must start with http:// or https://"),
            ("http://x/{nope}", "is not a path parameter"),
            ("http://x/{proxy+}", "write a greedy parameter"),
            ("http://x/{a", "unmatched {"),
            ("http://x/a}", "unmatched }"),
            (
                "http://x/${stageVariables.a-b}",
                "is not ${stageVariables.name}",
            ),
            ("http://x/${other.a}", "is not ${stageVariables.name}"),
            ("http://{petId}.example.com/", "in the scheme or host"),
            (
                "http://${stageVariables.h}{petId}/",
                "in the scheme or host",
            ),
            ("http://example.com:{petId}/", "in the scheme or host"),
        ] {
            let e = UriTemplate::parse(raw, UriForm::Absolute, &r)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{raw}: {e}");
        }
        let e = UriTemplate::parse("v2/{petId}", UriForm::Path, &r).unwrap_err();
        assert!(e.to_string().contains("must be a path starting with /"));
    }

    #[test]
    fn binding_substitutes_variables_and_checks_the_result() {
        let r = route("/pets/{petId}");
        let t = UriTemplate::parse(
            "http://${stageVariables.host}/v2/${stageVariables.v}/{petId}?id={petId}",
            UriForm::Absolute,
            &r,
        )
        .unwrap();
        let bound = t
            .bind(&vars(&[("host", "backend:8080"), ("v", "x")]))
            .unwrap();
        let origin = bound.origin().unwrap();
        assert_eq!(origin.authority.as_str(), "backend:8080");
        assert_eq!(
            bound.render(&["a/b&c=d"], Some("z=1")),
            "/v2/x/a%2Fb&c=d?id=a%2Fb%26c%3Dd&z=1"
        );
        assert_eq!(
            t.bind(&vars(&[("host", "b")])),
            Err(UriError::UndefinedVariable("v".into()))
        );
        let e = t.bind(&vars(&[("host", "a b"), ("v", "x")])).unwrap_err();
        assert!(matches!(e, UriError::Invalid(_)), "{e:?}");
        // A variable holding a whole origin still keeps parameters out of the host.
        let whole = UriTemplate::parse(
            "http://${stageVariables.url}/{petId}",
            UriForm::Absolute,
            &r,
        )
        .unwrap()
        .bind(&vars(&[("url", "example.com/base")]))
        .unwrap();
        assert_eq!(whole.origin().unwrap().authority.as_str(), "example.com");
        assert_eq!(whole.render(&["7"], None), "/base/7");
    }

    #[test]
    fn greedy_values_keep_their_slashes_and_dots_stay_as_sent() {
        let r = route("/files/{proxy+}");
        let bound = UriTemplate::parse("/storage/{proxy}", UriForm::Path, &r)
            .unwrap()
            .bind(&BTreeMap::new())
            .unwrap();
        assert!(bound.origin().is_none());
        assert_eq!(bound.render(&["a/b;c\\d"], None), "/storage/a/b%3Bc%5Cd");
    }
}
