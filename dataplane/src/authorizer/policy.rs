//! A function authorizer's reply, as AWS reads it (reference §5): an IAM policy with
//! `principalId`, `context` and `usageIdentifierKey`, or (2.0) a simple `isAuthorized`.
//! A cached policy is evaluated again against each request's method ARN.

use serde_json::{Map, Value};

/// What a function answered, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `{"isAuthorized": bool, "context": {...}}` (2.0 simple responses): one answer for
    /// every route.
    Simple {
        /// Whether the caller may call.
        authorized: bool,
        /// Handed to the integration.
        context: Map<String, Value>,
    },
    /// An IAM policy.
    Policy(Policy),
}

/// An IAM policy reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `principalId`.
    pub principal_id: String,
    /// The statements about `execute-api:Invoke`.
    pub statements: Vec<Statement>,
    /// `context`.
    pub context: Map<String, Value>,
    /// `usageIdentifierKey`.
    pub usage_identifier_key: Option<String>,
}

/// One policy statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `Effect: Allow` (else Deny).
    pub allow: bool,
    /// `Action` patterns, lower-cased (IAM actions are case-insensitive).
    pub actions: Vec<String>,
    /// `Resource` patterns.
    pub resources: Vec<String>,
    /// Whether it has a `Condition`: conditions are not evaluated, so such an Allow never
    /// allows and such a Deny always denies (failing closed).
    pub conditional: bool,
}

/// What a policy says about one method ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An Allow covers it and no Deny does.
    Allow,
    /// A Deny covers it (an explicit deny wins).
    Deny,
    /// No statement covers it.
    NotCovered,
}

/// Why a reply cannot be read: AWS answers 500 (AUTHORIZER_CONFIGURATION_ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The longest `Resource` AWS accepts (reference §5).
const MAX_RESOURCE: usize = 512;

fn strings(v: &Value, what: &'static str) -> Result<Vec<String>, Malformed> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or(Malformed(what)))
            .collect(),
        _ => Err(Malformed(what)),
    }
}

fn context(reply: &Map<String, Value>) -> Result<Map<String, Value>, Malformed> {
    match reply.get("context") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(Malformed("context is not an object")),
    }
}

impl Verdict {
    /// Reads a reply body; `simple`: the authorizer has simple responses on.
    pub fn parse(body: &[u8], simple: bool) -> Result<Verdict, Malformed> {
        let reply: Value =
            serde_json::from_slice(body).map_err(|_| Malformed("reply is not JSON"))?;
        let Value::Object(reply) = reply else {
            return Err(Malformed("reply is not a JSON object"));
        };
        if simple {
            let Some(authorized) = reply.get("isAuthorized").and_then(Value::as_bool) else {
                return Err(Malformed("isAuthorized is not a boolean"));
            };
            return Ok(Verdict::Simple {
                authorized,
                context: context(&reply)?,
            });
        }
        let principal_id = match reply.get("principalId") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Malformed("principalId is missing")),
        };
        let Some(Value::Object(doc)) = reply.get("policyDocument") else {
            return Err(Malformed("policyDocument is missing"));
        };
        let raw = match doc.get("Statement") {
            Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(Malformed("policyDocument.Statement is missing")),
        };
        let mut statements = Vec::with_capacity(raw.len());
        for s in raw {
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err(Malformed("a statement's Effect is not Allow or Deny")),
            };
            let actions = strings(
                s.get("Action").unwrap_or(&Value::Null),
                "a statement's Action",
            )?
            .into_iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
            let resources = strings(
                s.get("Resource").unwrap_or(&Value::Null),
                "a statement's Resource",
            )?;
            if resources.iter().any(|r| r.len() > MAX_RESOURCE) {
                return Err(Malformed("a Resource is over 512 characters"));
            }
            statements.push(Statement {
                allow,
                actions,
                resources,
                conditional: s.get("Condition").is_some_and(|c| !c.is_null()),
            });
        }
        let usage_identifier_key = match reply.get("usageIdentifierKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Malformed("usageIdentifierKey is not a string")),
        };
        Ok(Verdict::Policy(Policy {
            principal_id,
            statements,
            context: context(&reply)?,
            usage_identifier_key,
        }))
    }
}

impl Policy {
    /// Evaluates the policy for `execute-api:Invoke` on `arn`.
    pub fn decide(&self, arn: &str) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            let acts = s.actions.iter().any(|a| glob(a, "execute-api:invoke"));
            if !acts || !s.resources.iter().any(|r| glob(r, arn)) {
                continue;
            }
            if !s.allow {
                return Decision::Deny;
            }
            allowed |= !s.conditional;
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotCovered
        }
    }
}

/// IAM's wildcard match: `*` is any run of characters (`/` included), `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    tollhouse_template::policy::wildcard(pattern, text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:shop/prod/GET/pets/7";

    fn policy(statements: &str) -> Policy {
        let body = format!(
            r#"{{"principalId":"u1","policyDocument":{{"Version":"2012-10-17","Statement":{statements}}},"context":{{"tier":"gold","n":3}}}}"#
        );
        match Verdict::parse(body.as_bytes(), false) {
            Ok(Verdict::Policy(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn globs_as_iam() {
        assert!(glob("*", ARN));
        assert!(glob("arn:aws:execute-api:*:*:shop/prod/GET/*", ARN));
        assert!(glob(
            "arn:aws:execute-api:us-east-1:123456789012:shop/prod/*/pets/?",
            ARN
        ));
        assert!(!glob(
            "arn:aws:execute-api:us-east-1:123456789012:shop/prod/POST/*",
            ARN
        ));
        assert!(!glob(
            "arn:aws:execute-api:us-east-1:123456789012:shop/prod/GET/pets",
            ARN
        ));
        assert!(glob("a**b", "ab"));
        assert!(!glob("", "a"));
    }

    #[test]
    fn an_explicit_deny_wins_and_uncovered_is_not_allowed() {
        let allow = r#"{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:*:*:shop/prod/GET/*"}"#;
        let deny = r#"{"Effect":"Deny","Action":["execute-api:*"],"Resource":["*/pets/7"]}"#;
        assert_eq!(policy(allow).decide(ARN), Decision::Allow);
        assert_eq!(
            policy(allow).decide(&ARN.replace("GET", "PUT")),
            Decision::NotCovered
        );
        assert_eq!(
            policy(&format!("[{allow},{deny}]")).decide(ARN),
            Decision::Deny
        );
        let other_action = r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}"#;
        assert_eq!(policy(other_action).decide(ARN), Decision::NotCovered);
        let lower = r#"{"Effect":"Allow","Action":"Execute-API:invoke","Resource":"*"}"#;
        assert_eq!(policy(lower).decide(ARN), Decision::Allow);
        // Conditions are not evaluated: fail closed both ways.
        let cond = r#"{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#;
        assert_eq!(policy(cond).decide(ARN), Decision::NotCovered);
        let cond_deny = r#"[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"x":"true"}}}]"#;
        assert_eq!(policy(cond_deny).decide(ARN), Decision::Deny);
    }

    #[test]
    fn malformed_replies_are_refused() {
        for body in [
            "not json",
            r#""Allow""#,
            r#"{"policyDocument":{"Statement":[]}}"#,
            r#"{"principalId":"u","policyDocument":{}}"#,
            r#"{"principalId":"u","policyDocument":{"Statement":[{"Effect":"allow","Action":"*","Resource":"*"}]}}"#,
            r#"{"principalId":"u","policyDocument":{"Statement":[{"Effect":"Allow","Resource":"*"}]}}"#,
            r#"{"principalId":"u","policyDocument":{"Statement":[]},"context":[1]}"#,
        ] {
            assert!(Verdict::parse(body.as_bytes(), false).is_err(), "{body}");
        }
        assert!(Verdict::parse(br#"{"isAuthorized":"yes"}"#, true).is_err());
        assert_eq!(
            Verdict::parse(br#"{"isAuthorized":true,"context":{"a":{"b":1}}}"#, true),
            Ok(Verdict::Simple {
                authorized: true,
                context: serde_json::from_str(r#"{"a":{"b":1}}"#).unwrap()
            })
        );
    }

    #[test]
    fn usage_identifier_key_and_context_are_read() {
        let body = br#"{"principalId":"u1","usageIdentifierKey":"k-123","policyDocument":{"Statement":[]},"context":{"tier":"gold"}}"#;
        let Ok(Verdict::Policy(p)) = Verdict::parse(body, false) else {
            panic!()
        };
        assert_eq!(p.usage_identifier_key.as_deref(), Some("k-123"));
        assert_eq!(p.context.get("tier"), Some(&Value::from("gold")));
        assert_eq!(p.principal_id, "u1");
    }
}
