//! The metered response body: passes upstream frames through as they arrive (never buffering
//! a whole stream), feeds a side decoder, and reports exactly once how the call ended:
//! completed, upstream error, idle timeout, or cancelled by the client (dropped).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::route::Endpoint;

use super::sse::{parse_event, SseSplitter};
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

/// Called exactly once when the body ends or is dropped.
pub type OnFinish = Box<dyn FnOnce(Finished) + Send>;

/// How the body is decoded on the side.
pub enum Mode {
    /// Server-sent events; `strip_usage` drops the usage-only chunk (and `"usage":null`
    /// fields) the sidecar asked for on behalf of a client that did not.
    Sse { splitter: SseSplitter, strip_usage: bool },
    /// A JSON reply, copied up to a cap for decoding at the end.
    Json { buf: Vec<u8>, cap: usize },
    /// Not decoded (error replies and the like).
    Raw,
}

/// Largest non-streamed reply copied for usage decoding; bigger ones pass through but are
/// decoded only if their usage fits in the copied prefix... which it then usually won't, so
/// the cost is recorded as unknown rather than guessed.
pub const JSON_DECODE_CAP: usize = 16 * 1024 * 1024;

pin_project! {
    /// See the module docs.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        mode: Mode,
        endpoint: Endpoint,
        summary: Summary,
        bytes: u64,
        idle: Duration,
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
                f(Finished { outcome: Outcome::Cancelled, summary: std::mem::take(this.summary), bytes: *this.bytes });
            }
        }
    }
}

impl<B> MeteredBody<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, mode: Mode, endpoint: Endpoint, idle: Duration, on_finish: OnFinish) -> Self {
        MeteredBody {
            inner,
            mode,
            endpoint,
            summary: Summary::default(),
            bytes: 0,
            idle,
            sleep: tokio::time::sleep(idle),
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

/// End-of-body work, done once: flush an unterminated last event, decode a JSON reply, and
/// report completion. Returns bytes still to send (strip mode's tail).
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
                }
            }
        }
        Mode::Json { buf, .. } => *summary = usage::from_json(endpoint, buf),
        Mode::Raw => {}
    }
    if let Some(f) = on_finish.take() {
        f(Finished { outcome: Outcome::Completed, summary: std::mem::take(summary), bytes });
    }
    tail
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
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + *this.idle;
                    this.sleep.as_mut().reset(deadline);
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    };
                    *this.bytes += data.len() as u64;
                    let out = match this.mode {
                        Mode::Sse { splitter, strip_usage: false } => {
                            let (ep, sum) = (*this.endpoint, &mut *this.summary);
                            splitter.push(&data, |raw| usage::on_event(ep, &parse_event(raw), sum));
                            data
                        }
                        Mode::Sse { splitter, strip_usage: true } => {
                            let mut out = Vec::with_capacity(data.len());
                            let (ep, sum) = (*this.endpoint, &mut *this.summary);
                            splitter.push(&data, |raw| strip_event(raw, ep, sum, &mut out));
                            Bytes::from(out)
                        }
                        Mode::Json { buf, cap } => {
                            if buf.len() + data.len() <= *cap {
                                buf.extend_from_slice(&data);
                            }
                            data
                        }
                        Mode::Raw => data,
                    };
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
                    if let Some(f) = this.on_finish.take() {
                        f(Finished {
                            outcome: Outcome::UpstreamError(e.to_string()),
                            summary: std::mem::take(this.summary),
                            bytes: *this.bytes,
                        });
                    }
                    *this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    return match finalize(
                        this.mode,
                        *this.endpoint,
                        this.summary,
                        this.on_finish,
                        *this.bytes,
                        this.ended,
                    ) {
                        Some(t) => Poll::Ready(Some(Ok(Frame::data(t)))),
                        None => Poll::Ready(None),
                    };
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        if let Some(f) = this.on_finish.take() {
                            f(Finished {
                                outcome: Outcome::IdleTimeout,
                                summary: std::mem::take(this.summary),
                                bytes: *this.bytes,
                            });
                        }
                        *this.ended = true;
                        return Poll::Ready(Some(Err("upstream stream idle timeout".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.mode {
            Mode::Sse { strip_usage: true, .. } => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};

    /// A body yielding the given chunks, one frame each.
    struct Parts(std::vec::IntoIter<&'static str>);

    impl Body for Parts {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.next().map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes())))))
        }
    }

    mod futures_stream {
        pub fn iter(v: Vec<&'static str>) -> super::Parts {
            super::Parts(v.into_iter())
        }
    }

    async fn run(parts: Vec<&'static str>, strip: bool) -> (Vec<u8>, Finished) {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let body = MeteredBody::new(
            futures_stream::iter(parts),
            Mode::Sse { splitter: SseSplitter::default(), strip_usage: strip },
            Endpoint::ChatCompletions,
            Duration::from_secs(5),
            Box::new(move |f| *g.lock().unwrap() = Some(f)),
        );
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        let f = got.lock().unwrap().take().unwrap();
        (bytes, f)
    }

    const WITH_USAGE: [&str; 4] = [
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n",
    ];

    #[tokio::test]
    async fn passthrough_is_byte_identical_and_metered() {
        let (bytes, f) = run(WITH_USAGE.to_vec(), false).await;
        assert_eq!(bytes, WITH_USAGE.concat().into_bytes());
        assert_eq!(f.outcome, Outcome::Completed);
        assert_eq!(f.summary.usage.unwrap().input_tokens, 5);
    }

    #[tokio::test]
    async fn strip_mode_removes_what_the_client_did_not_ask_for() {
        let (bytes, f) = run(WITH_USAGE.to_vec(), true).await;
        let want = "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
                    data: {\"id\":\"c\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
                    data: [DONE]\n\n";
        assert_eq!(String::from_utf8(bytes).unwrap(), want);
        assert_eq!(f.summary.usage.unwrap().output_tokens, 1);
        assert_eq!(f.summary.finish_reason.as_deref(), Some("stop"));
    }

    #[tokio::test]
    async fn drop_reports_cancelled() {
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        let body = MeteredBody::new(
            futures_stream::iter(WITH_USAGE.to_vec()),
            Mode::Raw,
            Endpoint::ChatCompletions,
            Duration::from_secs(5),
            Box::new(move |f| *g.lock().unwrap() = Some(f.outcome)),
        );
        drop(body);
        assert_eq!(got.lock().unwrap().take(), Some(Outcome::Cancelled));
    }
}
