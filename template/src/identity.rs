//! Authorizer identity sources: where a request's credentials are read.

use std::fmt;

/// One identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header; the name is lower-cased (headers match case-insensitively).
    Header(String),
    /// A query-string parameter (case-sensitive, AWS).
    Query(String),
    /// A stage variable (`$stageVariables.X`, REST's `stageVariables.X`): REQUEST authorizers.
    StageVariable(String),
    /// A context variable (`$context.X`, REST's `context.X`), one of [`CONTEXT_VARIABLES`]:
    /// REQUEST authorizers.
    Context(String),
}

/// The `$context.*` variables an identity source may name.
pub const CONTEXT_VARIABLES: [&str; 9] = [
    "apiId",
    "domainName",
    "httpMethod",
    "identity.sourceIp",
    "identity.userAgent",
    "path",
    "resourcePath",
    "routeKey",
    "stage",
];

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
    /// Parses AWS's HTTP-API form (`$request.header.X`, `$request.querystring.X`,
    /// `$stageVariables.X`, `$context.X`) or REST's (`method.request.header.X`,
    /// `method.request.querystring.X`, `stageVariables.X`, `context.X`).
    pub fn parse(s: &str) -> Result<Self, IdentitySourceError> {
        let wrong = || {
            IdentitySourceError(format!(
                "identity source {s:?} is not $request.header.NAME, $request.querystring.NAME, \
                 $stageVariables.NAME or $context.NAME"
            ))
        };
        if let Some(name) = s
            .strip_prefix("$stageVariables.")
            .or_else(|| s.strip_prefix("stageVariables."))
        {
            return match name.is_empty() {
                true => Err(wrong()),
                false => Ok(IdentitySource::StageVariable(name.to_string())),
            };
        }
        if let Some(name) = s
            .strip_prefix("$context.")
            .or_else(|| s.strip_prefix("context."))
        {
            return match CONTEXT_VARIABLES.contains(&name) {
                true => Ok(IdentitySource::Context(name.to_string())),
                false => Err(IdentitySourceError(format!(
                    "identity source {s:?}: $context.{name} is not one of {}",
                    CONTEXT_VARIABLES.join(", ")
                ))),
            };
        }
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
        assert_eq!(
            IdentitySource::parse("$context.routeKey"),
            Ok(IdentitySource::Context("routeKey".into()))
        );
        assert_eq!(
            IdentitySource::parse("stageVariables.tenant"),
            Ok(IdentitySource::StageVariable("tenant".into()))
        );
        for bad in [
            "$context.requestId",
            "$stageVariables.",
            "$request.header.bad name",
            "$request.header.",
            "$request.querystring.",
            "Authorization",
        ] {
            assert!(IdentitySource::parse(bad).is_err(), "{bad}");
        }
    }
}
