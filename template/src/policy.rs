//! Resource policies (AWS's API Gateway resource policy, reference §11): who may call a Stage,
//! by source address and route. The controller checks statements with this grammar and the
//! dataplane evaluates what it parses: an explicit Deny wins; with a policy, a request no Allow
//! covers is denied.

use std::fmt;
use std::net::IpAddr;

/// An address range: `203.0.113.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// A route pattern: `GET /pets/*`, `ANY /public/*`, `* /*` (AWS's `execute-api:/stage/METHOD/path`
/// resource, below the Stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// Upper-case method, or `None` for `ANY` and `*`.
    method: Option<String>,
    /// The path, `*` matching any run of characters (`/` included).
    path: String,
}

/// A statement that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

impl Net {
    /// Parses a CIDR block or an address; host bits must be zero, as AWS's `aws:SourceIp` has
    /// them.
    pub fn parse(s: &str) -> Result<Net, PolicyError> {
        let bad = |why: &str| PolicyError(format!("sourceIps {s:?}: {why}"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("the prefix length is out of range"))?,
        };
        let net = Net { addr, prefix };
        if net.masked(addr) != addr {
            return Err(bad("has bits set beyond its prefix length"));
        }
        Ok(net)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v) => {
                let bits = u32::from(v);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v) => {
                let bits = u128::from(v);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl RoutePattern {
    /// Parses `METHOD /path` (METHOD may be `ANY` or `*`; the path may hold `*`).
    pub fn parse(s: &str) -> Result<RoutePattern, PolicyError> {
        let bad = |why: &str| PolicyError(format!("routes {s:?}: {why}"));
        let (method, path) = s
            .split_once(' ')
            .ok_or_else(|| bad("must be METHOD /path, like GET /pets/*"))?;
        if !path.starts_with('/') && path != "*" {
            return Err(bad("the path must start with /"));
        }
        let method = match method {
            "ANY" | "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_string()),
            _ => return Err(bad("the method is upper case, ANY or *")),
        };
        Ok(RoutePattern {
            method,
            path: path.to_string(),
        })
    }

    /// Whether a request of `method` for `path` (below the Stage) matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && wildcard(&self.path, path, false)
    }
}

/// IAM's wildcard match, shared by resource policies and authorizer policies: `*` is any run
/// of characters (`/` included) and, when `any_one` is set, `?` is any one character.
pub fn wildcard(pattern: &str, text: &str, any_one: bool) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star) = (0, 0, None);
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if (any_one && c == b'?') || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nets_as_aws_source_ip() {
        let n = Net::parse("203.0.113.0/24").unwrap();
        assert!(n.contains(ip("203.0.113.77")));
        assert!(!n.contains(ip("203.0.114.1")));
        assert!(n.contains(ip("::ffff:203.0.113.5")));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Net::parse("0.0.0.0/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Net::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Net::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        for bad in [
            "203.0.113.1/24",
            "10.0.0.0/33",
            "nope",
            "10.0.0.0/x",
            "2001:db8::1/32",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_patterns() {
        let p = RoutePattern::parse("GET /pets/*").unwrap();
        assert!(p.matches("GET", "/pets/7"));
        assert!(p.matches("GET", "/pets/7/toys"));
        assert!(!p.matches("PUT", "/pets/7"));
        assert!(!p.matches("GET", "/pet"));
        assert!(RoutePattern::parse("ANY /public/*")
            .unwrap()
            .matches("DELETE", "/public/x"));
        assert!(RoutePattern::parse("* *").unwrap().matches("GET", "/"));
        assert!(!wildcard("a?c", "abc", false));
        assert!(wildcard("a?c", "abc", true));
        for bad in ["GET", "get /x", "GET x"] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad}");
        }
    }
}
