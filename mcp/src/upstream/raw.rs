//! One JSON-RPC message posted to a Streamable HTTP upstream as bytes, its answer read as
//! bytes: the direct call path's wire (`direct.rs`). rmcp's client takes and returns typed
//! messages, so a call through it is serialized from JSON into rmcp's types and back
//! (several untagged enums tried in turn), costing about as much as the HTTP exchange itself
//! on a fast upstream. It posts with hyper's pooled client (same TLS settings as rmcp's
//! reqwest client, `connect.rs`) rather than through reqwest's layers. The rules on the
//! answer are rmcp's:
//!
//! - 202 or 204: accepted, no answer on this request;
//! - 404 on a request naming a session: the session expired (nothing ran);
//! - any other non-2xx: its JSON-RPC error when the body is one (read up to
//!   [`ERROR_BODY_MAX`]), else the status and the start of the body;
//! - `application/json`: the body, read up to the configured `max_result_bytes`;
//! - `text/event-stream`: the events, each bounded by the same limit while it is read (a
//!   server cannot make the sidecar buffer an endless event).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;

/// The direct path's pooled client.
pub(crate) type RawClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

use super::wire::Posting;

/// Most bytes of a non-2xx answer read to find its JSON-RPC error.
pub(crate) const ERROR_BODY_MAX: usize = 64 * 1024;

/// How an upstream answered a posted message.
pub(crate) enum Answer {
    /// 202/204: nothing comes back on this request.
    Accepted,
    /// 404 for the session: it expired before the message ran.
    Expired,
    /// One JSON message (a 2xx body, or a non-2xx body that is a JSON-RPC error).
    Json(Bytes),
    /// An event stream.
    Sse(BoxedSseResponse),
}

/// Why a post failed (its text goes into the call's result and audit record).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error("{0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("{0}")]
    Read(#[from] hyper::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the answer is larger than max_result_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("unexpected content type {0:?} in the answer")]
    ContentType(String),
}

/// Post `body` (one JSON-RPC message) on the upstream session of `posting`.
pub(crate) async fn post(
    client: &RawClient,
    uri: &str,
    posting: &Posting,
    body: Vec<u8>,
    max_bytes: usize,
) -> Result<Answer, RawError> {
    let mut req = http::Request::post(uri)
        .header(ACCEPT, "text/event-stream, application/json")
        .header(CONTENT_TYPE, "application/json")
        .header("mcp-session-id", &*posting.session);
    for (k, v) in &posting.headers {
        req = req.header(k, v);
    }
    let sent = client.request(req.body(Full::new(Bytes::from(body)))?);
    // The upstream's answer may come within the thread's spin window: stay awake for it.
    listener::keep_awake(listener::Awaiting::Upstream);
    let res = sent.await;
    listener::arrived();
    let res = res?;
    let status = res.status();
    if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
        return Ok(Answer::Accepted);
    }
    if status == StatusCode::NOT_FOUND {
        return Ok(Answer::Expired);
    }
    let ctype = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let media = ctype.split(';').next().unwrap_or("").trim().to_string();
    if !status.is_success() {
        let body = read_bounded(res, ERROR_BODY_MAX).await;
        if media == "application/json" {
            if let Ok(b) = &body {
                if is_jsonrpc_error(b) {
                    return Ok(Answer::Json(b.clone()));
                }
            }
        }
        let text = match body {
            Ok(b) => String::from_utf8_lossy(&b).chars().take(500).collect(),
            Err(_) => format!("(more than {ERROR_BODY_MAX} bytes)"),
        };
        return Err(RawError::Status { status, body: text });
    }
    match media.as_str() {
        "application/json" => read_bounded(res, max_bytes).await.map(Answer::Json),
        "text/event-stream" => {
            let bytes = res.into_body().into_data_stream();
            Ok(Answer::Sse(sse_stream::SseStream::from_bytes_stream(Bounded::new(bytes, max_bytes)).boxed()))
        }
        _ => Err(RawError::ContentType(ctype.chars().take(100).collect())),
    }
}

fn is_jsonrpc_error(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| v.get("error").is_some_and(|e| e.is_object()))
}

/// The whole body, or [`RawError::TooLarge`] past `max` bytes (stops reading there).
async fn read_bounded(res: http::Response<Incoming>, max: usize) -> Result<Bytes, RawError> {
    let declared = res.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(RawError::TooLarge(max));
    }
    match http_body_util::Limited::new(res.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => match e.downcast::<hyper::Error>() {
            Ok(e) => Err(RawError::Read(*e)),
            Err(_) => Err(RawError::TooLarge(max)),
        },
    }
}

/// A byte stream that fails once one event (the bytes since the last blank line) grows past
/// `max`, before the event parser buffers more of it.
struct Bounded<S> {
    inner: S,
    max: usize,
    event: usize,
    /// The previous byte ended a line (`\n`), so another line end now ends the event.
    line_start: bool,
    failed: bool,
}

impl<S> Bounded<S> {
    fn new(inner: S, max: usize) -> Bounded<S> {
        Bounded { inner, max, event: 0, line_start: true, failed: false }
    }

    /// Count `chunk`; false when an event got too long.
    fn observe(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            match b {
                b'\r' => continue,
                b'\n' if self.line_start => self.event = 0,
                b'\n' => self.line_start = true,
                _ => {
                    self.line_start = false;
                    self.event += 1;
                    if self.event > self.max {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Why an event stream stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("{0}")]
    Read(#[from] hyper::Error),
    #[error("an event of the answer is larger than max_result_bytes ({0} bytes)")]
    EventTooLarge(usize),
}

impl<S> Stream for Bounded<S>
where
    S: Stream<Item = Result<Bytes, hyper::Error>> + Unpin,
{
    type Item = Result<Bytes, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.observe(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.failed = true;
                    let max = self.max;
                    Poll::Ready(Some(Err(StreamError::EventTooLarge(max))))
                }
            }
            Poll::Ready(Some(Err(e))) => {
                self.failed = true;
                Poll::Ready(Some(Err(StreamError::Read(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_counted_from_the_last_blank_line() {
        let mut b = Bounded::new(futures_util::stream::empty::<Result<Bytes, hyper::Error>>(), 20);
        assert!(b.observe(b"data: 0123456789\n\n"));
        assert!(b.observe(b"data: 0123456789\r\n\r\n"));
        assert!(b.observe(b"data: 01234\ndata: 56"));
        assert!(!b.observe(b"789"), "one event of 21 bytes over two lines and chunks");
    }
}
