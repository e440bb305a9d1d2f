//! Sees the raw request heads hyper parses, for the one check hyper makes impossible later:
//! a request with both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1, a request
//! smuggling vector). hyper lets `Transfer-Encoding` win and drops `Content-Length` from the
//! header map, so the pipeline would never know. The connection's stream is wrapped to keep
//! the last bytes read; only a request that carries `Transfer-Encoding` has its head looked
//! up there, so the ordinary request pays one short copy per read.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of the stream kept: more than AWS's 10,240 bytes of headers plus a request line.
const KEPT: usize = 24 * 1024;

/// The last bytes read on one connection.
#[derive(Default, Clone)]
pub struct Tail(Arc<Mutex<VecDeque<u8>>>);

impl Tail {
    fn record(&self, bytes: &[u8]) {
        let Ok(mut t) = self.0.lock() else {
            return;
        };
        let bytes = bytes
            .get(bytes.len().saturating_sub(KEPT)..)
            .unwrap_or(bytes);
        let excess = (t.len() + bytes.len()).saturating_sub(KEPT);
        let excess = excess.min(t.len());
        t.drain(..excess);
        t.extend(bytes);
    }

    /// Whether the head of the request `method target` read last carries a
    /// `Content-Length` line.
    pub fn head_has_content_length(&self, method: &str, target: &str) -> bool {
        let Ok(mut t) = self.0.lock() else {
            return false;
        };
        let hay = t.make_contiguous();
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

/// A stream that records what is read from it into a [`Tail`].
pub struct Recorded<S> {
    inner: S,
    tail: Tail,
}

impl<S> Recorded<S> {
    /// Wraps `inner`; `tail` sees its reads.
    pub fn new(inner: S, tail: Tail) -> Self {
        Recorded { inner, tail }
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
                    this.tail.record(new);
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
    fn keeps_only_the_last_bytes() {
        let t = Tail::default();
        t.record(&vec![b'x'; KEPT * 2]);
        t.record(b"GET / HTTP/1.1\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(t.0.lock().unwrap().len(), KEPT);
        assert!(t.head_has_content_length("GET", "/"));
    }
}
