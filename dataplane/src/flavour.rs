//! Amazon API Gateway's two HTTP flavours, `Stage.spec.apiType`: what a client sees differs by
//! flavour (reference §3a; `docs/compatibility.md`). The flavour is a Stage's; requests that
//! reach no Stage get the flavour of the stages that could have served them.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Which of AWS's APIs a Stage behaves as: the snapshot's `apiType`, HTTP by default.
pub use tollhouse_snapshot::ApiType as Flavour;

/// REST: the request id (a UUID the client may choose, §3 "Clients can override this request ID").
pub const X_AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
/// REST: the extended request id.
pub const X_AMZ_APIGW_ID: HeaderName = HeaderName::from_static("x-amz-apigw-id");
/// HTTP API: the request id (DG:http-api-troubleshooting-jwt).
pub const APIGW_REQUEST_ID: HeaderName = HeaderName::from_static("apigw-requestid");
/// The X-Ray trace header, passed on or generated.
pub const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// The ids of one request: `$context.requestId`, `$context.extendedRequestId`, and the
/// `X-Amzn-Trace-Id` a call upstream carries.
///
/// The ids made here share one buffer: one allocation per request, and every clone (onto the
/// response, the upstream request, the context) is a reference count rather than a copy. Made
/// one by one as `HeaderValue`s they were a visible part of the per-request cost
/// (docs/benchmarks.md, "the request phases").
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// `$context.requestId`.
    pub request_id: HeaderValue,
    /// `$context.extendedRequestId` when it differs from the request id (REST); HTTP APIs use
    /// one id for both, so nothing is cloned for them.
    extended: Option<HeaderValue>,
    /// The client's `X-Amzn-Trace-Id`, or a new `Root=1-<epoch hex>-<96 random bits>`.
    pub trace_id: HeaderValue,
}

/// Where each id sits in the shared buffer.
const UUID: std::ops::Range<usize> = 0..uuid::fmt::Hyphenated::LENGTH;
const SHORT: std::ops::Range<usize> = UUID.end..UUID.end + 16;
const TRACE: std::ops::Range<usize> = SHORT.end..SHORT.end + TRACE_TEMPLATE.len();
const TRACE_TEMPLATE: &[u8; 40] = b"Root=1-00000000-000000000000000000000000";

impl RequestIds {
    /// New ids as `flavour` makes them: REST a UUID v4 (or the client's `x-amzn-RequestId`)
    /// and a 16-character extended id ending in `=`; HTTP APIs use the short form for both
    /// (F1: `"requestId": "LV7fzho-PHcEJPw="`). `epoch_secs` (the request's arrival) goes
    /// into a trace id made here.
    pub fn new(flavour: Flavour, headers: &HeaderMap, epoch_secs: u64) -> RequestIds {
        let client_id = match flavour {
            Flavour::Rest => client_request_id(headers),
            Flavour::Http => None,
        };
        let client_trace = headers
            .get(&X_AMZN_TRACE_ID)
            .filter(|v| v.len() <= 256)
            .cloned();
        let mut buf = [0u8; TRACE.end];
        short_id(&mut buf[SHORT]);
        if flavour == Flavour::Rest && client_id.is_none() {
            uuid_v4(&mut buf[UUID]);
        }
        if client_trace.is_none() {
            new_trace_id(&mut buf[TRACE], epoch_secs);
        }
        let shared = Bytes::from_owner(buf);
        let value = |range: std::ops::Range<usize>| {
            HeaderValue::from_maybe_shared(shared.slice(range))
                .unwrap_or(HeaderValue::from_static("0"))
        };
        let (request_id, extended) = match (flavour, client_id) {
            (Flavour::Http, _) => (value(SHORT), None),
            (Flavour::Rest, Some(id)) => (id, Some(value(SHORT))),
            (Flavour::Rest, None) => (value(UUID), Some(value(SHORT))),
        };
        RequestIds {
            request_id,
            extended,
            trace_id: client_trace.unwrap_or_else(|| value(TRACE)),
        }
    }

    /// `$context.extendedRequestId`.
    pub fn extended(&self) -> &HeaderValue {
        self.extended.as_ref().unwrap_or(&self.request_id)
    }

    /// Writes the request-id headers of `flavour` onto a response.
    pub fn stamp(&self, flavour: Flavour, headers: &mut HeaderMap) {
        match flavour {
            Flavour::Http => {
                headers.insert(APIGW_REQUEST_ID, self.request_id.clone());
            }
            Flavour::Rest => {
                headers.insert(X_AMZN_REQUEST_ID, self.request_id.clone());
                headers.insert(X_AMZ_APIGW_ID, self.extended().clone());
            }
        }
    }
}

fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_AMZN_REQUEST_ID)?;
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())).then(|| v.clone())
}

/// A random UUID v4, hyphenated and lower-case, into `out` (36 bytes).
fn uuid_v4(out: &mut [u8]) {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.copy_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

/// 11 random bytes in URL-safe base64 with padding into `out` (16 bytes): 16 characters ending
/// in `=`, the shape of AWS's `x-amz-apigw-id` and HTTP API request ids.
fn short_id(out: &mut [u8]) {
    let bytes = fastrand::u128(..).to_le_bytes();
    let _ = base64::engine::general_purpose::URL_SAFE.encode_slice(&bytes[..11], out);
}

/// `Root=1-<epoch hex>-<96 random bits>` into `out` (40 bytes), hex written by hand:
/// `format!` with `{:024x}` of a u128 was a visible part of the per-request cost.
fn new_trace_id(out: &mut [u8], epoch_secs: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let put = |out: &mut [u8], bytes: &[u8]| {
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
    };
    out.copy_from_slice(TRACE_TEMPLATE);
    put(
        &mut out[7..15],
        &((epoch_secs & 0xffff_ffff) as u32).to_be_bytes(),
    );
    put(&mut out[16..], &fastrand::u128(..).to_be_bytes()[..12]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_request_ids_are_uuid_v4_and_client_ids_are_kept() {
        let ids = RequestIds::new(Flavour::Rest, &HeaderMap::new(), 0);
        let s = ids.request_id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(s.as_bytes()[14], b'4');
        assert!(matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{s}");
        let ext = ids.extended().to_str().unwrap();
        assert_eq!((ext.len(), ext.ends_with('=')), (16, true), "{ext}");
        assert_ne!(
            RequestIds::new(Flavour::Rest, &HeaderMap::new(), 0).request_id,
            ids.request_id
        );
        let mut h = HeaderMap::new();
        h.insert(X_AMZN_REQUEST_ID, HeaderValue::from_static("client-chosen"));
        assert_eq!(
            RequestIds::new(Flavour::Rest, &h, 0).request_id,
            "client-chosen"
        );
    }

    #[test]
    fn http_api_ids_are_short_and_not_chosen_by_the_client() {
        let mut h = HeaderMap::new();
        h.insert(X_AMZN_REQUEST_ID, HeaderValue::from_static("client-chosen"));
        let ids = RequestIds::new(Flavour::Http, &h, 0);
        assert_eq!(ids.request_id.len(), 16);
        let mut out = HeaderMap::new();
        ids.stamp(Flavour::Http, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key("apigw-requestid"));
        RequestIds::new(Flavour::Rest, &h, 0).stamp(Flavour::Rest, &mut out);
        assert!(out.contains_key("x-amzn-requestid") && out.contains_key("x-amz-apigw-id"));
    }

    fn trace_id(h: &HeaderMap, epoch: u64) -> HeaderValue {
        RequestIds::new(Flavour::Http, h, epoch).trace_id
    }

    #[test]
    fn trace_ids_are_passed_on_or_made() {
        let t = trace_id(&HeaderMap::new(), 0x5e9f0c65);
        let s = t.to_str().unwrap();
        assert!(s.starts_with("Root=1-5e9f0c65-"), "{s}");
        assert_eq!(s.len(), "Root=1-5e9f0c65-".len() + 24);
        assert!(
            s[16..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{s}"
        );
        assert_ne!(trace_id(&HeaderMap::new(), 0x5e9f0c65), t);
        assert!(trace_id(&HeaderMap::new(), 0)
            .to_str()
            .unwrap()
            .starts_with("Root=1-00000000-"));
        let mut h = HeaderMap::new();
        h.insert(X_AMZN_TRACE_ID, HeaderValue::from_static("Root=1-a-b"));
        assert_eq!(trace_id(&h, 0), "Root=1-a-b");
        let long = HeaderValue::from_str(&"x".repeat(257)).unwrap();
        h.insert(X_AMZN_TRACE_ID, long);
        assert!(trace_id(&h, 0)
            .to_str()
            .unwrap()
            .starts_with("Root=1-00000000-"));
    }

    #[test]
    fn ids_of_one_request_are_distinct_slices_of_one_buffer() {
        let ids = RequestIds::new(Flavour::Rest, &HeaderMap::new(), 1);
        let (r, e, t) = (
            ids.request_id.to_str().unwrap(),
            ids.extended().to_str().unwrap(),
            ids.trace_id.to_str().unwrap(),
        );
        assert_eq!((r.len(), e.len(), t.len()), (36, 16, 40), "{r} {e} {t}");
        assert!(t.starts_with("Root=1-00000001-"), "{t}");
        assert!(!r.contains('=') && e.ends_with('='), "{r} {e}");
    }
}
