//! SigV4 authorizers (AWS's `AWS_IAM` authorization, reference §7): the request's
//! `Authorization: AWS4-HMAC-SHA256 …` checked against the access keys of the snapshot.
//!
//! The canonical request is AWS's for execute-api: the path as the client sent it with dot
//! segments and repeated slashes removed and every byte but the unreserved ones and `/`
//! percent-encoded again (so the encoded path is encoded twice), the query's parameters
//! decoded, re-encoded and sorted, the signed headers lower-cased with trimmed values, and
//! the SHA-256 of the body. The dataplane holds no secret access key: the controller sends
//! the signing key of each access key for a few UTC days (the end of SigV4's `HMAC` chain,
//! `kSigning`), and a signature is one `HMAC` of the string to sign with the day's key.

use http::HeaderMap;
use ring::hmac;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use tollhouse_snapshot::date;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's time may be from ours (AWS: 5 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// Why a signature is refused (reference §7), with AWS's message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigFailure {
    /// No `Authorization: AWS4-HMAC-SHA256 …` (MISSING_AUTHENTICATION_TOKEN).
    Missing,
    /// The header cannot be read (`IncompleteSignatureException`).
    Incomplete(Box<str>),
    /// The signature, its scope or its time is wrong (`InvalidSignatureException`).
    Invalid(Box<str>),
    /// An access key or session token not known (`UnrecognizedClientException`).
    UnknownKey,
}

impl SigFailure {
    /// What the access log says (`$context.error.message`): a fixed text, never the
    /// canonical request or the header (which carry the client's token and signature).
    pub fn log_message(&self) -> &'static str {
        match self {
            SigFailure::Missing => "Missing Authentication Token",
            SigFailure::Incomplete(_) => "Incomplete signature",
            SigFailure::Invalid(m) if m.starts_with("Signature expired") => "Signature expired",
            SigFailure::Invalid(m) if m.starts_with("Signature not yet current") => {
                "Signature not yet current"
            }
            SigFailure::Invalid(_) => {
                "The request signature we calculated does not match the signature you provided."
            }
            SigFailure::UnknownKey => "The security token included in the request is invalid.",
        }
    }
}

/// An access key, as the snapshot gives it.
pub struct Credential {
    /// `$context.identity.caller`, `userArn`.
    pub principal: Option<String>,
    /// SHA-256 of the session token requests must carry (temporary credentials).
    pub session_token_sha256: Option<[u8; 32]>,
    /// Signing keys by `yyyymmdd`.
    pub keys: HashMap<String, hmac::Key>,
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The access key id.
    pub access_key: String,
    /// The Secret's `principal`, if it has one.
    pub principal: Option<String>,
}

/// A SigV4 authorizer, compiled.
pub struct Sigv4Authorizer {
    region: String,
    service: String,
    credentials: HashMap<String, Credential>,
}

/// The parts of a request a signature covers.
pub struct Signed<'a> {
    /// The method.
    pub method: &'a str,
    /// The path as the client sent it (still percent-encoded).
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// `Host` (or HTTP/2's `:authority`).
    pub host: &'a str,
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// A parsed `Authorization` header.
struct AuthHeader<'a> {
    access_key: &'a str,
    scope_date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(m: String) -> SigFailure {
    SigFailure::Incomplete(m.into_boxed_str())
}

fn invalid(m: String) -> SigFailure {
    SigFailure::Invalid(m.into_boxed_str())
}

fn parse_header<'a>(value: &'a str, dated: bool) -> Result<AuthHeader<'a>, SigFailure> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .unwrap_or("");
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
            )));
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = String::new();
    if credential.is_none() {
        missing.push_str("Authorization header requires 'Credential' parameter. ");
    }
    if signature.is_none() {
        missing.push_str("Authorization header requires 'Signature' parameter. ");
    }
    if signed.is_none() {
        missing.push_str("Authorization header requires 'SignedHeaders' parameter. ");
    }
    if !dated {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed), Some(signature), true) =
        (credential, signed, signature, missing.is_empty())
    else {
        return Err(incomplete(format!("{missing}Authorization={value}")));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, scope_date, region, service, terminator] = parts.as_slice() else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, not '{credential}'. "
        )));
    };
    if *terminator != "aws4_request" {
        return Err(invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    Ok(AuthHeader {
        access_key,
        scope_date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Percent-encodes every byte but `A-Z a-z 0-9 - _ . ~` (and `/` when `slash`), upper-case hex.
fn encode(s: &str, slash: bool, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

/// The canonical URI of a path as sent: dot segments and empty segments removed (as AWS's
/// SDKs sign), then encoded once more.
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalised = String::with_capacity(path.len() + 1);
    normalised.push('/');
    normalised.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalised.push('/');
    }
    let mut out = String::with_capacity(normalised.len() + 16);
    encode(&normalised, true, &mut out);
    out
}

/// The canonical query string: each name and value decoded (`+` is a space, as botocore sends
/// its `params` form-encoded and signs them `%20`-encoded), encoded as AWS encodes, sorted.
pub fn canonical_query(query: Option<&str>) -> String {
    let decode =
        |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).collect::<Vec<u8>>();
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            encode(&String::from_utf8_lossy(&decode(k)), false, &mut ek);
            encode(&String::from_utf8_lossy(&decode(v)), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request for `signed_headers` (lower-case, as the header lists them).
pub fn canonical_request(req: &Signed<'_>, signed_headers: &[&str]) -> Result<String, SigFailure> {
    let mut out = String::with_capacity(512);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        if *name == "host" && !req.headers.contains_key(http::header::HOST) {
            out.push_str(req.host);
        } else {
            let values: Vec<String> = req
                .headers
                .get_all(*name)
                .iter()
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            out.push_str(&values.join(","));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(req.payload_sha256);
    Ok(out)
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `kSigning` for a secret access key, day, region and service: what the controller sends.
pub fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [day, region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    key
}

/// The request's time: `X-Amz-Date`, else `Date`; and the text it was given as.
fn request_time(headers: &HeaderMap) -> Option<(SystemTime, String)> {
    if let Some(v) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()) {
        return date::parse_amz_date(v).map(|t| (t, v.to_string()));
    }
    let v = headers.get(http::header::DATE)?.to_str().ok()?;
    let t = httpdate::parse_http_date(v).ok()?;
    Some((t, date::amz_date(t)))
}

impl Sigv4Authorizer {
    /// Compiles the snapshot's SigV4 authorizer.
    pub fn compile(s: &tollhouse_snapshot::Sigv4) -> Result<Self, String> {
        let mut credentials = HashMap::with_capacity(s.credentials.len());
        for c in &s.credentials {
            let mut keys = HashMap::with_capacity(c.signing_keys.len());
            for (day, key) in &c.signing_keys {
                let bytes = hex::decode(&key.0).map_err(|_| {
                    format!("access key {}: a signing key is not hex", c.access_key_id)
                })?;
                keys.insert(day.clone(), hmac::Key::new(hmac::HMAC_SHA256, &bytes));
            }
            let token = match &c.session_token_sha256 {
                None => None,
                Some(h) => Some(
                    hex::decode(h)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            format!("access key {}: bad session token hash", c.access_key_id)
                        })?,
                ),
            };
            credentials.insert(
                c.access_key_id.clone(),
                Credential {
                    principal: c.principal.clone(),
                    session_token_sha256: token,
                    keys,
                },
            );
        }
        Ok(Sigv4Authorizer {
            region: s.region.clone(),
            service: s.service.clone(),
            credentials,
        })
    }

    /// Checks a request's signature at `now`.
    pub fn verify(&self, req: &Signed<'_>, now: SystemTime) -> Result<Caller, SigFailure> {
        let Some(value) = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(SigFailure::Missing);
        };
        let time = request_time(req.headers);
        let h = parse_header(value, time.is_some())?;
        let Some((signed_at, amz_date)) = time else {
            return Err(SigFailure::Missing);
        };
        if !h.signed_headers.contains(&"host") {
            return Err(incomplete(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        let token = req
            .headers
            .get("x-amz-security-token")
            .map(|v| v.as_bytes());
        if token.is_some() && !h.signed_headers.contains(&"x-amz-security-token") {
            return Err(incomplete(
                "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        // §7: ±5 minutes, AWS's words.
        let fmt = |t: SystemTime| date::amz_date(t);
        if signed_at + MAX_SKEW < now {
            return Err(invalid(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                fmt(now - MAX_SKEW),
                fmt(now)
            )));
        }
        if signed_at > now + MAX_SKEW {
            return Err(invalid(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                fmt(now + MAX_SKEW),
                fmt(now)
            )));
        }
        let day = amz_date.get(0..8).unwrap_or("");
        if h.scope_date != day {
            return Err(invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{day}', from '{amz_date}'.",
                h.scope_date
            )));
        }
        if h.region != self.region {
            return Err(invalid(format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                h.region
            )));
        }
        if h.service != self.service {
            return Err(invalid(format!(
                "Credential should be scoped to correct service: '{}'. ",
                self.service
            )));
        }
        let Some(credential) = self.credentials.get(h.access_key) else {
            return Err(SigFailure::UnknownKey);
        };
        match (&credential.session_token_sha256, token) {
            (None, None) => {}
            (Some(want), Some(got)) if want[..] == Sha256::digest(got)[..] => {}
            _ => return Err(SigFailure::UnknownKey),
        }
        let creq = canonical_request(req, &h.signed_headers)?;
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let sts = string_to_sign(&amz_date, &scope, &creq);
        let ok = match (credential.keys.get(day), hex::decode(h.signature)) {
            (Some(key), Ok(sig)) => hmac::verify(key, sts.as_bytes(), &sig).is_ok(),
            (None, _) => {
                tracing::warn!(
                    day,
                    "no SigV4 signing key for this day (is the controller publishing?)"
                );
                false
            }
            (_, Err(_)) => false,
        };
        if !ok {
            return Err(invalid(format!(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{creq}'\n\nThe String-to-Sign should have been\n'{sts}'\n"
            )));
        }
        Ok(Caller {
            access_key: h.access_key.to_string(),
            principal: credential.principal.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The secret of AWS's SigV4 test suite (reference §7).
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn sign(key: &[u8], sts: &str) -> String {
        hex::encode(hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            sts.as_bytes(),
        ))
    }

    /// botocore's aws4_testsuite `get-space` and `get-utf8` (the request line's path is
    /// already encoded on the wire, so the canonical URI encodes it twice, as execute-api).
    #[test]
    fn aws_section7_testsuite_double_encoded_paths() {
        for (path, creq_path, signature) in [
            (
                "/%20/foo",
                "/%2520/foo",
                "2be9e587d1ee1f0fd02128724b86b4358ba3630d39f493b6e06610a19a50779e",
            ),
            (
                "/%E1%88%B4",
                "/%25E1%2588%25B4",
                "57b1eb3df3b16a8479c0097b66c0b261cfd65b829419a3f2c3d05319722490b8",
            ),
        ] {
            let h = headers(&[
                ("date", "Mon, 09 Sep 2011 23:36:00 GMT"),
                ("host", "host.foo.com"),
            ]);
            let req = Signed {
                method: "GET",
                path,
                query: None,
                headers: &h,
                host: "host.foo.com",
                payload_sha256: EMPTY_SHA256,
            };
            let creq = canonical_request(&req, &["date", "host"]).unwrap();
            assert_eq!(
                creq,
                format!("GET\n{creq_path}\n\ndate:Mon, 09 Sep 2011 23:36:00 GMT\nhost:host.foo.com\n\ndate;host\n{EMPTY_SHA256}")
            );
            let sts = string_to_sign(
                "20110909T233600Z",
                "20110909/us-east-1/host/aws4_request",
                &creq,
            );
            let key = signing_key(SUITE_SECRET, "20110909", "us-east-1", "host");
            assert_eq!(sign(&key, &sts), signature, "{path}");
        }
    }

    /// aws-sig-v4-test-suite `double-encode-path` (an execute-api WebSocket connection path,
    /// with `%3D` encoded again).
    #[test]
    fn aws_section7_testsuite_double_encode_path() {
        let h = headers(&[
            ("x-amz-date", "20150830T123600Z"),
            ("host", "tj9n5r0m12.execute-api.us-east-1.amazonaws.com"),
        ]);
        let req = Signed {
            method: "POST",
            path: "/test/@connections/JBDvjfGEIAMCERw%3D",
            query: None,
            headers: &h,
            host: "",
            payload_sha256: EMPTY_SHA256,
        };
        let creq = canonical_request(&req, &["host", "x-amz-date"]).unwrap();
        assert!(
            creq.starts_with("POST\n/test/%40connections/JBDvjfGEIAMCERw%253D\n"),
            "{creq}"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &creq,
        );
        let key = signing_key(SUITE_SECRET, "20150830", "us-east-1", "service");
        assert_eq!(
            sign(&key, &sts),
            "6f871eb157f326fa5f7439eb88ca200048635950ce7d6037deda56f0c95d4364"
        );
    }

    /// aws-sig-v4-test-suite `get-vanilla-query-order-key-case`: parameters sorted. The
    /// signature is the original suite's (`AKIDEXAMPLE`); aws-sdk-rust's copy re-signs the
    /// request for its own `ANOTREAL` credentials.
    #[test]
    fn aws_section7_testsuite_query_order() {
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let req = Signed {
            method: "GET",
            path: "/",
            query: Some("Param2=value2&Param1=value1"),
            headers: &h,
            host: "",
            payload_sha256: EMPTY_SHA256,
        };
        let creq = canonical_request(&req, &["host", "x-amz-date"]).unwrap();
        assert!(
            creq.starts_with("GET\n/\nParam1=value1&Param2=value2\n"),
            "{creq}"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &creq,
        );
        let key = signing_key(SUITE_SECRET, "20150830", "us-east-1", "service");
        assert_eq!(
            sign(&key, &sts),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn paths_and_queries_are_canonical() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("//a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(canonical_uri("/a b~"), "/a%20b~");
        assert_eq!(canonical_query(Some("b=2&a=%7e&a=1&c")), "a=1&a=~&b=2&c=");
        assert_eq!(
            canonical_query(Some("k=a+b&p=%2B&s=%2f")),
            "k=a%20b&p=%2B&s=%2F"
        );
    }

    fn authorizer() -> Sigv4Authorizer {
        let key = signing_key("secret", "20150830", "us-east-1", "execute-api");
        Sigv4Authorizer {
            region: "us-east-1".into(),
            service: "execute-api".into(),
            credentials: HashMap::from([(
                "AKID".to_string(),
                Credential {
                    principal: Some("arn:aws:iam::1:user/alice".into()),
                    session_token_sha256: None,
                    keys: HashMap::from([(
                        "20150830".to_string(),
                        hmac::Key::new(hmac::HMAC_SHA256, &key),
                    )]),
                },
            )]),
        }
    }

    /// Signs a GET / at 12:36:00 as a client would.
    fn signed_headers(scope: &str, date: &str) -> HeaderMap {
        let mut h = headers(&[("host", "api.example"), ("x-amz-date", date)]);
        let req = Signed {
            method: "GET",
            path: "/",
            query: None,
            headers: &h,
            host: "",
            payload_sha256: EMPTY_SHA256,
        };
        let creq = canonical_request(&req, &["host", "x-amz-date"]).unwrap();
        let day = &date[..8];
        let sts = string_to_sign(date, &format!("{day}/{scope}/aws4_request"), &creq);
        let sig = sign(
            &signing_key("secret", day, "us-east-1", "execute-api"),
            &sts,
        );
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=AKID/{day}/{scope}/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
            ))
            .unwrap(),
        );
        h
    }

    fn verify(h: &HeaderMap, now: &str) -> Result<Caller, SigFailure> {
        authorizer().verify(
            &Signed {
                method: "GET",
                path: "/",
                query: None,
                headers: h,
                host: "",
                payload_sha256: EMPTY_SHA256,
            },
            date::parse_amz_date(now).unwrap(),
        )
    }

    #[test]
    fn aws_section7_skew_and_answers() {
        let h = signed_headers("us-east-1/execute-api", "20150830T123600Z");
        let ok = verify(&h, "20150830T124000Z").unwrap();
        assert_eq!(ok.access_key, "AKID");
        assert_eq!(
            verify(&h, "20150830T124200Z"),
            Err(invalid("Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z (20150830T124200Z - 5 min.)".into()))
        );
        assert_eq!(
            verify(&h, "20150830T123000Z"),
            Err(invalid("Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T123000Z + 5 min.)".into()))
        );
        let wrong = signed_headers("eu-west-1/execute-api", "20150830T123600Z");
        assert!(
            matches!(verify(&wrong, "20150830T123600Z"), Err(SigFailure::Invalid(m)) if m.contains("valid region"))
        );
        let mut tampered = h.clone();
        tampered.insert("x-amz-date", HeaderValue::from_static("20150830T123601Z"));
        let Err(SigFailure::Invalid(m)) = verify(&tampered, "20150830T123600Z") else {
            panic!()
        };
        assert!(m.contains("The Canonical String for this request should have been\n'GET\n/\n\nhost:api.example\nx-amz-date:20150830T123601Z\n"), "{m}");
        assert_eq!(
            verify(&headers(&[]), "20150830T123600Z"),
            Err(SigFailure::Missing)
        );
        let bearer = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            verify(&bearer, "20150830T123600Z"),
            Err(incomplete("Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=Bearer x".into()))
        );
        let mut unknown = h.clone();
        let v = unknown[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace("AKID/", "OTHER/");
        unknown.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&v).unwrap(),
        );
        assert_eq!(
            verify(&unknown, "20150830T123600Z"),
            Err(SigFailure::UnknownKey)
        );
        let mut with_token = h.clone();
        with_token.insert("x-amz-security-token", HeaderValue::from_static("t"));
        assert!(matches!(
            verify(&with_token, "20150830T123600Z"),
            Err(SigFailure::Incomplete(_))
        ));
    }
}
