//! The metered response body: passes upstream frames through as they arrive (never buffering
//! a whole stream), feeds a side decoder, and reports exactly once how the call ended:
//! completed, upstream error, idle timeout, or cancelled by the client (dropped).
//!
//! Streams (SSE) pass on event by event: the bytes of an event go out once it is complete, so
//! a client never sees half an event. When the upstream cuts the stream or goes silent past
//! the idle timeout, every complete event has gone out; the partial one is dropped and an
//! `error` event in the caller's dialect (the form the OpenAI and Anthropic SDKs raise on)
//! ends the stream cleanly, so nothing already received is lost to a connection reset. What
//! the decoder holds is bounded: an event longer than `max_sse_event_bytes` and a reply longer
//! than `max_decode_bytes` pass through undecoded, and the call's cost is then unknown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::route::{Dialect, Endpoint};

use super::sse::{parse_event, Piece, SseSplitter};
use super::usage::{self, Summary};

/// How a call's response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// The client went away (or the response was dropped) before the end.
    Cancelled,
    UpstreamError(String),
    IdleTimeout,
}

impl Outcome {
    /// The audit record's outcome.
    pub fn audit(&self) -> audit::Outcome {
        match self {
            Outcome::Completed => audit::Outcome::Completed,
            Outcome::Cancelled => audit::Outcome::Cancelled,
            Outcome::UpstreamError(_) => audit::Outcome::UpstreamError,
            Outcome::IdleTimeout => audit::Outcome::IdleTimeout,
        }
    }
}

/// What the finish hook receives.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub summary: Summary,
    pub bytes: u64,
}

/// What the body reports to: the call's end (exactly once, when the body ends or is
/// dropped) and, at most once before it, that the call is still running at the start deadline
/// given to [`MeteredBody::new`] (the forwarded call's `started` record is written then, and
/// only then: `forward.rs`). A plain `FnOnce(Finished)` closure is the end hook alone.
pub trait Hooks: Send {
    /// The call is still running at its start deadline.
    fn still_running(&mut self) {}
    /// The call ended: `f` says how.
    fn finished(self: Box<Self>, f: Finished);
}

impl<F: FnOnce(Finished) + Send> Hooks for F {
    fn finished(self: Box<Self>, f: Finished) {
        (*self)(f)
    }
}

/// The hooks of one body.
pub type OnFinish = Box<dyn Hooks>;

/// Why part of a reply was not decoded (the `reason` label of
/// `clawbutler_meter_undecoded_total`, and the audit record's `details.undecoded`).
pub const EVENT_TOO_LARGE: &str = "sse_event_too_large";
/// See [`EVENT_TOO_LARGE`].
pub const REPLY_TOO_LARGE: &str = "reply_too_large";

/// How the body is decoded on the side.
pub enum Mode {
    /// Server-sent events; `strip_usage` drops the usage-only chunk (and `"usage":null`
    /// fields) the sidecar asked for on behalf of a client that did not.
    Sse { splitter: SseSplitter, strip_usage: bool },
    /// A JSON reply, copied up to `cap` bytes for decoding at the end; past the cap the copy
    /// is dropped for good (`overflow`), so a reply is never decoded from a partial copy.
    Json { buf: Vec<u8>, cap: usize, overflow: bool },
    /// Not decoded (error replies and the like).
    Raw,
}

impl Mode {
    /// SSE with an event cap.
    pub fn sse(strip_usage: bool, max_event_bytes: usize) -> Mode {
        Mode::Sse { splitter: SseSplitter::new(max_event_bytes), strip_usage }
    }

    /// JSON with a decode cap.
    pub fn json(cap: usize) -> Mode {
        Mode::Json { buf: Vec::new(), cap, overflow: false }
    }
}

pin_project! {
    /// See the module docs.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        mode: Mode,
        endpoint: Endpoint,
        dialect: Dialect,
        summary: Summary,
        bytes: u64,
        idle: Duration,
        // When the idle timer fires: `idle` after the last frame.
        idle_at: Instant,
        // When `Hooks::still_running` is due, until it was called (or the call ended).
        start_due: Option<Instant>,
        // Fires at the earlier of `idle_at` and `start_due`.
        #[pin]
        sleep: Sleep,
        on_finish: Option<OnFinish>,
        // Set once the end was reported.
        ended: bool,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.on_finish.take() {
                f.finished(Finished { outcome: Outcome::Cancelled, summary: std::mem::take(this.summary), bytes: *this.bytes });
            }
        }
    }
}

impl<B> MeteredBody<B> {
    /// Wrap `inner`; `dialect` shapes the error event that ends a cut stream. If the body has
    /// not ended by `start_due`, `on_finish`'s [`Hooks::still_running`] is called then (on
    /// time even while no frame arrives).
    pub fn new(
        inner: B,
        mode: Mode,
        endpoint: Endpoint,
        dialect: Dialect,
        idle: Duration,
        on_finish: OnFinish,
        start_due: Option<Instant>,
    ) -> Self {
        let idle_at = Instant::now() + idle;
        let first = start_due.map_or(idle_at, |due| due.min(idle_at));
        MeteredBody {
            inner,
            mode,
            endpoint,
            dialect,
            summary: Summary::default(),
            bytes: 0,
            idle,
            idle_at,
            start_due,
            sleep: tokio::time::sleep_until(first),
            on_finish: Some(on_finish),
            ended: false,
        }
    }
}

/// Remove every occurrence of `pat` from `raw`.
fn remove_all(raw: &[u8], pat: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(pat) {
            i += pat.len();
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

fn strip_event(raw: &[u8], endpoint: Endpoint, summary: &mut Summary, out: &mut Vec<u8>) {
    let ev = parse_event(raw);
    usage::on_event(endpoint, &ev, summary);
    if usage::is_usage_only_chunk(&ev.data) {
        return;
    }
    if ev.data.contains("\"usage\"") {
        let a = remove_all(raw, b",\"usage\":null");
        out.extend_from_slice(&remove_all(&a, b", \"usage\": null"));
    } else {
        out.extend_from_slice(raw);
    }
}

/// Decode and pass on one chunk; returns the bytes to send now.
fn feed(mode: &mut Mode, endpoint: Endpoint, summary: &mut Summary, data: Bytes) -> Bytes {
    match mode {
        Mode::Sse { splitter, strip_usage: false }
            if splitter.buffered() == 0
                && !splitter.in_oversized_event()
                && (data.ends_with(b"\n\n") || data.ends_with(b"\n\r\n")) =>
        {
            // The usual chunk: whole events and nothing held from before. It goes out as it
            // came (no copy); the splitter only hands the decoder its events.
            splitter.push(&data, |p| {
                if let Piece::Event(e) = p {
                    usage::on_event(endpoint, &parse_event(e), summary);
                }
            });
            data
        }
        Mode::Sse { splitter, strip_usage } => {
            let strip = *strip_usage;
            let mut out = Vec::with_capacity(data.len() + splitter.buffered());
            splitter.push(&data, |p| match p {
                Piece::Event(e) if strip => strip_event(e, endpoint, summary, &mut out),
                Piece::Event(e) => {
                    usage::on_event(endpoint, &parse_event(e), summary);
                    out.extend_from_slice(e);
                }
                Piece::Raw(r) => out.extend_from_slice(r),
            });
            if splitter.oversized > 0 {
                summary.undecoded = Some(EVENT_TOO_LARGE);
            }
            Bytes::from(out)
        }
        Mode::Json { buf, cap, overflow } => {
            if !*overflow {
                if buf.len() + data.len() <= *cap {
                    buf.extend_from_slice(&data);
                } else {
                    *overflow = true;
                    *buf = Vec::new();
                }
            }
            data
        }
        Mode::Raw => data,
    }
}

/// End-of-body work, done once: flush an unterminated last event, decode a JSON reply, and
/// report completion. Returns bytes still to send.
fn finalize(
    mode: &mut Mode,
    endpoint: Endpoint,
    summary: &mut Summary,
    on_finish: &mut Option<OnFinish>,
    bytes: u64,
    ended: &mut bool,
) -> Option<Bytes> {
    if *ended {
        return None;
    }
    *ended = true;
    let mut tail = None;
    match mode {
        Mode::Sse { splitter, strip_usage } => {
            let rest = splitter.take_rest();
            if !rest.is_empty() {
                if *strip_usage {
                    let mut out = Vec::new();
                    strip_event(&rest, endpoint, summary, &mut out);
                    tail = (!out.is_empty()).then(|| Bytes::from(out));
                } else {
                    usage::on_event(endpoint, &parse_event(&rest), summary);
                    tail = Some(rest.freeze());
                }
            }
        }
        Mode::Json { buf, overflow, .. } => {
            if *overflow {
                summary.undecoded = Some(REPLY_TOO_LARGE);
            } else {
                let undecoded = summary.undecoded;
                *summary = usage::from_json(endpoint, buf);
                summary.undecoded = undecoded;
            }
        }
        Mode::Raw => {}
    }
    if let Some(f) = on_finish.take() {
        f.finished(Finished { outcome: Outcome::Completed, summary: std::mem::take(summary), bytes });
    }
    tail
}

/// The SSE event that ends a stream the upstream cut or left silent, in the caller's dialect.
pub fn error_event(dialect: Dialect, message: &str) -> Bytes {
    let body = crate::error::error_body(dialect, "upstream_stream_error", message);
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        loop {
            let (outcome, err): (Outcome, BoxError) = match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let now = Instant::now();
                    *this.idle_at = now + *this.idle;
                    if this.start_due.is_some_and(|due| now >= due) {
                        *this.start_due = None;
                        if let Some(h) = this.on_finish.as_mut() {
                            h.still_running();
                        }
                    }
                    let next = this.start_due.map_or(*this.idle_at, |due| due.min(*this.idle_at));
                    this.sleep.as_mut().reset(next);
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    };
                    *this.bytes += data.len() as u64;
                    let out = feed(this.mode, *this.endpoint, this.summary, data);
                    // A body with a known length may never be polled to `None`: hyper stops
                    // once it has every byte. Finish as soon as the inner body says it is done.
                    let out = if this.inner.is_end_stream() {
                        match finalize(this.mode, *this.endpoint, this.summary, this.on_finish, *this.bytes, this.ended)
                        {
                            Some(t) => [out, t].concat().into(),
                            None => out,
                        }
                    } else {
                        out
                    };
                    if out.is_empty() {
                        if *this.ended {
                            return Poll::Ready(None);
                        }
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    let e: BoxError = e.into();
                    (Outcome::UpstreamError(e.to_string()), e)
                }
                Poll::Ready(None) => {
                    let tail =
                        finalize(this.mode, *this.endpoint, this.summary, this.on_finish, *this.bytes, this.ended);
                    return Poll::Ready(tail.map(|t| Ok(Frame::data(t))));
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.start_due.take().is_some() {
                        // The start deadline, not the idle one (it is never later than
                        // `idle_at`): the call is still running. Wait on for the idle timeout.
                        if let Some(h) = this.on_finish.as_mut() {
                            h.still_running();
                        }
                        let idle_at = *this.idle_at;
                        this.sleep.as_mut().reset(idle_at);
                        continue;
                    }
                    (Outcome::IdleTimeout, "upstream stream idle timeout".into())
                }
            };
            // The upstream failed mid-reply. Report it, then end the stream in band when
            // every byte sent so far was whole events; else (a JSON reply, or the middle of an
            // oversized event) abort the response so the client sees it incomplete.
            let message = match &outcome {
                Outcome::IdleTimeout => format!(
                    "ClawButler: the upstream sent nothing for {} s, so the stream was closed; every complete event was delivered",
                    this.idle.as_secs()
                ),
                _ => format!("ClawButler: the upstream cut the stream before its end ({err}); every complete event was delivered"),
            };
            if let Some(f) = this.on_finish.take() {
                f.finished(Finished { outcome, summary: std::mem::take(this.summary), bytes: *this.bytes });
            }
            *this.ended = true;
            return match this.mode {
                Mode::Sse { splitter, .. } if !splitter.in_oversized_event() => {
                    drop(splitter.take_rest());
                    Poll::Ready(Some(Ok(Frame::data(error_event(*this.dialect, &message)))))
                }
                _ => Poll::Ready(Some(Err(err))),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.mode {
            // Events are held until complete and a cut stream gains an error event.
            Mode::Sse { .. } => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
