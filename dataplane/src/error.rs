//! Errors the gateway itself answers, and the one function that turns them into responses.
//!
//! Status codes, bodies and `x-amzn-ErrorType` follow AWS (reference §3, "Gateway responses").
//! JSON spacing is AWS's too: integration failures use `{"message": "…"}` with a space, the
//! HTTP API not-found response has none.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// Something the gateway answers without (or instead of) the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No stage or route matches (HTTP API: `404 {"message":"Not Found"}`).
    #[error("no route")]
    NoRoute,
    /// The body is over 10 MB (reference §3 REQUEST_TOO_LARGE, §17).
    #[error("request body too large")]
    PayloadTooLarge,
    /// The integration did not answer within its timeout (INTEGRATION_TIMEOUT).
    #[error("integration timed out")]
    IntegrationTimeout,
    /// The integration could not be reached or broke off (INTEGRATION_FAILURE).
    #[error("integration failed")]
    IntegrationFailure,
    /// No snapshot has been applied yet.
    #[error("not ready")]
    NotReady,
    /// The route's Service has no ready endpoint.
    #[error("no ready endpoints")]
    NoEndpoints,
}

/// AWS's payload limit: 10 MB (reference §17).
pub const MAX_BODY_BYTES: u64 = 10_485_760;

impl GatewayError {
    /// A fixed label for metrics and logs.
    pub fn metric_label(self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::IntegrationTimeout => "integration_timeout",
            GatewayError::IntegrationFailure => "integration_failure",
            GatewayError::NotReady => "not_ready",
            GatewayError::NoEndpoints => "no_endpoints",
        }
    }

    /// Status, content type, body and error type as AWS sends them.
    fn parts(self) -> (StatusCode, &'static str, &'static str, Option<&'static str>) {
        const JSON: &str = "application/json";
        match self {
            GatewayError::NoRoute => (
                StatusCode::NOT_FOUND,
                JSON,
                r#"{"message":"Not Found"}"#,
                None,
            ),
            // The 10 MB check happens before API Gateway proper and answers in plain text
            // (reference §3, REQUEST_TOO_LARGE: "HTTP content length exceeded 10485760 bytes.").
            GatewayError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "text; charset=utf-8",
                "HTTP content length exceeded 10485760 bytes.",
                Some("BadRequestException"),
            ),
            GatewayError::IntegrationTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                JSON,
                r#"{"message": "Endpoint request timed out"}"#,
                Some("InternalServerErrorException"),
            ),
            GatewayError::IntegrationFailure => (
                StatusCode::GATEWAY_TIMEOUT,
                JSON,
                r#"{"message": "Internal server error"}"#,
                Some("InternalServerErrorException"),
            ),
            GatewayError::NotReady | GatewayError::NoEndpoints => (
                StatusCode::SERVICE_UNAVAILABLE,
                JSON,
                r#"{"message":"Service Unavailable"}"#,
                None,
            ),
        }
    }

    /// The response the client sees.
    pub fn response(self) -> Response<Full<Bytes>> {
        let (status, content_type, body, error_type) = self.parts();
        let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if let Some(t) = error_type {
            h.insert("x-amzn-errortype", HeaderValue::from_static(t));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(e: GatewayError) -> (u16, String, Option<String>) {
        let r: Response<Full<Bytes>> = e.response();
        let status = r.status().as_u16();
        let et = r
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_string());
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(b.to_vec()).unwrap(), et)
    }

    /// reference §3: HTTP API no route, integration timeout/failure, 10 MB limit.
    #[tokio::test]
    async fn aws_section3_bodies_byte_for_byte() {
        assert_eq!(
            body(GatewayError::NoRoute).await,
            (404, r#"{"message":"Not Found"}"#.into(), None)
        );
        let (s, b, t) = body(GatewayError::IntegrationFailure).await;
        assert_eq!(
            (s, b.len(), t.as_deref()),
            (504, 36, Some("InternalServerErrorException"))
        );
        assert_eq!(
            body(GatewayError::IntegrationTimeout).await.1,
            r#"{"message": "Endpoint request timed out"}"#
        );
        assert_eq!(
            body(GatewayError::NoEndpoints).await,
            (503, r#"{"message":"Service Unavailable"}"#.into(), None)
        );
        assert_eq!(
            body(GatewayError::PayloadTooLarge).await.1,
            "HTTP content length exceeded 10485760 bytes."
        );
    }
}
