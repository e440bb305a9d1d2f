//! Amazon API Gateway's two HTTP flavours, `Stage.spec.apiType`: what a client sees differs by
//! flavour (reference §3a; `docs/compatibility.md`). The flavour is a Stage's; requests that
//! reach no Stage get the flavour of the stages that could have served them.

use base64::Engine;
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

/// The ids of one request: `$context.requestId` and `$context.extendedRequestId`.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// `$context.requestId`.
    pub request_id: HeaderValue,
    /// `$context.extendedRequestId`.
    pub extended: HeaderValue,
}

impl RequestIds {
    /// New ids as `flavour` makes them: REST a UUID v4 (or the client's `x-amzn-RequestId`)
    /// and a 16-character extended id ending in `=`; HTTP APIs use the short form for both
    /// (F1: `"requestId": "LV7fzho-PHcEJPw="`).
    pub fn new(flavour: Flavour, headers: &HeaderMap) -> RequestIds {
        let extended = short_id();
        let request_id = match flavour {
            Flavour::Http => extended.clone(),
            Flavour::Rest => client_request_id(headers).unwrap_or_else(uuid_v4),
        };
        RequestIds {
            request_id,
            extended,
        }
    }

    /// Writes the request-id headers of `flavour` onto a response.
    pub fn stamp(&self, flavour: Flavour, headers: &mut HeaderMap) {
        match flavour {
            Flavour::Http => {
                headers.insert(APIGW_REQUEST_ID, self.request_id.clone());
            }
            Flavour::Rest => {
                headers.insert(X_AMZN_REQUEST_ID, self.request_id.clone());
                headers.insert(X_AMZ_APIGW_ID, self.extended.clone());
            }
        }
    }
}

fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_AMZN_REQUEST_ID)?;
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())).then(|| v.clone())
}

fn uuid_v4() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("0"))
}

/// 11 random bytes in URL-safe base64 with padding: 16 characters ending in `=`, the shape of
/// AWS's `x-amz-apigw-id` and HTTP API request ids.
fn short_id() -> HeaderValue {
    let bytes = fastrand::u128(..).to_le_bytes();
    let mut out = [0u8; 16];
    let n = base64::engine::general_purpose::URL_SAFE
        .encode_slice(&bytes[..11], &mut out)
        .unwrap_or(0);
    HeaderValue::from_bytes(&out[..n]).unwrap_or(HeaderValue::from_static("0"))
}

/// The client's `X-Amzn-Trace-Id`, or a new `Root=1-<epoch hex>-<96 random bits>`.
pub fn trace_id(headers: &HeaderMap, epoch_secs: u64) -> HeaderValue {
    if let Some(v) = headers.get(&X_AMZN_TRACE_ID) {
        if v.len() <= 256 {
            return v.clone();
        }
    }
    // Hex into a stack buffer: `format!` with `{:024x}` of a u128 was a visible part of the
    // per-request cost (docs/benchmarks.md).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"Root=1-00000000-000000000000000000000000";
    let put = |out: &mut [u8], mut value: u128| {
        for slot in out.iter_mut().rev() {
            *slot = HEX[(value & 0xf) as usize];
            value >>= 4;
        }
    };
    put(&mut out[7..15], u128::from(epoch_secs & 0xffff_ffff));
    put(&mut out[16..], fastrand::u128(..) >> 32);
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("Root=1-0-0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_request_ids_are_uuid_v4_and_client_ids_are_kept() {
        let ids = RequestIds::new(Flavour::Rest, &HeaderMap::new());
        let s = ids.request_id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(s.as_bytes()[14], b'4');
        assert!(matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{s}");
        let ext = ids.extended.to_str().unwrap();
        assert_eq!((ext.len(), ext.ends_with('=')), (16, true), "{ext}");
        assert_ne!(
            RequestIds::new(Flavour::Rest, &HeaderMap::new()).request_id,
            ids.request_id
        );
        let mut h = HeaderMap::new();
        h.insert(X_AMZN_REQUEST_ID, HeaderValue::from_static("client-chosen"));
        assert_eq!(
            RequestIds::new(Flavour::Rest, &h).request_id,
            "client-chosen"
        );
    }

    #[test]
    fn http_api_ids_are_short_and_not_chosen_by_the_client() {
        let mut h = HeaderMap::new();
        h.insert(X_AMZN_REQUEST_ID, HeaderValue::from_static("client-chosen"));
        let ids = RequestIds::new(Flavour::Http, &h);
        assert_eq!(ids.request_id.len(), 16);
        let mut out = HeaderMap::new();
        ids.stamp(Flavour::Http, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key("apigw-requestid"));
        RequestIds::new(Flavour::Rest, &h).stamp(Flavour::Rest, &mut out);
        assert!(out.contains_key("x-amzn-requestid") && out.contains_key("x-amz-apigw-id"));
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
    }
}
