//! Resource policy (AWS's API Gateway resource policy, reference §11): checked after routing
//! and before any authorizer. An explicit Deny covering the request wins; with a policy, a
//! request that no Allow covers is denied. A statement covers a request from one of its
//! `sourceIps` (any address without them) for one of its `routes` (any route without them).
//! The address is the connection's peer.

use std::net::IpAddr;
use tollhouse_template::policy::{Net, RoutePattern};

/// One statement, compiled.
pub struct Statement {
    allow: bool,
    nets: Vec<Net>,
    routes: Vec<RoutePattern>,
}

/// A Stage's policy, compiled.
pub struct Policy(Vec<Statement>);

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A Deny covers it.
    ExplicitDeny,
    /// No Allow covers it.
    NotAllowed,
}

impl Policy {
    /// Compiles the snapshot's policy with the grammar the controller checked it with.
    pub fn compile(p: &tollhouse_snapshot::ResourcePolicy) -> Result<Policy, String> {
        let statements = p
            .statements
            .iter()
            .map(|s| {
                Ok(Statement {
                    allow: s.allow,
                    nets: s
                        .source_ips
                        .iter()
                        .map(|n| Net::parse(n).map_err(|e| e.to_string()))
                        .collect::<Result<_, String>>()?,
                    routes: s
                        .routes
                        .iter()
                        .map(|r| RoutePattern::parse(r).map_err(|e| e.to_string()))
                        .collect::<Result<_, String>>()?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Policy(statements))
    }

    /// Decides on a request from `ip` for `method` and `path` (below the Stage).
    pub fn check(&self, ip: IpAddr, method: &str, path: &str) -> Result<(), Refusal> {
        let mut allowed = false;
        for s in &self.0 {
            let from = s.nets.is_empty() || s.nets.iter().any(|n| n.contains(ip));
            let to = s.routes.is_empty() || s.routes.iter().any(|r| r.matches(method, path));
            if from && to {
                if !s.allow {
                    return Err(Refusal::ExplicitDeny);
                }
                allowed = true;
            }
        }
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_snapshot::{PolicyStatement, ResourcePolicy};

    fn policy(statements: Vec<(bool, &[&str], &[&str])>) -> Policy {
        Policy::compile(&ResourcePolicy {
            statements: statements
                .into_iter()
                .map(|(allow, ips, routes)| PolicyStatement {
                    allow,
                    source_ips: ips.iter().map(|s| s.to_string()).collect(),
                    routes: routes.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        })
        .unwrap()
    }

    /// reference §11: an explicit Deny wins; with a policy, no Allow means deny.
    #[test]
    fn aws_section11_deny_wins_and_allow_is_required() {
        let p = policy(vec![
            (false, &["203.0.113.0/24"], &[]),
            (
                true,
                &["0.0.0.0/0", "::/0"],
                &["GET /pets/*", "ANY /public/*"],
            ),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(p.check(ip("198.51.100.1"), "GET", "/pets/1"), Ok(()));
        assert_eq!(p.check(ip("2001:db8::1"), "POST", "/public/x"), Ok(()));
        assert_eq!(
            p.check(ip("203.0.113.9"), "GET", "/pets/1"),
            Err(Refusal::ExplicitDeny)
        );
        assert_eq!(
            p.check(ip("198.51.100.1"), "PUT", "/pets/1"),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            policy(vec![]).check(ip("198.51.100.1"), "GET", "/"),
            Err(Refusal::NotAllowed)
        );
    }
}
