//! The metered body against scripted upstream bodies: byte-identical pass-through, a cut
//! stream and a silent one (every complete event, then an error event), replies past the
//! decode caps, stripping what the client did not ask for, a dropped body (cancelled), and the
//! still-running report at the start deadline.

use super::*;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};

/// A body yielding the given chunks, one frame each, then (if `cut`) an error, or (if
/// `stall`) nothing ever again.
struct Parts {
    chunks: std::vec::IntoIter<&'static str>,
    cut: bool,
    stall: bool,
}

impl Body for Parts {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.chunks.next() {
            Some(s) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(s.as_bytes()))))),
            None if self.stall => Poll::Pending,
            None if self.cut => {
                self.cut = false;
                Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
            }
            None => Poll::Ready(None),
        }
    }
}

mod futures_stream {
    pub fn iter(v: Vec<&'static str>) -> super::Parts {
        super::Parts { chunks: v.into_iter(), cut: false, stall: false }
    }
}

async fn run_with(parts: Parts, mode: Mode, dialect: Dialect) -> (Result<Vec<u8>, String>, Finished) {
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    let body = MeteredBody::new(
        parts,
        mode,
        Endpoint::ChatCompletions,
        dialect,
        Duration::from_millis(200),
        Box::new(move |f: Finished| *g.lock().unwrap() = Some(f)),
        None,
    );
    let bytes = body.collect().await.map(|c| c.to_bytes().to_vec()).map_err(|e| e.to_string());
    let f = got.lock().unwrap().take().unwrap();
    (bytes, f)
}

async fn run(parts: Vec<&'static str>, strip: bool) -> (Vec<u8>, Finished) {
    let (bytes, f) = run_with(futures_stream::iter(parts), Mode::sse(strip, 1 << 20), Dialect::OpenAi).await;
    (bytes.unwrap(), f)
}

#[tokio::test]
async fn a_cut_stream_delivers_every_complete_event_then_an_error_event() {
    // The last complete event and half of the next arrive in one chunk, then the reset.
    let parts = vec![WITH_USAGE[0], "data: {\"id\":\"c\",\"choices\":[]}\n\ndata: {\"id\":\"c\",\"cho"];
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        for strip in [false, true] {
            let p = Parts { chunks: parts.clone().into_iter(), cut: true, stall: false };
            let (bytes, f) = run_with(p, Mode::sse(strip, 1 << 20), dialect).await;
            let text = String::from_utf8(bytes.unwrap()).unwrap();
            let events: Vec<&str> = text.split_inclusive("\n\n").collect();
            assert_eq!(events.len(), 3, "{text}");
            assert!(events[1].starts_with("data: {\"id\":\"c\",\"choices\":[]}"), "{text}");
            assert!(events[2].starts_with("event: error\ndata: {"), "{text}");
            assert!(events[2].contains("upstream_stream_error") && events[2].contains("connection reset"));
            assert!(!text.contains("\"cho\n") && text.ends_with("\n\n"), "no half event: {text}");
            assert!(matches!(f.outcome, Outcome::UpstreamError(_)));
        }
    }
}

#[tokio::test]
async fn a_silent_stream_ends_with_an_error_event_and_a_cut_json_reply_aborts() {
    let p = Parts { chunks: vec![WITH_USAGE[0], "data: {\"par"].into_iter(), cut: false, stall: true };
    let (bytes, f) = run_with(p, Mode::sse(false, 1 << 20), Dialect::OpenAi).await;
    let text = String::from_utf8(bytes.unwrap()).unwrap();
    assert!(text.starts_with(WITH_USAGE[0]) && text.contains("sent nothing for"), "{text}");
    assert_eq!(f.outcome, Outcome::IdleTimeout);
    // A JSON reply cannot carry an error event: the client sees it cut.
    let p = Parts { chunks: vec!["{\"choices\":"].into_iter(), cut: true, stall: false };
    let (bytes, f) = run_with(p, Mode::json(1 << 20), Dialect::OpenAi).await;
    assert!(bytes.is_err());
    assert!(matches!(f.outcome, Outcome::UpstreamError(_)));
}

#[tokio::test]
async fn replies_past_the_decode_caps_pass_through_undecoded() {
    let big = "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1},\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}";
    let (bytes, f) = run_with(futures_stream::iter(vec![big]), Mode::json(16), Dialect::OpenAi).await;
    assert_eq!(bytes.unwrap(), big.as_bytes());
    assert_eq!(f.summary.undecoded, Some(REPLY_TOO_LARGE));
    assert!(!f.summary.usage_final);
    // Once over the cap, later pieces are never stitched into a decodable copy.
    let parts = vec!["{\"usage\":{\"prompt_tokens\":5,", "\"completion_tokens\":1}, \"pad\": \"xxxxxxxxxxxx\"", "}"];
    let (_, f) = run_with(futures_stream::iter(parts), Mode::json(40), Dialect::OpenAi).await;
    assert_eq!(f.summary.undecoded, Some(REPLY_TOO_LARGE));
    assert!(f.summary.usage.is_none());
    // An SSE event past its cap passes through; later events are decoded again, but the
    // cost stays unknown (the skipped event may have carried usage).
    let parts = vec!["data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "xxxx\n\n", WITH_USAGE[2], WITH_USAGE[3]];
    let (bytes, f) = run_with(futures_stream::iter(parts.clone()), Mode::sse(false, 16), Dialect::OpenAi).await;
    assert_eq!(bytes.unwrap(), parts.concat().into_bytes());
    assert_eq!(f.summary.undecoded, Some(EVENT_TOO_LARGE));
    assert!(f.summary.usage_final, "later events are still read");
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
        Dialect::OpenAi,
        Duration::from_secs(5),
        Box::new(move |f: Finished| *g.lock().unwrap() = Some(f.outcome)),
        None,
    );
    drop(body);
    assert_eq!(got.lock().unwrap().take(), Some(Outcome::Cancelled));
}

/// Records which hooks ran, in order.
struct Log(Arc<Mutex<Vec<String>>>);
impl Hooks for Log {
    fn still_running(&mut self) {
        self.0.lock().unwrap().push("running".into());
    }
    fn finished(self: Box<Self>, f: Finished) {
        self.0.lock().unwrap().push(format!("{:?}", f.outcome));
    }
}

async fn hooks_of(parts: Parts, start_in: Duration) -> Vec<String> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let body = MeteredBody::new(
        parts,
        Mode::sse(false, 1 << 20),
        Endpoint::ChatCompletions,
        Dialect::OpenAi,
        Duration::from_millis(300),
        Box::new(Log(log.clone())),
        Some(Instant::now() + start_in),
    );
    let _ = body.collect().await;
    let got = log.lock().unwrap().clone();
    got
}

#[tokio::test]
async fn still_running_is_reported_at_the_start_deadline_and_only_then() {
    // Ends before the deadline: the end alone.
    let quick = hooks_of(futures_stream::iter(WITH_USAGE.to_vec()), Duration::from_secs(5)).await;
    assert_eq!(quick, ["Completed"]);
    // Silent past the deadline (no frame arrives to notice it): reported on time, once,
    // then the idle timeout still ends it.
    let t0 = Instant::now();
    let p = Parts { chunks: vec![WITH_USAGE[0]].into_iter(), cut: false, stall: true };
    let stalled = hooks_of(p, Duration::from_millis(50)).await;
    assert_eq!(stalled, ["running", "IdleTimeout"]);
    assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());
    // Frames arriving past the deadline: reported once.
    let late = hooks_of(futures_stream::iter(WITH_USAGE.to_vec()), Duration::ZERO).await;
    assert_eq!(late, ["running", "Completed"]);
}
