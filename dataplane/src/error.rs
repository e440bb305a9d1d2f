//! Errors the gateway itself answers, and the one function that turns them into responses.
//!
//! Status codes, bodies and `x-amzn-ErrorType` follow AWS for the flavour of the Stage that
//! was reached (reference §3 and §3a; `docs/compatibility.md` lists each case with its source
//! and marks our own choices). JSON spacing is AWS's too: REST integration errors render the
//! default template `{"message":$context.error.messageString}` with a message string that
//! starts with a space, the compact bodies have none.

use crate::authorizer::jwt::JwtFailure;
use crate::authorizer::sigv4::SigFailure;
use crate::flavour::Flavour;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use std::borrow::Cow;

/// `x-amzn-ErrorType`, written as AWS writes it on HTTP/1.1.
pub const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// Why a request was refused before it could be routed: malformed framing or a hostile path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1: a request smuggling
    /// vector; refused and the connection closed, as nginx does).
    ContentLengthAndTransferEncoding,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// A path that is not `/`-rooted origin form, or whose percent-encoding is broken.
    MalformedPath,
    /// The body broke off before its end while it was read for a signature.
    BrokenBody,
}

impl BadRequest {
    fn label(self) -> &'static str {
        match self {
            BadRequest::ContentLengthAndTransferEncoding => "bad_request_framing",
            BadRequest::MissingHost => "bad_request_host",
            BadRequest::MalformedPath => "bad_request_path",
            BadRequest::BrokenBody => "bad_request_body",
        }
    }
}

/// Something the gateway answers without (or instead of) the integration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No stage or route matches, or the route lacks the method.
    #[error("no route")]
    NoRoute,
    /// The body is over 10 MB (reference §3a: rejected before routing).
    #[error("request body too large")]
    PayloadTooLarge,
    /// Request headers over AWS's 10,240 bytes (reference §17).
    #[error("request headers too large")]
    HeadersTooLarge,
    /// Request target over AWS's 10,240 bytes (reference §17).
    #[error("request URI too long")]
    UriTooLong,
    /// Malformed or hostile framing.
    #[error("bad request")]
    BadRequest(BadRequest),
    /// The integration did not answer within its timeout (INTEGRATION_TIMEOUT).
    #[error("integration timed out")]
    IntegrationTimeout,
    /// The integration could not be reached or broke off (INTEGRATION_FAILURE).
    #[error("integration failed")]
    IntegrationFailure,
    /// The integration URI uses a stage variable the Stage does not define (reference §3a R7:
    /// the route is served and the call fails).
    #[error("integration URI uses an undefined stage variable")]
    UndefinedStageVariable,
    /// No snapshot has been applied yet (ours: AWS has no such state).
    #[error("not ready")]
    NotReady,
    /// The route's Service has no ready endpoint (ours).
    #[error("no ready endpoints")]
    NoEndpoints,
    /// A route, Stage or account limit has no token left (THROTTLED, reference §1).
    #[error("throttled")]
    Throttled,
    /// A route with `apiKeyRequired` got no key, an unknown or disabled one, or one in no
    /// usage plan covering the Stage (INVALID_API_KEY, reference §2).
    #[error("invalid API key")]
    InvalidApiKey,
    /// The key's usage-plan quota for the period is spent (QUOTA_EXCEEDED, reference §2).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The route's authorizer refused the credentials, or found none (UNAUTHORIZED,
    /// reference §5, §6); for a JWT, why (the `www-authenticate` description).
    #[error("unauthorized")]
    Unauthorized(Option<JwtFailure>),
    /// A function authorizer denied: a Deny covering the method ARN, or `isAuthorized: false`
    /// (ACCESS_DENIED, reference §5).
    #[error("authorizer denied")]
    AuthorizerDenied,
    /// A function authorizer's policy allows, but not this method ARN (ACCESS_DENIED).
    #[error("authorizer policy does not cover the method")]
    AuthorizerNotCovered,
    /// A function authorizer failed: unreachable, timed out, a function error or a reply that
    /// cannot be read (AUTHORIZER_CONFIGURATION_ERROR, reference §5).
    #[error("authorizer failed")]
    AuthorizerFailure,
    /// A SigV4 authorizer refused the signature (reference §7), with AWS's message.
    #[error("signature refused")]
    Signature(Box<SigFailure>),
    /// The Stage's resource policy refused the caller (ACCESS_DENIED, reference §11): the
    /// method ARN, and whether a Deny covered it.
    #[error("resource policy refused")]
    ResourcePolicy {
        /// The request's method ARN.
        arn: Box<str>,
        /// A Deny covered it (else no Allow did).
        explicit: bool,
    },
}

/// AWS's payload limit: 10 MB (reference §17).
pub const MAX_BODY_BYTES: u64 = 10_485_760;

/// What a response to an error is made of.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Cow<'static, str>,
    error_type: Option<&'static str>,
}

const JSON: &str = "application/json";

impl GatewayError {
    /// A fixed label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::UriTooLong => "uri_too_long",
            GatewayError::BadRequest(b) => b.label(),
            GatewayError::IntegrationTimeout => "integration_timeout",
            GatewayError::IntegrationFailure => "integration_failure",
            GatewayError::UndefinedStageVariable => "undefined_stage_variable",
            GatewayError::NotReady => "not_ready",
            GatewayError::NoEndpoints => "no_endpoints",
            GatewayError::Throttled => "throttled",
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::QuotaExceeded => "quota_exceeded",
            GatewayError::Unauthorized(_) => "unauthorized",
            GatewayError::AuthorizerDenied | GatewayError::AuthorizerNotCovered => "access_denied",
            GatewayError::AuthorizerFailure => "authorizer_failure",
            GatewayError::Signature(_) => "invalid_signature",
            GatewayError::ResourcePolicy { .. } => "resource_policy",
        }
    }

    /// Answered by the front end, before a Stage is known: no request id, no `x-amzn-*`
    /// headers (reference §3a, the 10 MB 413).
    pub fn is_front_end(&self) -> bool {
        matches!(
            self,
            GatewayError::PayloadTooLarge
                | GatewayError::HeadersTooLarge
                | GatewayError::UriTooLong
                | GatewayError::BadRequest(_)
        )
    }

    /// AWS's gateway response type, for `$context.error.responseType`.
    pub fn response_type(&self, flavour: Flavour) -> &'static str {
        match self {
            GatewayError::NoRoute => match flavour {
                Flavour::Rest => "MISSING_AUTHENTICATION_TOKEN",
                Flavour::Http => "RESOURCE_NOT_FOUND",
            },
            GatewayError::PayloadTooLarge => "REQUEST_TOO_LARGE",
            GatewayError::HeadersTooLarge | GatewayError::UriTooLong => "REQUEST_TOO_LARGE",
            GatewayError::BadRequest(_) => "BAD_REQUEST",
            GatewayError::IntegrationTimeout => "INTEGRATION_TIMEOUT",
            GatewayError::IntegrationFailure | GatewayError::UndefinedStageVariable => {
                "INTEGRATION_FAILURE"
            }
            GatewayError::NotReady | GatewayError::NoEndpoints => "DEFAULT_5XX",
            GatewayError::Throttled => "THROTTLED",
            GatewayError::InvalidApiKey => "INVALID_API_KEY",
            GatewayError::QuotaExceeded => "QUOTA_EXCEEDED",
            GatewayError::Unauthorized(_) => "UNAUTHORIZED",
            GatewayError::AuthorizerDenied | GatewayError::AuthorizerNotCovered => "ACCESS_DENIED",
            GatewayError::AuthorizerFailure => "AUTHORIZER_CONFIGURATION_ERROR",
            GatewayError::Signature(f) => match **f {
                SigFailure::Missing => "MISSING_AUTHENTICATION_TOKEN",
                SigFailure::Incomplete(_) | SigFailure::Invalid(_) => "INVALID_SIGNATURE",
                SigFailure::UnknownKey => "ACCESS_DENIED",
            },
            GatewayError::ResourcePolicy { .. } => "ACCESS_DENIED",
        }
    }

    /// `$context.error.message`: the message without its JSON quoting.
    pub fn message(&self, flavour: Flavour) -> &'static str {
        if let GatewayError::Signature(f) = self {
            // Never the header or canonical request: they carry the client's token.
            return f.log_message();
        }
        if let GatewayError::ResourcePolicy { explicit, .. } = self {
            return match explicit {
                true => "User: anonymous is not authorized to perform: execute-api:Invoke with an explicit deny",
                false => "User: anonymous is not authorized to perform: execute-api:Invoke",
            };
        }
        let Cow::Borrowed(body) = self.answer(flavour).body else {
            return "";
        };
        body.split_once(':')
            .map(|(_, v)| v.trim().trim_end_matches('}').trim().trim_matches('"'))
            .filter(|_| body.starts_with('{'))
            .unwrap_or(body)
    }

    fn answer(&self, flavour: Flavour) -> Answer {
        let json = |status, body: &'static str, error_type| Answer {
            status,
            content_type: JSON,
            body: Cow::Borrowed(body),
            error_type,
        };
        let rest = flavour == Flavour::Rest;
        match self {
            // §3a R1: REST answers an unknown path or method as a missing token.
            GatewayError::NoRoute if rest => json(
                StatusCode::FORBIDDEN,
                r#"{"message":"Missing Authentication Token"}"#,
                Some("MissingAuthenticationTokenException"),
            ),
            GatewayError::NoRoute => {
                json(StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#, None)
            }
            // §3a T2: plain text, 44 bytes, no x-amzn-* headers at all.
            GatewayError::PayloadTooLarge => Answer {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                content_type: "text; charset=utf-8",
                body: Cow::Borrowed("HTTP content length exceeded 10485760 bytes."),
                error_type: None,
            },
            // Over-limit answers are unrecorded (§3a): ours, in the front end's JSON form.
            GatewayError::HeadersTooLarge => json(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                r#"{"message":"Request Header Fields Too Large"}"#,
                None,
            ),
            GatewayError::UriTooLong => json(
                StatusCode::URI_TOO_LONG,
                r#"{"message":"Request-URI Too Long"}"#,
                None,
            ),
            GatewayError::BadRequest(_) => json(
                StatusCode::BAD_REQUEST,
                r#"{"message":"Bad Request"}"#,
                None,
            ),
            // §3a T4: 504, 41 bytes with a space.
            GatewayError::IntegrationTimeout if rest => json(
                StatusCode::GATEWAY_TIMEOUT,
                r#"{"message": "Endpoint request timed out"}"#,
                Some("InternalServerErrorException"),
            ),
            // §3 (third party): HTTP APIs answer an integration timeout with 503.
            GatewayError::IntegrationTimeout => json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"message":"Service Unavailable"}"#,
                None,
            ),
            // §3a R4, R7: every recorded failure is 500, 36 bytes with a space.
            GatewayError::IntegrationFailure | GatewayError::UndefinedStageVariable if rest => {
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"message": "Internal server error"}"#,
                    Some("InternalServerErrorException"),
                )
            }
            // §3 HTTP APIs: DG:http-api-troubleshooting-lambda.
            GatewayError::IntegrationFailure | GatewayError::UndefinedStageVariable => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Internal Server Error"}"#,
                None,
            ),
            GatewayError::NotReady | GatewayError::NoEndpoints => json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"message":"Service Unavailable"}"#,
                None,
            ),
            // §1, §3a T1: 31 bytes, compact; no Retry-After.
            GatewayError::Throttled if rest => json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"message":"Too Many Requests"}"#,
                Some("TooManyRequestsException"),
            ),
            // HTTP APIs send the same body and, as for their other errors here, no
            // x-amzn-ErrorType (DG:http-api-throttling; unrecorded).
            GatewayError::Throttled => json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"message":"Too Many Requests"}"#,
                None,
            ),
            // §2: compact, like THROTTLED's (LocalStack's INVALID_API_KEY; unrecorded raw).
            GatewayError::InvalidApiKey if rest => json(
                StatusCode::FORBIDDEN,
                r#"{"message":"Forbidden"}"#,
                Some("ForbiddenException"),
            ),
            // HTTP APIs have no API keys on AWS: ours, in their error form (no ErrorType).
            GatewayError::InvalidApiKey => {
                json(StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#, None)
            }
            // §2: its own type and body, never THROTTLED's.
            GatewayError::QuotaExceeded if rest => json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"message":"Limit Exceeded"}"#,
                Some("LimitExceededException"),
            ),
            GatewayError::QuotaExceeded => json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"message":"Limit Exceeded"}"#,
                None,
            ),
            // §3: UNAUTHORIZED, compact like the other 4XX bodies.
            GatewayError::Unauthorized(_) if rest => json(
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Unauthorized"}"#,
                Some("UnauthorizedException"),
            ),
            // §3a, DG:http-api-troubleshooting-jwt.
            GatewayError::Unauthorized(_) => json(
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Unauthorized"}"#,
                None,
            ),
            // §3 ACCESS_DENIED: capital-M `Message`, as AWS writes it.
            GatewayError::AuthorizerDenied if rest => json(
                StatusCode::FORBIDDEN,
                r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#,
                Some("AccessDeniedException"),
            ),
            GatewayError::AuthorizerNotCovered if rest => json(
                StatusCode::FORBIDDEN,
                r#"{"Message":"User is not authorized to access this resource"}"#,
                Some("AccessDeniedException"),
            ),
            // §5 HTTP APIs: `isAuthorized: false` or a Deny is 403 Forbidden.
            GatewayError::AuthorizerDenied | GatewayError::AuthorizerNotCovered => {
                json(StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#, None)
            }
            // §3 AUTHORIZER_CONFIGURATION_ERROR: `{"message": null}` on REST.
            GatewayError::AuthorizerFailure if rest => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message": null}"#,
                Some("AuthorizerConfigurationException"),
            ),
            // §5 HTTP APIs: an invalid reply or invoke failure is 500.
            GatewayError::AuthorizerFailure => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Internal Server Error"}"#,
                None,
            ),
            // §7: every signature failure is 403, with AWS's message and type.
            GatewayError::Signature(f) => {
                let (message, error_type): (Cow<'static, str>, _) = match &**f {
                    SigFailure::Missing => (
                        Cow::Borrowed("Missing Authentication Token"),
                        "MissingAuthenticationTokenException",
                    ),
                    SigFailure::Incomplete(m) => {
                        (Cow::Owned(m.to_string()), "IncompleteSignatureException")
                    }
                    SigFailure::Invalid(m) => {
                        (Cow::Owned(m.to_string()), "InvalidSignatureException")
                    }
                    SigFailure::UnknownKey => (
                        Cow::Borrowed("The security token included in the request is invalid."),
                        "UnrecognizedClientException",
                    ),
                };
                Answer {
                    status: StatusCode::FORBIDDEN,
                    content_type: JSON,
                    body: Cow::Owned(serde_json::json!({ "message": message }).to_string()),
                    error_type: rest.then_some(error_type),
                }
            }
            // §3 ACCESS_DENIED, §11: the resource-policy body, capital-M `Message` (GH:ASFHyP3/
            // hyp3#2283's exact body for the anonymous caller).
            GatewayError::ResourcePolicy { arn, explicit } if rest => Answer {
                status: StatusCode::FORBIDDEN,
                content_type: JSON,
                body: Cow::Owned(
                    serde_json::json!({
                        "Message": format!(
                            "User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn}{}",
                            if *explicit { " with an explicit deny" } else { "" }
                        )
                    })
                    .to_string(),
                ),
                error_type: Some("AccessDeniedException"),
            },
            // HTTP APIs have no resource policies on AWS: ours, their 403.
            GatewayError::ResourcePolicy { .. } => {
                json(StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#, None)
            }
        }
    }

    /// The one place a response to an error is built: status, body and headers as AWS sends
    /// them for `flavour`. Request-id headers are added by the pipeline, as on every response.
    pub fn response(&self, flavour: Flavour) -> Response<Full<Bytes>> {
        let a = self.answer(flavour);
        let len = a.body.len();
        let mut resp = Response::new(Full::new(match a.body {
            Cow::Borrowed(b) => Bytes::from_static(b.as_bytes()),
            Cow::Owned(b) => Bytes::from(b),
        }));
        *resp.status_mut() = a.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(t) = a.error_type {
            h.insert(ERROR_TYPE, HeaderValue::from_static(t));
        }
        if let GatewayError::Unauthorized(Some(failure)) = self {
            // §3a: `Bearer scope="" error="invalid_token" error_description="…"`; with no
            // token at all, RFC 6750 §3.1's bare challenge (no error code).
            let challenge = match failure {
                JwtFailure::Missing => HeaderValue::from_static("Bearer"),
                f => HeaderValue::from_str(&format!(
                    r#"Bearer scope="" error="invalid_token" error_description="{}""#,
                    f.description()
                ))
                .unwrap_or(HeaderValue::from_static("Bearer")),
            };
            h.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if matches!(self, GatewayError::BadRequest(_)) {
            // The framing cannot be trusted: nothing after this request is read.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(e: GatewayError, f: Flavour) -> (u16, String, Option<String>) {
        let r = e.response(f);
        let status = r.status().as_u16();
        let et = r
            .headers()
            .get(ERROR_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(b.to_vec()).unwrap(), et)
    }

    /// reference §3a: the HTTP API column.
    #[tokio::test]
    async fn aws_section3a_http_api_bodies_byte_for_byte() {
        let http = Flavour::Http;
        assert_eq!(
            body(GatewayError::NoRoute, http).await,
            (404, r#"{"message":"Not Found"}"#.into(), None)
        );
        assert_eq!(
            body(GatewayError::IntegrationFailure, http).await,
            (500, r#"{"message":"Internal Server Error"}"#.into(), None)
        );
        assert_eq!(
            body(GatewayError::IntegrationTimeout, http).await,
            (503, r#"{"message":"Service Unavailable"}"#.into(), None)
        );
        assert_eq!(
            body(GatewayError::NoEndpoints, http).await,
            (503, r#"{"message":"Service Unavailable"}"#.into(), None)
        );
    }

    /// reference §3a: the REST API column (R1, R4, R7, T4).
    #[tokio::test]
    async fn aws_section3a_rest_api_bodies_byte_for_byte() {
        let rest = Flavour::Rest;
        assert_eq!(
            body(GatewayError::NoRoute, rest).await,
            (
                403,
                r#"{"message":"Missing Authentication Token"}"#.into(),
                Some("MissingAuthenticationTokenException".into())
            )
        );
        let (s, b, t) = body(GatewayError::IntegrationFailure, rest).await;
        assert_eq!(
            (s, b.len(), t.as_deref()),
            (500, 36, Some("InternalServerErrorException"))
        );
        assert_eq!(
            body(GatewayError::UndefinedStageVariable, rest).await,
            body(GatewayError::IntegrationFailure, rest).await
        );
        let (s, b, _) = body(GatewayError::IntegrationTimeout, rest).await;
        assert_eq!(
            (s, b.as_str(), b.len()),
            (504, r#"{"message": "Endpoint request timed out"}"#, 41)
        );
    }

    /// reference §3 ACCESS_DENIED and AUTHORIZER_CONFIGURATION_ERROR, §5 (function
    /// authorizers), both flavours.
    #[tokio::test]
    async fn aws_section5_function_authorizer_answers_byte_for_byte() {
        let (rest, http) = (Flavour::Rest, Flavour::Http);
        assert_eq!(
            body(GatewayError::AuthorizerDenied, rest).await,
            (
                403,
                r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#.into(),
                Some("AccessDeniedException".into())
            )
        );
        assert_eq!(
            body(GatewayError::AuthorizerNotCovered, rest).await,
            (
                403,
                r#"{"Message":"User is not authorized to access this resource"}"#.into(),
                Some("AccessDeniedException".into())
            )
        );
        assert_eq!(
            body(GatewayError::AuthorizerFailure, rest).await,
            (
                500,
                r#"{"message": null}"#.into(),
                Some("AuthorizerConfigurationException".into())
            )
        );
        for e in [
            GatewayError::AuthorizerDenied,
            GatewayError::AuthorizerNotCovered,
        ] {
            assert_eq!(
                body(e, http).await,
                (403, r#"{"message":"Forbidden"}"#.into(), None)
            );
        }
        assert_eq!(
            body(GatewayError::AuthorizerFailure, http).await,
            (500, r#"{"message":"Internal Server Error"}"#.into(), None)
        );
        // A function's 401 carries no JWT challenge.
        let r = GatewayError::Unauthorized(None).response(rest);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            GatewayError::AuthorizerFailure.response_type(rest),
            "AUTHORIZER_CONFIGURATION_ERROR"
        );
    }

    /// reference §3a T2: the same plain-text 413 for both flavours, with no x-amzn-* header.
    #[tokio::test]
    async fn aws_section3a_t2_payload_too_large_is_plain_text() {
        for f in [Flavour::Http, Flavour::Rest] {
            let r = GatewayError::PayloadTooLarge.response(f);
            assert_eq!(r.headers()["content-type"], "text; charset=utf-8");
            assert!(r.headers().keys().all(|k| !k.as_str().starts_with("x-amz")));
            assert_eq!(
                body(GatewayError::PayloadTooLarge, f).await,
                (
                    413,
                    "HTTP content length exceeded 10485760 bytes.".into(),
                    None
                )
            );
        }
    }

    #[test]
    fn messages_are_the_bodies_without_quoting() {
        assert_eq!(
            GatewayError::IntegrationTimeout.message(Flavour::Rest),
            "Endpoint request timed out"
        );
        assert_eq!(GatewayError::NoRoute.message(Flavour::Http), "Not Found");
        assert_eq!(
            GatewayError::PayloadTooLarge.message(Flavour::Http),
            "HTTP content length exceeded 10485760 bytes."
        );
    }

    #[test]
    fn bad_framing_closes_the_connection() {
        let r = GatewayError::BadRequest(BadRequest::MissingHost).response(Flavour::Http);
        assert_eq!(r.status().as_u16(), 400);
        assert_eq!(r.headers()["connection"], "close");
    }
}
