//! AWS access-log formats: literal text with `$context.*` variables (reference §14).

use std::fmt;

macro_rules! vars {
    ($($variant:ident => $name:literal,)*) => {
        /// A `$context` variable an access-log format may use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Var {
            $(
                #[doc = concat!("`$context.", $name, "`")]
                $variant,
            )*
        }

        impl Var {
            /// Every variable, in declaration order.
            pub const ALL: &'static [Var] = &[$(Var::$variant,)*];

            /// The variable for its AWS name (the part after `$context.`).
            pub fn from_name(name: &str) -> Option<Var> {
                match name {
                    $($name => Some(Var::$variant),)*
                    _ => None,
                }
            }

            /// The AWS name, without `$context.`.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Var::$variant => $name,)*
                }
            }
        }
    };
}

vars! {
    RequestId => "requestId",
    ExtendedRequestId => "extendedRequestId",
    ApiId => "apiId",
    AccountId => "accountId",
    Stage => "stage",
    DomainName => "domainName",
    DomainPrefix => "domainPrefix",
    SourceIp => "identity.sourceIp",
    UserAgent => "identity.userAgent",
    Caller => "identity.caller",
    User => "identity.user",
    UserArn => "identity.userArn",
    ApiKey => "identity.apiKey",
    ApiKeyId => "identity.apiKeyId",
    RequestTime => "requestTime",
    RequestTimeEpoch => "requestTimeEpoch",
    HttpMethod => "httpMethod",
    RouteKey => "routeKey",
    ResourcePath => "resourcePath",
    Path => "path",
    Protocol => "protocol",
    Status => "status",
    ResponseLength => "responseLength",
    ResponseLatency => "responseLatency",
    IntegrationLatency => "integrationLatency",
    IntegrationStatus => "integrationStatus",
    IntegrationStatusNested => "integration.status",
    IntegrationLatencyNested => "integration.latency",
    IntegrationError => "integration.error",
    IntegrationIntegrationStatus => "integration.integrationStatus",
    IntegrationErrorMessage => "integrationErrorMessage",
    ErrorMessage => "error.message",
    ErrorMessageString => "error.messageString",
    ErrorResponseType => "error.responseType",
    XrayTraceId => "xrayTraceId",
    DataProcessed => "dataProcessed",
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$context.{}", self.name())
    }
}

/// Where a rendered format reads its values.
pub trait ContextValues {
    /// Appends the value of `var` to `out`.
    fn write(&self, var: Var, out: &mut String);
    /// Appends `$context.authorizer.<key>` (`principalId`, `claims.sub`, a context key) to
    /// `out`; `-` when the caller has no such value.
    fn write_authorizer(&self, key: &str, out: &mut String) {
        let _ = key;
        out.push('-');
    }
}

/// The most a format may hold: AWS refuses HTTP-API access-log formats over 3 KB (§14, §17).
pub const MAX_FORMAT_BYTES: usize = 3 * 1024;

/// Why AWS would refuse a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Over [`MAX_FORMAT_BYTES`].
    #[error("the access log format is {0} bytes; AWS allows at most 3072")]
    TooLong(usize),
    /// Not a single line.
    #[error("the access log format must be a single line")]
    MultiLine,
    /// Neither `$context.requestId` nor `$context.extendedRequestId`: lines could not be told
    /// apart. AWS asks for "at least `$context.requestId` or `$context.extendedRequestId`"
    /// (DG:set-up-access-logging; the HTTP-API CDK docs say the same).
    #[error("the access log format must contain $context.requestId or $context.extendedRequestId")]
    NoRequestId,
    /// A `$context` variable we do not know.
    #[error("unknown variable $context.{0}")]
    UnknownVariable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
    /// `$context.authorizer.<key>`: what the route's authorizer established (§14).
    Authorizer(String),
}

/// A parsed access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogFormat {
    parts: Vec<Part>,
}

/// Characters a variable name is made of after `$context.`.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl AccessLogFormat {
    /// Parses a format as AWS accepts it: one line, at most 3 KB, with `$context.requestId` or
    /// `$context.extendedRequestId`, and only variables we know.
    /// `$context.x` ends at the first character that cannot be part of a name; a trailing `.`
    /// is text (`$context.status.` is the status and a full stop).
    pub fn parse(s: &str) -> Result<AccessLogFormat, FormatError> {
        if s.len() > MAX_FORMAT_BYTES {
            return Err(FormatError::TooLong(s.len()));
        }
        if s.contains(['\n', '\r']) {
            return Err(FormatError::MultiLine);
        }
        const PREFIX: &str = "$context.";
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(PREFIX) {
            literal.push_str(&rest[..i]);
            let after = &rest[i + PREFIX.len()..];
            let end = after.find(|c: char| !name_char(c)).unwrap_or(after.len());
            let name = after[..end].trim_end_matches('.');
            let part = match name.strip_prefix("authorizer.").filter(|k| !k.is_empty()) {
                Some(key) => Part::Authorizer(key.to_string()),
                None => Var::from_name(name)
                    .map(Part::Var)
                    .ok_or_else(|| FormatError::UnknownVariable(name.chars().take(64).collect()))?,
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[name.len()..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let format = AccessLogFormat { parts };
        if !format.uses(Var::RequestId) && !format.uses(Var::ExtendedRequestId) {
            return Err(FormatError::NoRequestId);
        }
        Ok(format)
    }

    /// Whether the format reads `var` (so costly values are made only when used).
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// Renders one line (without newline) onto `out`.
    pub fn render<W: ContextValues + ?Sized>(&self, values: &W, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Var(v) => values.write(*v, out),
                Part::Authorizer(key) => values.write_authorizer(key, out),
            }
        }
    }
}

/// AWS's console example formats (DG:set-up-logging), usable as written.
pub mod examples {
    /// Common Log Format.
    pub const CLF: &str = "$context.identity.sourceIp $context.identity.caller $context.identity.user [$context.requestTime] \"$context.httpMethod $context.resourcePath $context.protocol\" $context.status $context.responseLength $context.requestId $context.extendedRequestId";
    /// JSON.
    pub const JSON: &str = r#"{"requestId":"$context.requestId","extendedRequestId":"$context.extendedRequestId","ip":"$context.identity.sourceIp","caller":"$context.identity.caller","user":"$context.identity.user","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","resourcePath":"$context.resourcePath","status":"$context.status","protocol":"$context.protocol","responseLength":"$context.responseLength"}"#;
    /// XML.
    pub const XML: &str = r#"<request id="$context.requestId"> <ip>$context.identity.sourceIp</ip> <caller>$context.identity.caller</caller> <user>$context.identity.user</user> <requestTime>$context.requestTime</requestTime> <httpMethod>$context.httpMethod</httpMethod> <resourcePath>$context.resourcePath</resourcePath> <status>$context.status</status> <protocol>$context.protocol</protocol> <responseLength>$context.responseLength</responseLength> </request>"#;
    /// CSV.
    pub const CSV: &str = "$context.identity.sourceIp,$context.identity.caller,$context.identity.user,$context.requestTime,$context.httpMethod,$context.resourcePath,$context.protocol,$context.status,$context.responseLength,$context.requestId";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorizer_values_are_variables_of_their_own() {
        struct V;
        impl ContextValues for V {
            fn write(&self, var: Var, out: &mut String) {
                out.push_str(var.name());
            }
            fn write_authorizer(&self, key: &str, out: &mut String) {
                out.push('<');
                out.push_str(key);
                out.push('>');
            }
        }
        let f = AccessLogFormat::parse(
            "$context.requestId $context.authorizer.claims.sub $context.authorizer.principalId.",
        )
        .unwrap();
        let mut out = String::new();
        f.render(&V, &mut out);
        assert_eq!(out, "requestId <claims.sub> <principalId>.");
        assert!(AccessLogFormat::parse("$context.requestId $context.authorizer.").is_err());
    }

    struct Fake;
    impl ContextValues for Fake {
        fn write(&self, var: Var, out: &mut String) {
            out.push_str(match var {
                Var::RequestId => "rid",
                Var::ExtendedRequestId => "ext=",
                Var::SourceIp => "192.0.2.1",
                Var::RequestTime => "04/Mar/2020:19:15:17 +0000",
                Var::HttpMethod => "GET",
                Var::ResourcePath => "/pets/{id}",
                Var::Protocol => "HTTP/1.1",
                Var::Status => "200",
                Var::ResponseLength => "12",
                _ => "-",
            })
        }
    }

    fn line(f: &str) -> String {
        let mut s = String::new();
        AccessLogFormat::parse(f).unwrap().render(&Fake, &mut s);
        s
    }

    /// reference §14: AWS's four console examples parse and render as written.
    #[test]
    fn aws_section14_examples_render() {
        assert_eq!(
            line(examples::CLF),
            r#"192.0.2.1 - - [04/Mar/2020:19:15:17 +0000] "GET /pets/{id} HTTP/1.1" 200 12 rid ext="#
        );
        assert_eq!(
            line(examples::JSON),
            r#"{"requestId":"rid","extendedRequestId":"ext=","ip":"192.0.2.1","caller":"-","user":"-","requestTime":"04/Mar/2020:19:15:17 +0000","httpMethod":"GET","resourcePath":"/pets/{id}","status":"200","protocol":"HTTP/1.1","responseLength":"12"}"#
        );
        assert_eq!(
            line(examples::XML),
            r#"<request id="rid"> <ip>192.0.2.1</ip> <caller>-</caller> <user>-</user> <requestTime>04/Mar/2020:19:15:17 +0000</requestTime> <httpMethod>GET</httpMethod> <resourcePath>/pets/{id}</resourcePath> <status>200</status> <protocol>HTTP/1.1</protocol> <responseLength>12</responseLength> </request>"#
        );
        assert_eq!(
            line(examples::CSV),
            "192.0.2.1,-,-,04/Mar/2020:19:15:17 +0000,GET,/pets/{id},HTTP/1.1,200,12,rid"
        );
    }

    #[test]
    fn names_end_where_a_name_cannot_go_on() {
        assert_eq!(line("$context.requestId. $context.status;"), "rid. 200;");
        assert_eq!(
            line(r#"{"ip":"$context.identity.sourceIp","id":"$context.requestId"}"#),
            r#"{"ip":"192.0.2.1","id":"rid"}"#
        );
        assert_eq!(line("$context.requestId$context.status"), "rid200");
        let f = AccessLogFormat::parse("$context.requestId").unwrap();
        assert!(f.uses(Var::RequestId) && !f.uses(Var::Status));
    }

    /// What AWS refuses (reference §14, §17).
    #[test]
    fn aws_refusals() {
        let full = format!("$context.requestId {}", "x".repeat(3072 - 19));
        assert_eq!(full.len(), 3072);
        assert!(AccessLogFormat::parse(&full).is_ok());
        assert_eq!(
            AccessLogFormat::parse(&format!("$context.requestId {}", "x".repeat(3072))),
            Err(FormatError::TooLong(3091))
        );
        assert_eq!(
            AccessLogFormat::parse("$context.status"),
            Err(FormatError::NoRequestId)
        );
        assert!(AccessLogFormat::parse("$context.extendedRequestId $context.status").is_ok());
        assert_eq!(
            AccessLogFormat::parse("$context.requestId\n$context.status"),
            Err(FormatError::MultiLine)
        );
        assert_eq!(
            AccessLogFormat::parse("$context.requestId $context.nope.x"),
            Err(FormatError::UnknownVariable("nope.x".into()))
        );
        // The message names the variable, not the rest of the format.
        let e = AccessLogFormat::parse("secret $context.requestId $context.nope ...").unwrap_err();
        assert_eq!(e.to_string(), "unknown variable $context.nope");
        // A variable AWS has that we do not render yet is refused too, rather than logged as `-`.
        assert_eq!(
            AccessLogFormat::parse("$context.requestId $context.identity.clientCert.pem"),
            Err(FormatError::UnknownVariable(
                "identity.clientCert.pem".into()
            ))
        );
    }

    #[test]
    fn every_name_round_trips() {
        for v in Var::ALL {
            assert_eq!(Var::from_name(v.name()), Some(*v));
        }
    }
}
