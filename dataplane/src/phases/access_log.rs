//! Access log: the first reader of the whole context. A Stage's `accessLog.format` (AWS's
//! `$context.*` variables, reference §14) is compiled once per push; each request renders one
//! line from its context. Values AWS would not have are `-`, as in AWS's logs; free text (the
//! user agent, the path) is escaped so a client cannot break a JSON line or forge a second one.

use crate::context::RequestContext;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};
use tollhouse_template::{AccessLogFormat, ContextValues, Var};

/// Renders the line of one finished request.
pub fn render(format: &AccessLogFormat, ctx: &RequestContext) -> String {
    let mut out = String::with_capacity(256);
    format.render(&View { ctx, raw: false }, &mut out);
    out
}

/// One `$context` variable's value as is (not escaped for a JSON line), `None` when the
/// request has none: what parameter mapping puts in a header.
pub fn context_value(ctx: &RequestContext, var: Var) -> Option<String> {
    let mut out = String::new();
    View { ctx, raw: true }.write(var, &mut out);
    (out != "-").then_some(out)
}

/// `$context.authorizer.KEY` as is, `None` when there is none.
pub fn authorizer_value(ctx: &RequestContext, key: &str) -> Option<String> {
    let mut out = String::new();
    View { ctx, raw: true }.write_authorizer(key, &mut out);
    (out != "-").then_some(out)
}

/// A request's context as `$context` variables: escaped for a log line, or `raw`.
struct View<'a> {
    ctx: &'a RequestContext,
    raw: bool,
}

impl View<'_> {
    fn text(&self, out: &mut String, s: &str) {
        if self.raw {
            out.push_str(s);
        } else {
            escaped(out, s);
        }
    }

    fn or_dash(&self, out: &mut String, v: Option<&str>) {
        match v {
            Some(s) if !s.is_empty() => self.text(out, s),
            _ => out.push('-'),
        }
    }
}

/// Writes `s` with `"`, `\` and control characters escaped as in a JSON string.
fn escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// `dd/MMM/yyyy:HH:mm:ss +0000`, AWS's `requestTime` (reference §14), from an HTTP date.
pub(crate) fn clf_time(t: std::time::SystemTime, out: &mut String) {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let http = httpdate::fmt_http_date(t);
    let p: Vec<&str> = http.split(' ').collect();
    match p.as_slice() {
        [_, day, month, year, time, _] => {
            let _ = write!(out, "{day}/{month}/{year}:{time} +0000");
        }
        _ => out.push('-'),
    }
}

impl ContextValues for View<'_> {
    fn write_authorizer(&self, key: &str, out: &mut String) {
        let Some(id) = self.ctx.identity.as_deref() else {
            out.push('-');
            return;
        };
        let value = match key {
            "principalId" => id.principal_id.as_deref().map(std::borrow::Cow::Borrowed),
            _ => match key.strip_prefix("claims.") {
                Some(claim) => id.claims.get(claim),
                None => id.context.get(key),
            }
            .map(|v| match v {
                serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                other => std::borrow::Cow::Owned(other.to_string()),
            }),
        };
        match value {
            Some(v) => self.text(out, &v),
            None => out.push('-'),
        }
    }

    fn write(&self, var: Var, out: &mut String) {
        let c = self.ctx;
        let stage = c.stage();
        let route = c.route();
        let flavour = c.flavour;
        match var {
            Var::RequestId => {
                self.or_dash(out, c.ids.as_ref().and_then(|i| i.request_id.to_str().ok()))
            }
            Var::ExtendedRequestId => {
                self.or_dash(out, c.ids.as_ref().and_then(|i| i.extended().to_str().ok()))
            }
            Var::ApiId => self.or_dash(out, stage.and_then(|s| s.api.to_str().ok())),
            Var::Stage => self.or_dash(out, stage.map(|s| s.name.as_str())),
            Var::DomainName => {
                let host = c.host_str();
                self.or_dash(out, Some(host.rsplit_once(':').map_or(host, |(h, _)| h)))
            }
            Var::DomainPrefix => self.or_dash(out, c.host_str().split(['.', ':']).next()),
            Var::SourceIp => {
                let _ = write!(out, "{}", c.conn.remote.ip());
            }
            Var::UserAgent => {
                self.or_dash(out, c.user_agent.as_ref().and_then(|v| v.to_str().ok()))
            }
            Var::RequestTime => clf_time(c.time, out),
            Var::RequestTimeEpoch => {
                let ms = c.time.duration_since(UNIX_EPOCH).map_or(0, millis);
                let _ = write!(out, "{ms}");
            }
            Var::HttpMethod => out.push_str(c.method.as_str()),
            Var::RouteKey => match route {
                Some(r) => self.text(out, &r.route_key(&c.method)),
                None => out.push('-'),
            },
            Var::ResourcePath => self.or_dash(out, route.map(|r| r.resource_path.as_str())),
            Var::Path => self.text(out, c.uri.path()),
            // AWS: "always HTTP/1.1, even for HTTP/2 clients" (reference §14).
            Var::Protocol => out.push_str("HTTP/1.1"),
            Var::Status => {
                let _ = write!(out, "{}", c.status);
            }
            Var::ResponseLength => match c.response_length {
                Some(n) => {
                    let _ = write!(out, "{n}");
                }
                None => out.push('-'),
            },
            Var::ResponseLatency => match c.response_latency {
                Some(d) => {
                    let _ = write!(out, "{}", millis(d));
                }
                None => out.push('-'),
            },
            Var::IntegrationLatency | Var::IntegrationLatencyNested => {
                match c.integration.latency {
                    Some(d) => {
                        let _ = write!(out, "{}", millis(d));
                    }
                    None => out.push('-'),
                }
            }
            Var::IntegrationStatus
            | Var::IntegrationStatusNested
            | Var::IntegrationIntegrationStatus => match c.integration.status {
                Some(s) => {
                    let _ = write!(out, "{s}");
                }
                None => out.push('-'),
            },
            Var::IntegrationError | Var::IntegrationErrorMessage => {
                self.or_dash(out, c.integration.error)
            }
            Var::ErrorMessage => self.or_dash(out, c.error.as_ref().map(|e| e.message(flavour))),
            Var::ErrorMessageString => match &c.error {
                Some(e) => {
                    out.push_str("\\\"");
                    self.text(out, e.message(flavour));
                    out.push_str("\\\"");
                }
                None => out.push('-'),
            },
            Var::ErrorResponseType => {
                self.or_dash(out, c.error.as_ref().map(|e| e.response_type(flavour)))
            }
            Var::XrayTraceId => self.or_dash(out, c.trace_id().and_then(|v| v.to_str().ok())),
            Var::ApiKeyId => self.or_dash(out, c.api_key_id.as_deref()),
            // A SigV4 caller (reference §7): its principal, else its access key id.
            Var::Caller | Var::User => {
                let iam = c.identity.as_deref().and_then(|i| i.iam.as_ref());
                self.or_dash(
                    out,
                    iam.map(|i| i.principal.as_deref().unwrap_or(i.access_key.as_str())),
                )
            }
            Var::UserArn => self.or_dash(
                out,
                c.identity
                    .as_deref()
                    .and_then(|i| i.iam.as_ref())
                    .and_then(|i| i.principal.as_deref()),
            ),
            // AWS logs the key's value; a key value is a secret and never reaches a log here,
            // so `-`. No accounts here: `-`, as AWS logs a value it does not have.
            Var::ApiKey | Var::AccountId | Var::DataProcessed => out.push('-'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_times_are_aws_shaped() {
        let mut s = String::new();
        clf_time(UNIX_EPOCH + Duration::from_secs(1_583_349_317), &mut s);
        assert_eq!(s, "04/Mar/2020:19:15:17 +0000");
    }

    #[test]
    fn free_text_cannot_break_a_json_line() {
        let mut s = String::new();
        escaped(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\u000ad");
    }
}
