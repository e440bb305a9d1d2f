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
    // One pass over the headers gathers what every check needs (a lookup per header name
    // cost more than the pass).
    let mut seen = Seen::default();
    for (name, value) in req.headers() {
        seen.bytes += name.as_str().len() + value.len();
        if name == header::TRANSFER_ENCODING {
            seen.transfer_encoding = true;
        } else if name == header::CONTENT_LENGTH {
            seen.content_length.get_or_insert(value);
        } else if name == header::HOST {
            seen.host = true;
        }
    }
    if req.extensions().get::<ConflictingLength>().is_some()
        || (seen.transfer_encoding && seen.content_length.is_some())
    {
        return Err(GatewayError::BadRequest(
            BadRequest::ContentLengthAndTransferEncoding,
        ));
    }
    if req.version() == Version::HTTP_11 && req.uri().authority().is_none() && !seen.host {
        return Err(GatewayError::BadRequest(BadRequest::MissingHost));
    }
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_URI_BYTES {
        return Err(GatewayError::UriTooLong);
    }
    if seen.bytes > MAX_HEADER_BYTES {
        return Err(GatewayError::HeadersTooLarge);
    }
    let declared = seen
        .content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(GatewayError::PayloadTooLarge);
    }
    Ok(())
}

/// What [`admit`] saw in the headers.
#[derive(Default)]
struct Seen<'a> {
    bytes: usize,
    transfer_encoding: bool,
    content_length: Option<&'a http::HeaderValue>,
    host: bool,
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
