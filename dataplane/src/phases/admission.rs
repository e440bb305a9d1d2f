//! Admission: what the front end checks before any Stage is looked up — framing that could
//! smuggle a second request, a missing `Host`, and AWS's size limits (reference §17: 10 MB of
//! body, 10,240 bytes of headers, 10,240 bytes of URL). These answers carry no request id, as
//! AWS's front end's 413 carries none (§3a T2).

use crate::error::{BadRequest, GatewayError, MAX_BODY_BYTES};
use http::{header, Request, Version};

/// AWS's header limit: all names and values together (reference §17).
pub const MAX_HEADER_BYTES: usize = 10_240;
/// AWS's URL limit for Regional REST APIs (reference §17), applied to both flavours.
pub const MAX_URI_BYTES: usize = 10_240;

/// Set by the listener on a request whose head carried both `Content-Length` and
/// `Transfer-Encoding`: hyper keeps only the latter in the header map.
#[derive(Debug, Clone, Copy)]
pub struct ConflictingLength;

/// Refuses what must not reach routing.
pub fn admit<B>(req: &Request<B>) -> Result<(), GatewayError> {
    let h = req.headers();
    if req.extensions().get::<ConflictingLength>().is_some()
        || (h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH))
    {
        return Err(GatewayError::BadRequest(
            BadRequest::ContentLengthAndTransferEncoding,
        ));
    }
    if req.version() == Version::HTTP_11
        && req.uri().authority().is_none()
        && !h.contains_key(header::HOST)
    {
        return Err(GatewayError::BadRequest(BadRequest::MissingHost));
    }
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_BYTES {
        return Err(GatewayError::UriTooLong);
    }
    let header_bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(GatewayError::HeadersTooLarge);
    }
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(f: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Request<()> {
        f(Request::builder().uri("/prod/pets").header("host", "h"))
            .body(())
            .unwrap()
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        let r = req(|b| {
            b.header("content-length", "5")
                .header("transfer-encoding", "chunked")
        });
        assert_eq!(
            admit(&r),
            Err(GatewayError::BadRequest(
                BadRequest::ContentLengthAndTransferEncoding
            ))
        );
        let mut flagged = req(|b| b.header("transfer-encoding", "chunked"));
        assert_eq!(admit(&flagged), Ok(()));
        flagged.extensions_mut().insert(ConflictingLength);
        assert!(admit(&flagged).is_err());
    }

    #[test]
    fn http11_without_host_is_refused_http10_and_h2_are_not() {
        let no_host = |v| Request::builder().uri("/x").version(v).body(()).unwrap();
        assert_eq!(
            admit(&no_host(Version::HTTP_11)),
            Err(GatewayError::BadRequest(BadRequest::MissingHost))
        );
        assert_eq!(admit(&no_host(Version::HTTP_10)), Ok(()));
        let h2 = Request::builder()
            .uri("https://h/x")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(admit(&h2), Ok(()));
    }

    #[test]
    fn aws_section17_limits() {
        let big = "a".repeat(MAX_HEADER_BYTES);
        assert_eq!(
            admit(&req(|b| b.header("x-big", big.as_str()))),
            Err(GatewayError::HeadersTooLarge)
        );
        let fits = "a".repeat(MAX_HEADER_BYTES - 20);
        assert_eq!(admit(&req(|b| b.header("x-big", fits.as_str()))), Ok(()));
        let long = format!("/{}", "a".repeat(MAX_URI_BYTES));
        assert_eq!(
            admit(&req(|b| b.uri(long.as_str()))),
            Err(GatewayError::UriTooLong)
        );
        assert_eq!(
            admit(&req(|b| b.header("content-length", "10485761"))),
            Err(GatewayError::PayloadTooLarge)
        );
        assert_eq!(
            admit(&req(|b| b.header("content-length", "10485760"))),
            Ok(())
        );
    }
}
