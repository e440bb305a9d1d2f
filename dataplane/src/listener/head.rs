//! Sees the raw request heads hyper parses, for the one check hyper makes impossible later:
//! a request with both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1, a request
//! smuggling vector). hyper lets `Transfer-Encoding` win and drops `Content-Length` from the
//! header map, so the pipeline would never know. The connection's stream is wrapped to keep
//! the last bytes read; only a request that carries `Transfer-Encoding` has its head looked
//! up there, and only a connection that has sent `transfer-encoding` shares its bytes under a
//! lock, so the ordinary request pays one short copy per read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of the stream kept: more than AWS's 10,240 bytes of headers plus a request line.
const KEPT: usize = 24 * 1024;

/// The last bytes read on one connection, shared with the service that checks heads: at least
/// the last [`KEPT`], at most twice that.
///
/// Only a connection that has sent the bytes `transfer-encoding` fills it (see [`Recorded`]), so
/// the ordinary connection never takes its lock.
#[derive(Default, Clone)]
pub struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    fn record(&self, bytes: &[u8]) {
        if let Ok(mut t) = self.0.lock() {
            append_bounded(&mut t, bytes);
        }
    }

    /// Whether the head of the request `method target` read last carries a
    /// `Content-Length` line.
    pub fn head_has_content_length(&self, method: &str, target: &str) -> bool {
        let Ok(t) = self.0.lock() else {
            return false;
        };
        let hay = t.as_slice();
        let line = format!("{method} {target} HTTP/1.");
        let Some(start) = rfind(hay, line.as_bytes()) else {
            return false;
        };
        let head = hay.get(start..).unwrap_or_default();
        let end = find(head, b"\r\n\r\n").unwrap_or(head.len());
        head.get(..end)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .skip(1)
            .any(is_content_length_line)
    }
}

fn is_content_length_line(line: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length";
    let Some(name) = line.get(..NAME.len()) else {
        return false;
    };
    if !name.eq_ignore_ascii_case(NAME) {
        return false;
    }
    // hyper refuses whitespace before the colon, but a lenient hop in front might not.
    line.get(NAME.len()..)
        .unwrap_or_default()
        .iter()
        .find(|&&b| b != b' ' && b != b'\t')
        == Some(&b':')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Appends `bytes` to `buf`, keeping at least the last [`KEPT`] bytes and at most twice that:
/// one `memcpy` per read, and the front dropped once per [`KEPT`] bytes rather than on every
/// read (a `VecDeque` trimmed to exactly [`KEPT`] on every read showed in the profile).
fn append_bounded(buf: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = bytes
        .get(bytes.len().saturating_sub(KEPT)..)
        .unwrap_or(bytes);
    if buf.len() + bytes.len() > 2 * KEPT {
        let excess = (buf.len() + bytes.len())
            .saturating_sub(KEPT)
            .min(buf.len());
        buf.drain(..excess);
    }
    buf.extend_from_slice(bytes);
}

const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";

/// Whether a line of `hay` after its first `\n` starts with `transfer-encoding` in any letter
/// case: a header name starts a line, so only the bytes after each `\n` are compared (found with
/// `memchr`; comparing at every byte cost more than the rest of the check).
fn has_transfer_encoding(hay: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', hay).any(|i| {
        hay.get(i + 1..i + 1 + TRANSFER_ENCODING.len())
            .is_some_and(|name| name.eq_ignore_ascii_case(TRANSFER_ENCODING))
    })
}

/// A stream that keeps what is read from it, and shares it through a [`Tail`] once the bytes
/// `transfer-encoding` have gone by.
///
/// The bytes are first kept in a buffer of its own, which needs no lock: the check only
/// matters for a request with `Transfer-Encoding`, and such a head has those bytes in it. The
/// first read that brings them at the start of a line (looked for across the boundary with
/// the read before) copies
/// what is kept into the shared tail; from then on every read goes there too. The profile
/// showed the lock taken on every read of every connection (0.8 % of the dataplane's samples).
pub struct Recorded<S> {
    inner: S,
    tail: Tail,
    own: Vec<u8>,
    sharing: bool,
}

impl<S> Recorded<S> {
    /// Wraps `inner`; `tail` sees its reads once a `transfer-encoding` has been read.
    pub fn new(inner: S, tail: Tail) -> Self {
        Recorded {
            inner,
            tail,
            own: Vec::new(),
            sharing: false,
        }
    }

    fn keep(&mut self, new: &[u8]) {
        if self.sharing {
            self.tail.record(new);
            return;
        }
        append_bounded(&mut self.own, new);
        let fresh = new.len().min(KEPT);
        // From the `\n` that could start a name ending in the new bytes.
        let from = self
            .own
            .len()
            .saturating_sub(fresh + TRANSFER_ENCODING.len() + 1);
        if has_transfer_encoding(self.own.get(from..).unwrap_or_default()) {
            self.sharing = true;
            self.tail.record(&self.own);
            self.own = Vec::new();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if let Some(new) = buf.filled().get(before..) {
                if !new.is_empty() {
                    this.keep(new);
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_content_length_of_the_last_matching_head() {
        let t = Tail::default();
        t.record(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
        t.record(
            b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\ncontent-length : 5\r\n\r\n",
        );
        assert!(t.head_has_content_length("POST", "/b"));
        let t = Tail::default();
        t.record(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
        t.record(
            b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nContent-Length: 9\r\n",
        );
        assert!(!t.head_has_content_length("POST", "/b"));
    }

    #[test]
    fn keeps_the_last_bytes_and_no_more_than_twice_that() {
        let t = Tail::default();
        t.record(&vec![b'x'; KEPT * 2]);
        assert_eq!(t.0.lock().unwrap().len(), KEPT);
        for _ in 0..(3 * KEPT / 100) {
            t.record(&[b'y'; 100]);
            let len = t.0.lock().unwrap().len();
            assert!((KEPT..=2 * KEPT).contains(&len), "{len}");
        }
        // A head split over reads, across a compaction, is still found whole.
        t.record(&vec![b'z'; 2 * KEPT - 10]);
        t.record(b"GET / HTTP/1.1\r\nHost: h\r\n");
        t.record(b"Content-Length: 1\r\n\r\n");
        assert!(t.head_has_content_length("GET", "/"));
        assert!(!t.head_has_content_length("GET", "/other"));
    }

    #[test]
    fn a_connection_shares_its_bytes_once_transfer_encoding_goes_by() {
        let tail = Tail::default();
        let mut r = Recorded::new((), tail.clone());
        r.keep(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
        assert!(!r.sharing && tail.0.lock().unwrap().is_empty());
        // The name split over two reads, the Content-Length in the read before it.
        r.keep(b"POST /b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Enc");
        assert!(!r.sharing);
        r.keep(b"oding: chunked\r\n");
        assert!(r.sharing && r.own.is_empty());
        r.keep(b"\r\n");
        assert!(tail.head_has_content_length("POST", "/b"));
        assert!(!tail.head_has_content_length("POST", "/c"));
    }
}
