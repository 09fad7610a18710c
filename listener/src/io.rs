//! hyper answers some requests itself before any service sees them: a malformed request line
//! or header (400), a URI over its limit (414), a head over its buffer (431). Those answers
//! have an empty body, which no client of ClawButler can read (OpenAI and Anthropic SDKs
//! expect error JSON, the control API promises problem+json). [`ErrorPageIo`] sits between
//! the socket and hyper and rewrites exactly those answers on their way out: a response head
//! with one of those statuses, `content-length: 0` and nothing after it. The listener's
//! [`ErrorPage`] supplies the body, given the first bytes of the request line (enough to tell
//! the data path's dialect from its path).
//!
//! Invariants: responses made by a service always carry a body (every error of both
//! listeners is JSON), so their heads never match; and only the first write after a request
//! began to arrive is looked at, so a response body (even an upstream's, crafted to look like
//! such a head) passes through byte for byte.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The body of one of hyper's early answers: `(status, first bytes of the request line)` →
/// `(content type, body)`.
pub type ErrorPage = fn(StatusCode, &[u8]) -> (&'static str, String);

/// How many bytes of a request line are kept for [`ErrorPage`].
const LINE_MAX: usize = 2048;

pin_project_lite::pin_project! {
    /// See the module docs.
    pub struct ErrorPageIo<T> {
        #[pin]
        inner: T,
        page: ErrorPage,
        // The start of the current request's first line.
        line: Vec<u8>,
        line_done: bool,
        // The next byte read starts a new request (set whenever a response is written).
        fresh: bool,
        // No write yet since the current request began to arrive: only such a write can be
        // one of hyper's early answers.
        first_write: bool,
        // A rewritten answer still being written, and how much of it is out.
        pending: Vec<u8>,
        sent: usize,
    }
}

impl<T> ErrorPageIo<T> {
    /// Wrap a connection.
    pub fn new(inner: T, page: ErrorPage) -> ErrorPageIo<T> {
        ErrorPageIo {
            inner,
            page,
            line: Vec::new(),
            line_done: false,
            fresh: true,
            first_write: false,
            pending: Vec::new(),
            sent: 0,
        }
    }
}

/// The status of a bodiless response head hyper made itself, if `buf` is exactly one.
fn early_answer(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ").or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?.parse::<u16>().ok()?;
    if !matches!(code, 400 | 414 | 431) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if end != buf.len() {
        return None;
    }
    let head = buf[..end].to_ascii_lowercase();
    head.windows(21).any(|w| w == b"\r\ncontent-length: 0\r\n").then_some(StatusCode::from_u16(code).ok()?)
}

/// The whole replacement response.
fn rewrite(status: StatusCode, page: ErrorPage, line: &[u8]) -> Vec<u8> {
    let (ctype, body) = page(status, line);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

impl<T: AsyncWrite> ErrorPageIo<T> {
    /// Write out what is left of a rewritten answer.
    fn drain(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        while *this.sent < this.pending.len() {
            let n = match this.inner.as_mut().poll_write(cx, &this.pending[*this.sent..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *this.sent += n;
        }
        this.pending.clear();
        *this.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// If `buf` is one of hyper's early answers, queue its rewrite and report it written.
    fn intercept(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<std::io::Result<usize>>> {
        if !self.first_write {
            return None;
        }
        let status = early_answer(buf)?;
        let this = self.as_mut().project();
        *this.first_write = false;
        *this.pending = rewrite(status, *this.page, this.line);
        *this.sent = 0;
        *this.fresh = true;
        Some(match self.drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // The rest goes out on the next write or flush, before anything else.
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

impl<T: AsyncRead> AsyncRead for ErrorPageIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let new = &buf.filled()[before..];
            if !new.is_empty() && *this.fresh {
                this.line.clear();
                *this.line_done = false;
                *this.fresh = false;
                *this.first_write = true;
            }
            if !*this.line_done {
                for &b in new {
                    if b == b'\n' || this.line.len() >= LINE_MAX {
                        *this.line_done = true;
                        break;
                    }
                    this.line.push(b);
                }
            }
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for ErrorPageIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if !self.pending.is_empty() {
            std::task::ready!(self.as_mut().drain(cx))?;
        }
        if let Some(r) = self.as_mut().intercept(cx, buf) {
            return r;
        }
        let this = self.project();
        *this.fresh = true;
        *this.first_write = false;
        // An answer went out: the client's next request may follow within the window.
        crate::spin::keep_awake(crate::spin::Awaiting::Client);
        this.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if !self.pending.is_empty() {
            std::task::ready!(self.as_mut().drain(cx))?;
        }
        // hyper writes a bodiless head as one slice.
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(first), None) = (nonempty.next(), nonempty.next()) {
            if let Some(r) = self.as_mut().intercept(cx, first) {
                return r;
            }
        }
        let this = self.project();
        *this.fresh = true;
        *this.first_write = false;
        crate::spin::keep_awake(crate::spin::Awaiting::Client);
        this.inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            std::task::ready!(self.as_mut().drain(cx))?;
        }
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            std::task::ready!(self.as_mut().drain(cx))?;
        }
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(status: StatusCode, line: &[u8]) -> (&'static str, String) {
        ("application/json", format!("{{\"status\":{},\"line\":{:?}}}", status.as_u16(), String::from_utf8_lossy(line)))
    }

    #[test]
    fn only_hypers_bodiless_early_answers_match() {
        let early = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(early_answer(early), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let early = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(early_answer(early), Some(StatusCode::BAD_REQUEST));
        // A service's own 400 has a body.
        assert_eq!(early_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n"), None);
        assert_eq!(early_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}"), None);
        assert_eq!(early_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(early_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn a_response_body_that_looks_like_an_early_answer_passes_untouched() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let crafted = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        /// A body whose one chunk comes later, so it is written on its own, after the head.
        struct Later(tokio::sync::mpsc::Receiver<bytes::Bytes>);
        impl http_body::Body for Later {
            type Data = bytes::Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
                self.0.poll_recv(cx).map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
            }
        }
        let (client, server) = tokio::io::duplex(1 << 16);
        let io = hyper_util::rt::TokioIo::new(ErrorPageIo::new(server, page));
        let svc = hyper::service::service_fn(move |_req| async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let _ = tx.send(bytes::Bytes::from_static(crafted.as_bytes())).await;
            });
            let mut res = http::Response::new(Later(rx));
            res.headers_mut().insert(http::header::CONTENT_LENGTH, crafted.len().into());
            Ok::<_, std::convert::Infallible>(res)
        });
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
        let (mut r, mut w) = tokio::io::split(client);
        w.write_all(b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with(crafted), "{text}");
    }

    #[tokio::test]
    async fn an_oversized_head_gets_the_listeners_body_over_a_real_hyper_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 20);
        let io = hyper_util::rt::TokioIo::new(ErrorPageIo::new(server, page));
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        });
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
        let (mut r, mut w) = tokio::io::split(client);
        let huge = "x".repeat(500 * 1024);
        w.write_all(format!("GET /a/m/anth/v1/messages HTTP/1.1\r\nhost: h\r\nx-big: {huge}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("content-type: application/json"), "{text}");
        assert!(text.ends_with(r#"{"status":431,"line":"GET /a/m/anth/v1/messages HTTP/1.1\r"}"#), "{text}");
    }
}
