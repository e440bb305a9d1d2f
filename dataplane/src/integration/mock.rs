//! MOCK: a fixed response. Without a `Content-Type` of its own it is `application/json`, as
//! AWS's MOCK responses are (reference §3a R3).

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// A MOCK response.
pub struct MockResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

impl MockResponse {
    /// Compiles a snapshot MOCK.
    pub fn compile(m: &tollhouse_snapshot::Mock) -> Result<MockResponse, String> {
        let status = StatusCode::from_u16(m.status_code).map_err(|e| e.to_string())?;
        let mut headers = Vec::with_capacity(m.headers.len() + 1);
        for (k, v) in &m.headers {
            let name =
                HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
            let value =
                HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
            headers.push((name, value));
        }
        if !headers.iter().any(|(k, _)| k == header::CONTENT_TYPE) {
            headers.push((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        Ok(MockResponse {
            status,
            headers,
            body: Bytes::from(m.body.clone()),
        })
    }

    /// The response.
    pub fn respond(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body.clone()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        for (k, v) in &self.headers {
            h.append(k.clone(), v.clone());
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// reference §3a R3: MOCK answers `application/json` unless told otherwise.
    #[test]
    fn aws_r3_mock_content_type_defaults_to_json() {
        let mut m = tollhouse_snapshot::Mock {
            status_code: 201,
            headers: BTreeMap::new(),
            body: "{}".into(),
        };
        let r = MockResponse::compile(&m).unwrap().respond();
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(r.headers()["content-type"], "application/json");
        m.headers.insert("Content-Type".into(), "text/plain".into());
        let r = MockResponse::compile(&m).unwrap().respond();
        assert_eq!(r.headers().get_all("content-type").iter().count(), 1);
        assert_eq!(r.headers()["content-type"], "text/plain");
    }
}
