//! Authorizer identity sources: where a request's credentials are read.

use std::fmt;

/// One identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header; the name is lower-cased (headers match case-insensitively).
    Header(String),
    /// A query-string parameter (case-sensitive, AWS).
    Query(String),
}

/// An identity source that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySourceError(String);

impl fmt::Display for IdentitySourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentitySourceError {}

/// A header name as RFC 9110 allows it: a non-empty token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl IdentitySource {
    /// Parses AWS's HTTP-API form (`$request.header.X`, `$request.querystring.X`) or REST's
    /// (`method.request.header.X`, `method.request.querystring.X`).
    pub fn parse(s: &str) -> Result<Self, IdentitySourceError> {
        let wrong = || {
            IdentitySourceError(format!(
                "identity source {s:?} is not $request.header.NAME or $request.querystring.NAME"
            ))
        };
        let rest = s
            .strip_prefix("$request.")
            .or_else(|| s.strip_prefix("method.request."))
            .ok_or_else(wrong)?;
        if let Some(name) = rest.strip_prefix("header.") {
            if !is_token(name) {
                return Err(IdentitySourceError(format!(
                    "identity source {s:?}: {name:?} is not a header name"
                )));
            }
            Ok(IdentitySource::Header(name.to_ascii_lowercase()))
        } else if let Some(name) = rest.strip_prefix("querystring.").filter(|n| !n.is_empty()) {
            Ok(IdentitySource::Query(name.to_string()))
        } else {
            Err(wrong())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_syntaxes_and_refusals() {
        assert_eq!(
            IdentitySource::parse("$request.header.Authorization"),
            Ok(IdentitySource::Header("authorization".into()))
        );
        assert_eq!(
            IdentitySource::parse("method.request.querystring.token"),
            Ok(IdentitySource::Query("token".into()))
        );
        for bad in [
            "$context.routeKey",
            "$request.header.bad name",
            "$request.header.",
            "$request.querystring.",
            "Authorization",
        ] {
            assert!(IdentitySource::parse(bad).is_err(), "{bad}");
        }
    }
}
