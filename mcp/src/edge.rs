//! The HTTP edge of `/mcp/agent/{agent}` (Streamable HTTP), in this order, each refusal a
//! JSON-RPC error body with the HTTP status the spec names:
//!
//! 1. the path and agent id (404 / 400);
//! 2. `Origin` and `Host` (403: the spec's DNS-rebinding rule; the listener's own loopback
//!    origins are allowed, others only from `[mcp] allowed_origins`);
//! 3. the method: POST, GET (the stream for messages outside calls), DELETE (405 else);
//! 4. the agent's MCP token (`Authorization: Bearer cbm_...`): 401 without a valid one, 403
//!    for another agent's token; an agent in `[mcp] open_agents` needs none on loopback;
//! 5. POST: `Accept` (406), `Content-Type` (415), the body size (413) and time (408), one
//!    JSON-RPC message (a batch or malformed JSON: 400), `MCP-Protocol-Version` (absent means
//!    2025-03-26; unknown: 400);
//! 6. the session: `initialize` opens one (its id in `Mcp-Session-Id`); anything else needs
//!    it (400 without, 404 for an unknown or ended one, or one opened by another agent or
//!    token, so the client starts over);
//! 7. dispatch. Notifications and the client's answers get 202; requests JSON, or an event
//!    stream when something must come before the result.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use governance::agent_keys::Verdict;
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use crate::dispatch::{self, Reply};
use crate::jsonrpc::{self, code, Malformed, Message};
use crate::session::{self, Session};
use crate::sse::{Out, SseBody};
use crate::{reverse, Body, State};

/// `MCP-Protocol-Version` values accepted on requests after `initialize` (2025-03-26 is what
/// an absent header means, and some clients send it).
const HEADER_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The session header.
const SESSION: &str = "mcp-session-id";

/// Allowed origins and hosts.
pub(crate) struct Guard {
    origins: Vec<String>,
    hosts: Vec<String>,
    /// The listener is on a loopback address.
    pub loopback: bool,
}

fn norm_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Guard {
    pub fn new(settings: &crate::McpSettings, listen: SocketAddr) -> Guard {
        let port = listen.port();
        let mut origins: Vec<String> = settings.allowed_origins.iter().map(|o| norm_origin(o)).collect();
        if listen.ip().is_loopback() || listen.ip().is_unspecified() {
            for h in ["127.0.0.1", "localhost", "[::1]"] {
                origins.push(format!("http://{h}:{port}"));
            }
        } else {
            let ip = match listen.ip() {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            origins.push(format!("http://{ip}:{port}"));
        }
        let hosts =
            settings.allowed_hosts.iter().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
        Guard { origins, hosts, loopback: listen.ip().is_loopback() }
    }

    fn check(&self, headers: &HeaderMap, conn: Option<&listener::ConnInfo>) -> Result<(), String> {
        if let Some(o) = headers.get(http::header::ORIGIN) {
            let o = o.to_str().unwrap_or("(not ASCII)");
            if !self.origins.contains(&norm_origin(o)) {
                return Err(format!(
                    "Origin {} is not allowed on the MCP endpoint; add it to [mcp] allowed_origins if a page must call it",
                    clip(o)
                ));
            }
        }
        if conn.is_none_or(|c| c.local.ip().is_loopback()) {
            if let Some(h) = headers.get(http::header::HOST) {
                let h = h.to_str().unwrap_or("(not ASCII)");
                if !self.host_ok(h) {
                    return Err(format!(
                        "Host {} is not a name of this loopback listener; add it to [mcp] allowed_hosts if clients use it",
                        clip(h)
                    ));
                }
            }
        }
        Ok(())
    }

    fn host_ok(&self, host: &str) -> bool {
        let full = host.trim().to_ascii_lowercase();
        let name = match full.strip_prefix('[') {
            Some(r) => r.split(']').next().unwrap_or(""),
            None => match full.rsplit_once(':') {
                Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => full.as_str(),
            },
        };
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self.hosts.iter().any(|h| h == name || *h == full)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The `/mcp/` face (a tower service).
#[derive(Clone)]
pub struct McpService {
    state: Arc<State>,
}

impl McpService {
    pub(crate) fn new(state: Arc<State>) -> McpService {
        McpService { state }
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl tower::Service<Request<listener::TimedBody>> for McpService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<listener::TimedBody>) -> BoxFut {
        let st = self.state.clone();
        Box::pin(async move { Ok(handle(st, req).await) })
    }
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An HTTP-level refusal: a JSON-RPC error (id null) with `status`.
fn refuse(status: StatusCode, c: i64, message: &str) -> Response<Body> {
    let mut r = json(status, jsonrpc::error(&Value::Null, c, message, None));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"clawbutler-mcp\""));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    }
    r
}

fn sse(body: SseBody, headers: Vec<(http::HeaderName, HeaderValue)>) -> Response<Body> {
    let mut r = Response::new(body.map_err(|never| match never {}).boxed_unsync());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (k, v) in headers {
        h.insert(k, v);
    }
    r
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    let Some(a) = headers.get(ACCEPT) else { return true };
    let a = a.to_str().unwrap_or("").to_ascii_lowercase();
    a.split(',').map(|p| p.split(';').next().unwrap_or("").trim()).any(|t| t == what || t == "*/*")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The token's id for `agent` (`open` for a token-less open agent), or the refusal.
fn authenticate(st: &State, agent: &str, headers: &HeaderMap) -> Result<String, Box<Response<Body>>> {
    let tokens = &st.parts.tokens;
    match bearer(headers) {
        Some(t) => match tokens.verify(agent, t) {
            Verdict::Valid(id) => Ok(id),
            _ if tokens.owner(t).is_some_and(|o| o != agent) => Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                code::SERVER,
                &format!("this MCP token belongs to another agent; it cannot be used on /mcp/agent/{agent}"),
            ))),
            _ => Err(Box::new(refuse(StatusCode::UNAUTHORIZED, code::SERVER, "unknown or revoked MCP token"))),
        },
        None if st.guard.loopback && st.settings.open_agents.iter().any(|a| a == agent) => Ok("open".to_string()),
        None => Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            code::SERVER,
            &format!(
                "an MCP token is needed: send Authorization: Bearer <token> (create one with `clawbutler mcp-token create {agent}`)"
            ),
        ))),
    }
}

/// The session a request names, if it is this agent's and was opened with this token.
fn session_of(st: &State, headers: &HeaderMap, agent: &str, key_id: &str) -> Result<Arc<Session>, Box<Response<Body>>> {
    let Some(id) = headers.get(SESSION).and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            code::SERVER,
            "Bad Request: Mcp-Session-Id header is required",
        )));
    };
    match st.sessions.get(id) {
        Some(s) if s.agent == agent && s.key_id == key_id => {
            s.touch();
            Ok(s)
        }
        _ => Err(Box::new(refuse(StatusCode::NOT_FOUND, code::SESSION_NOT_FOUND, "Session not found"))),
    }
}

async fn handle(st: Arc<State>, req: Request<listener::TimedBody>) -> Response<Body> {
    let path = req.uri().path();
    let Some(agent) = path.strip_prefix("/mcp/agent/").map(|a| a.trim_end_matches('/')).filter(|a| !a.contains('/'))
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            code::SERVER,
            &format!("no MCP endpoint at {}; use /mcp/agent/<agent>", clip(path)),
        );
    };
    let agent = agent.to_string();
    if let Err(e) = decision::agent_id::check(&agent) {
        return refuse(StatusCode::BAD_REQUEST, code::SERVER, &e.to_string());
    }
    if let Err(why) = st.guard.check(req.headers(), req.extensions().get::<listener::ConnInfo>()) {
        tracing::info!(agent = %agent, reason = %why, "MCP request refused");
        return refuse(StatusCode::FORBIDDEN, code::SERVER, &why);
    }
    let method = req.method().clone();
    if method != Method::POST && method != Method::GET && method != Method::DELETE {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, code::SERVER, "use POST, GET or DELETE");
    }
    let key_id = match authenticate(&st, &agent, req.headers()) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    match method {
        Method::GET => get_stream(&st, &agent, &key_id, req.headers()),
        Method::DELETE => match session_of(&st, req.headers(), &agent, &key_id) {
            Ok(s) => {
                session::close(&st, &s.id, "the client ended it (DELETE)");
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(r) => *r,
        },
        _ => post(st, agent, key_id, req).await,
    }
}

fn get_stream(st: &Arc<State>, agent: &str, key_id: &str, headers: &HeaderMap) -> Response<Body> {
    if !accepts(headers, "text/event-stream") {
        return refuse(StatusCode::NOT_ACCEPTABLE, code::SERVER, "Not Acceptable: GET needs Accept: text/event-stream");
    }
    match session_of(st, headers, agent, key_id) {
        Ok(s) => {
            let rx = s.open_get_stream();
            sse(SseBody::new(None, rx, Duration::from_secs(st.settings.sse_keepalive_s)), Vec::new())
        }
        Err(r) => *r,
    }
}

fn content_type_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

async fn post(st: Arc<State>, agent: String, key_id: String, req: Request<listener::TimedBody>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    if !accepts(headers, "application/json") || !accepts(headers, "text/event-stream") {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            code::SERVER,
            "Not Acceptable: the client must accept both application/json and text/event-stream",
        );
    }
    if !content_type_json(headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::SERVER,
            "Unsupported Media Type: send application/json",
        );
    }
    let limit = st.settings.max_body_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    code::INVALID_REQUEST,
                    &format!("the message is larger than [mcp] max_body_bytes ({limit} bytes)"),
                );
            }
            let timed_out = parts.extensions.get::<listener::BodyTimer>().is_some_and(|t| t.expired())
                || e.downcast_ref::<listener::BodyTimeout>().is_some();
            if timed_out {
                return refuse(StatusCode::REQUEST_TIMEOUT, code::SERVER, "the request body did not arrive in time");
            }
            return refuse(StatusCode::BAD_REQUEST, code::PARSE, &format!("the request body could not be read: {e}"));
        }
    };
    let msg = match jsonrpc::parse(&bytes) {
        Ok(m) => m,
        Err(Malformed::Batch) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "JSON-RPC batches are not supported (MCP 2025-06-18 and later): send one message per request",
            )
        }
        Err(Malformed::Parse(e)) => return refuse(StatusCode::BAD_REQUEST, code::PARSE, &format!("Parse error: {e}")),
        Err(Malformed::Invalid { id, why }) => {
            return json(
                StatusCode::BAD_REQUEST,
                jsonrpc::error(&id, code::INVALID_REQUEST, &format!("Invalid Request: {why}"), None),
            )
        }
    };
    if let Message::Request { id, method, params } = &msg {
        if method == "initialize" {
            return answer(&st, dispatch::initialize(&st, &agent, &key_id, id, params).await).await;
        }
    }
    match headers.get("mcp-protocol-version").map(|v| v.to_str().unwrap_or("")) {
        Some(v) if !HEADER_VERSIONS.contains(&v) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                code::SERVER,
                &format!(
                    "Bad Request: unsupported MCP-Protocol-Version {} (supported: 2025-11-25, 2025-06-18)",
                    clip(v)
                ),
            );
        }
        _ => {}
    }
    let sess = match session_of(&st, headers, &agent, &key_id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match msg {
        Message::Request { id, method, params } => {
            answer(&st, dispatch::request(&st, &sess, id, &method, params).await).await
        }
        Message::Notification { method, params } => {
            dispatch::notification(&sess, &method, params).await;
            accepted()
        }
        Message::Response { id, outcome } => {
            reverse::resolve(&sess, &id, outcome);
            accepted()
        }
    }
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// Turn a dispatch reply into the HTTP answer: JSON when the result is ready first, an
/// event stream once anything must precede it.
async fn answer(st: &State, reply: Reply) -> Response<Body> {
    match reply {
        Reply::Json(b, sid) => {
            let mut r = json(StatusCode::OK, b);
            if let Some(v) = sid.and_then(|s| HeaderValue::from_str(&s).ok()) {
                r.headers_mut().insert(SESSION, v);
            }
            r
        }
        Reply::Busy(b) => json(StatusCode::SERVICE_UNAVAILABLE, b),
        Reply::Call(mut rx, call) => {
            let every = Duration::from_secs(st.settings.sse_keepalive_s);
            // The call runs in this request's task until its answer or a first message is
            // ready: no task spawn and no cross-thread hand-off for the usual call. Once the
            // answer must become an event stream, or if this request is dropped first (the
            // client went away), the rest of the call runs in a task of its own, so it still
            // runs to its end and is recorded.
            let mut call = Detached(Some(call));
            let first = tokio::select! {
                biased;
                () = &mut call => rx.recv().await,
                m = rx.recv() => m,
            };
            match first {
                Some(Out::Final(b, headers)) => {
                    // Nothing is awaited after the answer: this finishes at once.
                    (&mut call).await;
                    let mut r = json(StatusCode::OK, b);
                    for (k, v) in headers {
                        r.headers_mut().insert(k, v);
                    }
                    r
                }
                Some(Out::Start(headers)) => sse(SseBody::new(None, rx, every), headers),
                Some(Out::Event(b)) => sse(SseBody::new(Some(crate::sse::frame(&b)), rx, every), Vec::new()),
                // Cancelled before anything was sent: an empty stream, no answer (MCP).
                None => sse(SseBody::new(None, rx, every), Vec::new()),
            }
        }
    }
}

/// A call's future that is run inline by its request and, if it has not finished when the
/// request lets go of it (dropped), handed to a task of its own to finish.
struct Detached(Option<crate::call::CallFuture>);

impl Future for Detached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(f) = self.0.as_mut() else { return Poll::Ready(()) };
        match f.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.0 = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(f);
                }
                Err(_) => tracing::warn!("an MCP tool call was cut short: the runtime is shutting down"),
            }
        }
    }
}
