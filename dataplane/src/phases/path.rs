//! Path: the request path as routing sees it. Dot segments (`.`, `..`, and their
//! percent-encoded forms such as `%2e%2e`) are resolved (RFC 3986 §5.2.4) so that a greedy
//! `{proxy+}` value can never climb out of the prefix its route maps; a segment that hides a
//! dot segment behind an encoded slash or backslash (`..%2F`, `a%5c..`), which a decoding
//! backend would resolve itself, is refused with 400. Leading duplicate slashes collapse, as
//! AWS routes `//stage/x` as `/stage/x` (reference §3a R8).

use crate::error::{BadRequest, GatewayError};
use std::borrow::Cow;

/// The path to route on: the request's own when it needs nothing resolved (no allocation).
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, GatewayError> {
    if !raw.starts_with('/') {
        return Err(GatewayError::BadRequest(BadRequest::MalformedPath));
    }
    let leading = raw.len() - raw.trim_start_matches('/').len();
    let may_have_dots = raw.contains("/.")
        || contains_encoded(raw, b'2', b'e')
        || contains_encoded(raw, b'2', b'f')
        || contains_encoded(raw, b'5', b'c')
        || raw.contains('\\');
    if leading <= 1 && !may_have_dots {
        return Ok(Cow::Borrowed(raw));
    }
    let body = &raw[leading..];
    if !may_have_dots {
        return Ok(Cow::Owned(format!("/{body}")));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match dots(seg) {
            Some(1) => trailing_slash = i == last,
            Some(2) => {
                out.pop();
                trailing_slash = i == last;
            }
            _ if hides_dot_segment(seg) => {
                return Err(GatewayError::BadRequest(BadRequest::MalformedPath));
            }
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut s = String::with_capacity(raw.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing_slash || s.is_empty() {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

/// Whether `s` holds `%` `hi` `lo` (either case of `lo`).
fn contains_encoded(s: &str, hi: u8, lo: u8) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == hi && w[2].eq_ignore_ascii_case(&lo))
}

/// Whether a segment, once percent-decoded, splits on `/` or `\\` into a dot segment.
fn hides_dot_segment(seg: &str) -> bool {
    if !(seg.contains('%') || seg.contains('\\')) {
        return false;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(seg).collect();
    decoded
        .split(|&b| b == b'/' || b == b'\\')
        .any(|part| part == b".." || part == b".")
}

/// `Some(1)` for `.`, `Some(2)` for `..`, in any mix of literal and `%2e`/`%2E`.
fn dots(seg: &str) -> Option<usize> {
    let b = seg.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b.len() >= i + 3
            && b[i] == b'%'
            && b[i + 1] == b'2'
            && (b[i + 2] == b'e' || b[i + 2] == b'E')
        {
            i += 3;
        } else {
            return None;
        }
        n += 1;
    }
    (n == 1 || n == 2).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalise(p).unwrap().into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normalise("/prod/pets/42"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalise("/prod/a.txt"), Ok(Cow::Borrowed(_))));
    }

    /// The traversal of the issue: `/files/{proxy+}` → `/storage/{proxy}` must not reach
    /// `/etc/passwd`.
    #[test]
    fn dot_segments_resolve_in_every_spelling() {
        for p in [
            "/prod/files/a/../../etc/passwd",
            "/prod/files/a/%2e%2e/%2E%2E/etc/passwd",
            "/prod/files/a/.%2e/%2e./etc/passwd",
        ] {
            assert_eq!(n(p), "/prod/etc/passwd", "{p}");
        }
        assert_eq!(n("/prod/./files/./a"), "/prod/files/a");
        assert_eq!(n("/../../x"), "/x");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/.."), "/");
        // Not dot segments: three dots, dots inside a name, an encoded slash.
        assert_eq!(n("/a/.../b"), "/a/.../b");
        assert_eq!(n("/a/..b/c"), "/a/..b/c");
        assert_eq!(n("/a/%2Fb"), "/a/%2Fb");
    }

    /// What a decoding backend would resolve itself is refused.
    #[test]
    fn dot_segments_behind_encoded_slashes_are_refused() {
        for p in [
            "/a/..%2Fetc",
            "/a/x%2F..%2F..%2Fetc",
            "/a/%2e%2e%2fb",
            "/a/..%5cb",
            "/a/b%2F.%2Fc",
        ] {
            assert_eq!(
                normalise(p),
                Err(GatewayError::BadRequest(BadRequest::MalformedPath)),
                "{p}"
            );
        }
    }

    /// reference §3a R8: `//stage/x` routes as `/stage/x`.
    #[test]
    fn aws_r8_leading_duplicate_slashes_collapse() {
        assert_eq!(n("//prod/pets"), "/prod/pets");
        assert_eq!(n("///prod//pets"), "/prod//pets");
    }

    #[test]
    fn non_origin_forms_are_refused() {
        assert!(normalise("*").is_err());
        assert!(normalise("").is_err());
    }
}
