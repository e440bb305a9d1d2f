//! HTTP API parameter mapping (`integration.requestParameters`): how the request an HTTP
//! backend receives is changed — headers appended, overwritten or removed, query parameters
//! likewise, the path overwritten — with values made of text, `$request.*`, `$context.*` and
//! `$stageVariables.*`. The controller checks mappings with this grammar and the dataplane
//! applies what it parses.
//!
//! Keys: `append:header.NAME`, `overwrite:header.NAME`, `remove:header.NAME`, the same with
//! `querystring.NAME`, and `overwrite:path`. Values: text with any of `$request.header.NAME`,
//! `$request.querystring.NAME`, `$request.path.NAME` (a path parameter), `$request.path`,
//! `$context.NAME` (an access-log variable, or `$context.authorizer.KEY`), and
//! `$stageVariables.NAME`; `''` is the empty value (what `remove:` takes).

use crate::access_log::Var;
use std::collections::BTreeMap;
use std::fmt;

/// What a mapping does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Adds a value (after those already there).
    Append,
    /// Replaces every value.
    Overwrite,
    /// Removes the parameter.
    Remove,
}

/// What a mapping changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A header (name lower-cased).
    Header(String),
    /// A query-string parameter.
    Query(String),
    /// The whole path.
    Path,
}

/// One piece of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as written.
    Text(String),
    /// `$request.header.NAME` (lower-cased).
    Header(String),
    /// `$request.querystring.NAME`.
    Query(String),
    /// `$request.path.NAME`: a path parameter.
    PathParam(String),
    /// `$request.path`.
    Path,
    /// `$context.NAME`.
    Context(Var),
    /// `$context.authorizer.KEY`.
    Authorizer(String),
    /// `$stageVariables.NAME`.
    StageVariable(String),
}

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// What it does.
    pub op: Op,
    /// To what.
    pub target: Target,
    /// The value's pieces (empty: the empty value).
    pub value: Vec<Piece>,
}

/// A mapping that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError(String);

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MappingError {}

/// Headers no mapping may change: the connection's own, and those the gateway sets
/// (`host`, `x-amzn-*`, `apigw-*`, `x-forwarded-*`).
fn reserved(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "content-length"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
            | "via"
            | "forwarded"
    ) || name.starts_with("x-amzn-")
        || name.starts_with("apigw-")
        || name.starts_with("x-forwarded-")
}

fn token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_key(key: &str) -> Result<(Op, Target), MappingError> {
    let bad = |why: &str| MappingError(format!("requestParameters key {key:?}: {why}"));
    let (op, what) = key.split_once(':').ok_or_else(|| {
        bad("must be append:, overwrite: or remove: followed by header.NAME, querystring.NAME or path")
    })?;
    let op = match op {
        "append" => Op::Append,
        "overwrite" => Op::Overwrite,
        "remove" => Op::Remove,
        _ => return Err(bad("the operation is append, overwrite or remove")),
    };
    let target = if let Some(name) = what.strip_prefix("header.") {
        let name = name.to_ascii_lowercase();
        if !token(&name) {
            return Err(bad("not a header name"));
        }
        if reserved(&name) {
            return Err(bad("this header is the gateway's and cannot be mapped"));
        }
        Target::Header(name)
    } else if let Some(name) = what.strip_prefix("querystring.").filter(|n| !n.is_empty()) {
        Target::Query(name.to_string())
    } else if what == "path" {
        if op != Op::Overwrite {
            return Err(bad("the path can only be overwritten"));
        }
        Target::Path
    } else {
        return Err(bad("the target is header.NAME, querystring.NAME or path"));
    };
    Ok((op, target))
}

fn parse_value(value: &str) -> Result<Vec<Piece>, MappingError> {
    if value == "''" {
        return Ok(Vec::new());
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    let name_end = |s: &str, extra: &[u8]| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || extra.contains(&(c as u8))))
            .unwrap_or(s.len())
    };
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i..];
        let (piece, used) = if let Some(r) = after.strip_prefix("$request.header.") {
            let n = name_end(r, b"-");
            (Piece::Header(r[..n].to_ascii_lowercase()), 16 + n)
        } else if let Some(r) = after.strip_prefix("$request.querystring.") {
            let n = name_end(r, b"-.");
            (Piece::Query(r[..n].to_string()), 21 + n)
        } else if let Some(r) = after.strip_prefix("$request.path.") {
            let n = name_end(r, b"");
            (Piece::PathParam(r[..n].to_string()), 14 + n)
        } else if after.starts_with("$request.path") {
            (Piece::Path, 13)
        } else if let Some(r) = after.strip_prefix("$stageVariables.") {
            let n = name_end(r, b"");
            (Piece::StageVariable(r[..n].to_string()), 16 + n)
        } else if let Some(r) = after.strip_prefix("$context.") {
            let n = name_end(r, b".");
            let name = r[..n].trim_end_matches('.');
            let piece = match name.strip_prefix("authorizer.").filter(|k| !k.is_empty()) {
                Some(key) => Piece::Authorizer(key.to_string()),
                None => Piece::Context(Var::from_name(name).ok_or_else(|| {
                    MappingError(format!(
                        "requestParameters value {value:?}: unknown variable $context.{name}"
                    ))
                })?),
            };
            (piece, 9 + name.len())
        } else {
            return Err(MappingError(format!(
                "requestParameters value {value:?}: a `$` must start $request.header.NAME, \
                 $request.querystring.NAME, $request.path[.NAME], $context.NAME or \
                 $stageVariables.NAME"
            )));
        };
        let empty = match &piece {
            Piece::Header(n) | Piece::Query(n) | Piece::PathParam(n) | Piece::StageVariable(n) => {
                n.is_empty()
            }
            _ => false,
        };
        if empty {
            return Err(MappingError(format!(
                "requestParameters value {value:?}: a variable without a name"
            )));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = &after[used..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Parses a route's `requestParameters` (at most 50, as AWS).
pub fn parse(map: &BTreeMap<String, String>) -> Result<Vec<Mapping>, MappingError> {
    if map.len() > 50 {
        return Err(MappingError(format!(
            "requestParameters has {} entries; at most 50",
            map.len()
        )));
    }
    map.iter()
        .map(|(k, v)| {
            let (op, target) = parse_key(k)?;
            let value = parse_value(v)?;
            if op != Op::Remove && value.is_empty() && target == Target::Path {
                return Err(MappingError(format!(
                    "requestParameters {k:?}: an empty path"
                )));
            }
            Ok(Mapping { op, target, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> Result<Mapping, MappingError> {
        parse(&BTreeMap::from([(k.to_string(), v.to_string())])).map(|mut m| m.remove(0))
    }

    #[test]
    fn keys_and_values_as_aws_writes_them() {
        let m = one("append:header.X-User", "$context.authorizer.claims.sub").unwrap();
        assert_eq!(
            m,
            Mapping {
                op: Op::Append,
                target: Target::Header("x-user".into()),
                value: vec![Piece::Authorizer("claims.sub".into())]
            }
        );
        let m = one(
            "overwrite:header.x-caller",
            "id=$context.requestId, ua=$request.header.User-Agent!",
        )
        .unwrap();
        assert_eq!(
            m.value,
            vec![
                Piece::Text("id=".into()),
                Piece::Context(Var::RequestId),
                Piece::Text(", ua=".into()),
                Piece::Header("user-agent".into()),
                Piece::Text("!".into()),
            ]
        );
        assert_eq!(
            one("remove:header.authorization", "''").unwrap().value,
            vec![]
        );
        let m = one("overwrite:path", "/v2$request.path").unwrap();
        assert_eq!(
            (m.target, m.value),
            (Target::Path, vec![Piece::Text("/v2".into()), Piece::Path])
        );
        let m = one(
            "append:querystring.tenant",
            "$stageVariables.tenant-$request.path.id",
        )
        .unwrap();
        assert_eq!(
            m.value,
            vec![
                Piece::StageVariable("tenant".into()),
                Piece::Text("-".into()),
                Piece::PathParam("id".into())
            ]
        );
    }

    #[test]
    fn refusals_say_why() {
        for (k, v) in [
            ("set:header.x", "a"),
            ("append:cookie.x", "a"),
            ("append:header.host", "a"),
            ("overwrite:header.x-amzn-trace-id", "a"),
            ("append:header.bad name", "a"),
            ("append:path", "/a"),
            ("overwrite:header.x", "$context.nope"),
            ("overwrite:header.x", "$request.body.x"),
            ("overwrite:header.x", "$request.header."),
        ] {
            assert!(one(k, v).is_err(), "{k} {v}");
        }
    }
}
