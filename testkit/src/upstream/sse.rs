//! Response bodies: a whole JSON body, or a server-sent-event stream that records whether the client stayed
//! to the end.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

use super::script::Quirks;
use super::Shared;

/// Size of the pieces a `HUGE_EVENT` is sent in (they share one buffer: the server never holds
/// the whole event).
const HUGE_PIECE: usize = 64 * 1024;

/// How long a `CUT_AFTER` stream waits, after its last bytes, before it breaks.
const CUT_DELAY: Duration = Duration::from_millis(30);

/// One SSE frame with an optional `event:` line, as the real APIs write them (`event: x\ndata: {...}\n\n`).
pub(crate) fn event(name: Option<&str>, data: &Value) -> Bytes {
    let json = data.to_string();
    let mut out = String::with_capacity(json.len() + 32);
    if let Some(n) = name {
        out.push_str("event: ");
        out.push_str(n);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&json);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// The OpenAI end-of-stream sentinel.
pub(crate) fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// How the frames of a stream are paced.
pub(crate) struct Pacing {
    /// Frames sent at once before the pacing starts (the stream's preamble).
    pub burst: usize,
    /// Delay before each later frame, except the trailing `tail` frames which follow without delay.
    pub interval: Duration,
    /// Frames at the end sent without delay (the closing events).
    pub tail: usize,
}

/// The body of every scripted response.
pub(crate) enum ScriptBody {
    /// A complete body, sent in one frame.
    Full(Option<Bytes>),
    /// An SSE stream.
    Stream(SseStream),
}

impl ScriptBody {
    /// A JSON body.
    pub fn json(v: &Value) -> Self {
        Self::Full(Some(Bytes::from(v.to_string())))
    }

    /// The whole body as bytes (for unit tests that call the protocol functions directly).
    #[cfg(test)]
    pub async fn into_bytes(self) -> Bytes {
        use http_body_util::BodyExt;
        match self.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => panic!("scripted body failed: {e}"),
        }
    }
}

/// A stream of pre-built frames; dropping it before the last frame counts as a cancelled stream.
pub(crate) struct SseStream {
    frames: VecDeque<Bytes>,
    sent: usize,
    total: usize,
    pacing: Option<Pacing>,
    sleep: Option<Pin<Box<Sleep>>>,
    shared: Option<Arc<Shared>>,
    finished: bool,
    /// End with an error instead of cleanly (the connection breaks).
    fail_at_end: bool,
}

impl SseStream {
    /// A stream of `frames`, paced by `pacing` (or all at once).
    pub fn new(frames: Vec<Bytes>, pacing: Option<Pacing>) -> Self {
        let total = frames.len();
        Self {
            frames: frames.into(),
            sent: 0,
            total,
            pacing,
            sleep: None,
            shared: None,
            finished: false,
            fail_at_end: false,
        }
    }

    /// Apply the misbehaviours the prompt asked for (see the module docs of `upstream`).
    pub fn quirks(mut self, q: &Quirks) -> Self {
        if let Some(mib) = q.huge_event_mib {
            let first = self.frames.pop_front();
            let piece = Bytes::from(vec![b'x'; HUGE_PIECE]);
            let mut frames: VecDeque<Bytes> = first.into_iter().collect();
            frames.push_back(Bytes::from_static(b"data: {\"pad\":\""));
            let pieces = (mib as usize * 1024 * 1024).div_ceil(HUGE_PIECE);
            frames.extend(std::iter::repeat_n(piece, pieces));
            self.frames = frames;
            self.pacing = None;
        } else if let Some(k) = q.cut_after {
            let mut kept: VecDeque<Bytes> = self.frames.drain(..).take(k + 1).collect();
            if kept.len() == k + 1 {
                if let Some(last) = kept.pop_back() {
                    kept.push_back(last.slice(..last.len() / 2));
                }
            }
            self.frames = kept;
            self.fail_at_end = true;
        }
        self.total = self.frames.len();
        self
    }

    /// Report completion and cancellation to the server's counters.
    pub fn track(mut self, shared: Arc<Shared>) -> Self {
        self.shared = Some(shared);
        self
    }

    fn needs_delay(&self) -> Option<Duration> {
        let p = self.pacing.as_ref()?;
        let in_tail = self.sent + p.tail >= self.total;
        (self.sent >= p.burst && !in_tail).then_some(p.interval)
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            if self.finished {
                shared.stream_completed();
            } else {
                shared.stream_cancelled();
            }
        }
    }
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ScriptBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ScriptBody::Stream(s) => {
                if s.frames.is_empty() {
                    if s.fail_at_end {
                        // Let hyper flush what was sent (an error aborts the connection at once,
                        // dropping its unwritten buffer), then break the connection: the client
                        // sees the body end unfinished.
                        let cut = s.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_DELAY)));
                        if cut.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        s.fail_at_end = false;
                        return Poll::Ready(Some(Err(std::io::Error::other("scripted CUT_AFTER"))));
                    }
                    s.finished = true;
                    return Poll::Ready(None);
                }
                if let Some(interval) = s.needs_delay() {
                    let sleep = s.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    s.sleep = None;
                }
                s.sent += 1;
                let frame = s.frames.pop_front().map(|b| Ok(Frame::data(b)));
                if s.frames.is_empty() && !s.fail_at_end {
                    // Mark before hyper sees end-of-stream: it may drop the body right after the last frame.
                    s.finished = true;
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ScriptBody::Full(b) => b.is_none(),
            ScriptBody::Stream(s) => s.frames.is_empty() && !s.fail_at_end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ScriptBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ScriptBody::Full(None) => SizeHint::with_exact(0),
            ScriptBody::Stream(_) => SizeHint::default(),
        }
    }
}
