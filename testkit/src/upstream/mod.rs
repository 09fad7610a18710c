//! [`ScriptedUpstream`]: a local OpenAI/Anthropic-compatible model server whose answers are scripted by
//! magic words in the prompt.
//!
//! Routes (HTTP/1.1 on `127.0.0.1:<port>`): `POST /v1/chat/completions`, `POST /v1/responses`,
//! `POST /v1/embeddings`, `GET /v1/models`, `POST /v1/messages` (Anthropic).
//!
//! The prompt is the text of the last user message, skipping OpenClaw's internal-context message. In it:
//! - `RUN_EXEC: <cmd>`: an `exec` tool call with `{"command":"<cmd>"}`; once a tool result follows that
//!   message, the text `exec finished: <first 200 chars of the result>`.
//! - `CALL_TOOL: <name> <JSON args>`: a call of tool `<name>` with those arguments; once its result
//!   follows, the text `tool finished: <first 2000 chars of the result>`.
//! - `RUN_TOOL:<name> <json args>`: a call of tool `<name>` with those arguments (one line; text
//!   that is not a JSON object becomes `{"input": <text>}`); once its result follows, a text
//!   answer `tool <name> finished: <first 600 chars of the result>` (so tests see what the model
//!   was told, e.g. a block reason).
//! - `SLOW`: a stream of [`SLOW_TICK`] chunks, one per [`UpstreamOptions::slow_interval`], for
//!   [`UpstreamOptions::slow_duration`] (non-streaming: the whole reply after that duration).
//! - `FAIL500` / `FAIL429`: that status with an error body in the route's shape (no `Retry-After`).
//! - `DAILY_LIMIT:<model>`: when the request is for `<model>`, HTTP 429 with `Retry-After:
//!   3600` and an error whose message says "daily limit reached", as a vendor's exhausted
//!   usage window looks to OpenClaw (it then moves to the next fallback at once, without
//!   retrying); a request for any other model is answered normally, so the fallback succeeds.
//! - `HANG`: the request is read and recorded, and no response headers are ever sent.
//! - `CACHED`: half the input tokens are reported as cached (prompt-cache reads).
//! - `MARK:<token>`: the default reply becomes `Hello from the scripted model. [<token>]`.
//! - otherwise [`DEFAULT_REPLY`].
//!
//! Misbehaviours, for the hardening tests (streams only, except `ABSURD_USAGE`):
//! - `CUT_AFTER:<k>`: the stream sends its first `k` frames and half of the next, then, once
//!   those bytes are out, the connection breaks (no terminating chunk).
//! - `HUGE_EVENT:<MiB>`: after the first frame, one event of that many MiB that never ends
//!   (no blank line), then the stream ends.
//! - `ABSURD_USAGE`: usage reports `u64::MAX` prompt tokens and `-5` completion tokens.
//!
//! Billing as the real APIs do it: the output cap (`max_tokens`, else `max_completion_tokens`;
//! `max_output_tokens`; Anthropic `max_tokens`) cuts the answer (`finish_reason` `length` /
//! `max_tokens`); chat `n` answers that many choices, all counted in `completion_tokens`; each
//! image part costs [`IMAGE_TOKENS`] and each file / PDF / audio part [`FILE_TOKENS`] input
//! tokens whatever their size; a Responses `previous_response_id` (unknown id: 400) or
//! `conversation` adds the stored context's input and output tokens to the input; an offered
//! web search tool (Responses `web_search*` tools, Anthropic `web_search_*` tools, chat
//! `web_search_options`) runs one search (`SEARCHES:<k>` in the prompt: k, capped by
//! `max_tool_calls` / `max_uses`), each adding [`SEARCH_TOKENS`] input tokens and reported as
//! `web_search_call` output items / `usage.server_tool_use.web_search_requests`.
//!
//! Ids, timestamps and token counts depend only on the route, model and conversation text, so two identical
//! prompts get byte-identical answers whatever other body fields (`stream_options`, `tools`, ...) say.
//! Input tokens are `ceil(chars / 4)` of all conversation text; output tokens are the reply's word count
//! (tool call: 1 + words of the command).

mod anthropic;
mod openai;
mod responses;
mod script;
mod sse;
#[cfg(test)]
mod tests;

pub use script::{
    reply_for, DEFAULT_REPLY, FILE_TOKENS, IMAGE_TOKENS, INTERNAL_CONTEXT_MARKER, SEARCH_TOKENS, SLOW_TICK,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use sse::ScriptBody;

/// Errors starting the scripted server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Binding 127.0.0.1:0 failed.
    #[error("scripted upstream: cannot bind 127.0.0.1:0: {0}")]
    Bind(#[source] std::io::Error),
}

/// Knobs for [`ScriptedUpstream::start_with`].
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Delay between the chunks of a `SLOW` stream (default 200 ms).
    pub slow_interval: Duration,
    /// How long a `SLOW` stream lasts (default 60 s).
    pub slow_duration: Duration,
    /// Keep every request for [`ScriptedUpstream::requests`] (default true; turn off for load tests so
    /// memory stays flat; the counters still work).
    pub record: bool,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self { slow_interval: Duration::from_millis(200), slow_duration: Duration::from_secs(60), record: true }
    }
}

/// Token usage the scripted model reported for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Input (prompt) tokens, cached ones included (OpenAI `prompt_tokens` / `input_tokens`; on Anthropic
    /// `input_tokens + cache_read_input_tokens`).
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Input tokens served from the prompt cache.
    pub cached_tokens: u64,
    /// Server-side tool calls (web searches) the upstream ran and bills per call.
    pub server_tool_calls: u64,
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path with query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw request body.
    pub body: Bytes,
    /// Usage the reply reported (or will report, for a stream still running); `None` for errors, `HANG`,
    /// `GET /v1/models`.
    pub usage: Option<Usage>,
}

impl RecordedRequest {
    /// The body parsed as JSON (`None` if it is not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Context the upstream keeps between calls: the tokens of stored responses (by id) and of
/// conversations (`conv:<id>`), billed again as input when a later call names them.
#[derive(Default)]
pub(crate) struct Memory(Mutex<std::collections::HashMap<String, u64>>);

impl Memory {
    pub(crate) fn get(&self, id: &str) -> Option<u64> {
        self.0.lock().ok()?.get(id).copied()
    }

    pub(crate) fn put(&self, id: &str, tokens: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id.to_string(), tokens);
        }
    }
}

/// State shared between the handle and the connection tasks.
pub(crate) struct Shared {
    opts: UpstreamOptions,
    memory: Memory,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicUsize,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn stream_completed(&self) {
        self.completed.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn stream_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a protocol module answers, before the server adds pacing, recording and headers.
pub(crate) struct Reply {
    /// A `Retry-After` header (seconds), for periodic-limit answers.
    pub retry_after: Option<u64>,
    pub status: StatusCode,
    pub body: ScriptBody,
    pub usage: Option<Usage>,
    pub wait: Wait,
}

/// Whether to hold the response back.
pub(crate) enum Wait {
    None,
    Hang,
    Delay(Duration),
}

impl Reply {
    fn json(status: StatusCode, v: &Value) -> Self {
        Self { retry_after: None, status, body: ScriptBody::json(v), usage: None, wait: Wait::None }
    }
}

/// The scripted model server. Stops when dropped (or on [`ScriptedUpstream::shutdown`]).
pub struct ScriptedUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl ScriptedUpstream {
    /// Start with default options.
    ///
    /// # Panics
    /// If 127.0.0.1:0 cannot be bound (this is test infrastructure; use [`Self::try_start_with`] to handle it).
    pub async fn start() -> Self {
        Self::start_with(UpstreamOptions::default()).await
    }

    /// Start with `opts`.
    ///
    /// # Panics
    /// As [`Self::start`].
    pub async fn start_with(opts: UpstreamOptions) -> Self {
        match Self::try_start_with(opts).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Start with `opts`, returning bind errors.
    pub async fn try_start_with(opts: UpstreamOptions) -> Result<Self, UpstreamError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(UpstreamError::Bind)?;
        let addr = listener.local_addr().map_err(UpstreamError::Bind)?;
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            opts,
            memory: Memory::default(),
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            shutdown,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, stop, accept: Some(accept) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (routes live under `/v1/...`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far (empty when recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Number of requests received so far (counted even when recording is off).
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Streams whose client went away before the last frame.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` streams were cancelled; false on timeout.
    pub async fn wait_for_cancelled(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.cancelled_streams() >= n).await
    }

    /// Wait until at least `n` streams completed; false on timeout.
    pub async fn wait_for_completed(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.completed_streams() >= n).await
    }

    /// Wait until at least `n` requests arrived; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.request_count() >= n).await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stop accepting and close every open connection (hanging requests included); the port is free when
    /// this returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = &self.accept {
            accept.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut shutdown = shared.shutdown.clone();
            let svc_shared = shared.clone();
            let service = hyper::service::service_fn(move |req| handle(req, svc_shared.clone()));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<ScriptBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let anthropic_route = parts.uri.path() == "/v1/messages";
    let reply = route(&parts.method, parts.uri.path(), &body, &shared.opts, &shared.memory);

    shared.count.fetch_add(1, Ordering::SeqCst);
    if shared.opts.record {
        let rec = RecordedRequest { method: parts.method, path, headers: parts.headers, body, usage: reply.usage };
        if let Ok(mut r) = shared.requests.lock() {
            r.push(rec);
        }
    }

    match reply.wait {
        Wait::None => {}
        Wait::Delay(d) => tokio::time::sleep(d).await,
        // Never answer; the connection task drops this future when the server shuts down.
        Wait::Hang => std::future::pending::<()>().await,
    }

    let streaming = matches!(reply.body, ScriptBody::Stream(_));
    let body = match reply.body {
        ScriptBody::Stream(s) => ScriptBody::Stream(s.track(shared.clone())),
        full => full,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    if let Some(secs) = reply.retry_after {
        resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    let ct = if streaming { "text/event-stream; charset=utf-8" } else { "application/json" };
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if anthropic_route {
        resp.headers_mut().insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    Ok(resp)
}

fn route(method: &Method, path: &str, body: &[u8], opts: &UpstreamOptions, mem: &Memory) -> Reply {
    let is_post = method == Method::POST;
    match (path, is_post) {
        ("/v1/models", false) if method == Method::GET => return openai::models(),
        ("/v1/messages", true) => {
            return match serde_json::from_slice::<Value>(body) {
                Ok(v) => anthropic::messages(&v, opts),
                Err(e) => anthropic::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &format!("invalid JSON body: {e}"),
                ),
            }
        }
        ("/v1/chat/completions" | "/v1/responses" | "/v1/embeddings", true) => {}
        _ => {
            return openai::error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                &format!("Unknown request URL: {method} {path}."),
            );
        }
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return openai::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!("We could not parse the JSON body of your request: {e}"),
            );
        }
    };
    match path {
        "/v1/chat/completions" => openai::chat(&v, opts),
        "/v1/responses" => responses::responses(&v, opts, mem),
        _ => openai::embeddings(&v),
    }
}
