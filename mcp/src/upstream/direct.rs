//! A `tools/call` to a Streamable HTTP upstream posted straight from the call's own task, on
//! the upstream session rmcp opened (its `Mcp-Session-Id` and headers, remembered by
//! [`Wire`]), instead of through rmcp's service loop and transport worker, and as JSON bytes
//! both ways (`raw.rs`) rather than rmcp's typed messages. rmcp's path costs several task
//! hand-offs and a typed round trip per call, most of the sidecar's added latency on a tool
//! call; this one costs the HTTP exchange itself. Everything else (initialize, lists,
//! resources, prompts, the session's GET stream, DELETE, stdio servers) stays with rmcp.
//!
//! What it keeps exactly as rmcp's path does:
//! - Request ids and progress tokens are the sidecar's own strings (`cb-<n>`), never numbers,
//!   so they cannot collide with the numeric ids rmcp picks on the same session. Both are
//!   registered in the connection's routes, so progress an upstream sends on its GET stream
//!   still reaches the call.
//! - When the upstream answers with an event stream, progress, log lines and list changes on
//!   it are handled as the rmcp handler handles them; requests to the client (elicitation,
//!   sampling, roots) go through `reverse.rs` (policy, audit) and the answer is posted back.
//!   A stream that ends before the result is resumed with `Last-Event-Id` (the server's
//!   `retry` delay, at most [`RESUMES`] times).
//! - Timeout and the client's cancel send `notifications/cancelled` upstream.
//! - An expired session (404 before anything ran) falls back to rmcp, which re-initialises.
//!   An upstream that answers a call with 202 (the result would come on its GET stream,
//!   which rmcp reads) turns the direct path off for that connection.
//! - The result is passed on as the upstream sent it (a JSON value), never re-typed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientNotification, NumberOrString, ProgressNotificationParam,
    ProgressToken, RequestId,
};
use rmcp::service::Peer;
use rmcp::transport::streamable_http_client::StreamableHttpClient;
use rmcp::RoleClient;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::conn::{CallRoute, Forwarded, Routes};
use super::handler::{deliver_progress, Handler};
use super::raw::{self, Answer};
use super::wire::{Posting, Wire};

/// Most times a call's event stream is resumed after it ended early.
const RESUMES: usize = 3;

/// Longest wait before a resume, whatever the server's `retry` says.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The direct path of one upstream connection.
pub(crate) struct Direct {
    wire: Wire,
    raw: raw::RawClient,
    uri: Arc<str>,
    max_bytes: usize,
    handler: Handler,
    next: AtomicU64,
    off: AtomicBool,
}

/// A `tools/call` request as it goes on the wire.
#[derive(serde::Serialize)]
struct CallMessage<'a> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'static str,
    params: CallParams<'a>,
}

#[derive(serde::Serialize)]
struct CallParams<'a> {
    name: &'a str,
    arguments: &'a Map<String, Value>,
    #[serde(rename = "_meta")]
    meta: &'a Map<String, Value>,
}

/// How a direct exchange ended.
enum Exchange {
    Done(Forwarded),
    /// Nothing ran upstream (the session expired): send it through rmcp instead.
    NotSent,
}

impl Direct {
    pub fn new(wire: Wire, raw: raw::RawClient, uri: &str, max_bytes: usize, handler: Handler) -> Direct {
        Direct { wire, raw, uri: uri.into(), max_bytes, handler, next: AtomicU64::new(1), off: AtomicBool::new(false) }
    }

    /// Run a `tools/call`; `None` when the direct path cannot be used (no session yet, turned
    /// off, or the session expired before the call ran): the caller uses rmcp.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_tool(
        &self,
        peer: &Peer<RoleClient>,
        routes: &Routes,
        tool: &str,
        args: &Map<String, Value>,
        meta: Option<Map<String, Value>>,
        route: Arc<CallRoute>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Option<Forwarded> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        let posting = self.wire.posting()?;
        let key: Arc<str> = format!("cb-{}", self.next.fetch_add(1, Ordering::Relaxed)).into();
        let mut meta = meta.unwrap_or_default();
        meta.insert("progressToken".into(), Value::String(key.to_string()));
        // Written straight from borrowed parts: the arguments are not copied into a new value.
        let msg = CallMessage {
            jsonrpc: "2.0",
            id: &key,
            method: "tools/call",
            params: CallParams { name: tool, arguments: args, meta: &meta },
        };
        let body = serde_json::to_vec(&msg).ok()?;
        let id = RequestId::String(key.clone());
        let token = ProgressToken(NumberOrString::String(key.clone()));
        for p in routes.register(&id, &token, route.clone()) {
            deliver_progress(&route, p);
        }
        let exchange = self.exchange(&posting, body, &key, &route, cancel);
        let out = tokio::select! {
            r = tokio::time::timeout(timeout, exchange) => match r {
                Ok(Exchange::Done(f)) => Some(f),
                Ok(Exchange::NotSent) => None,
                Err(_) => {
                    cancel_upstream(peer, &id, "timed out").await;
                    Some(Forwarded::Timeout)
                }
            },
            _ = cancel.cancelled() => {
                cancel_upstream(peer, &id, "cancelled by the client").await;
                Some(Forwarded::Cancelled)
            }
        };
        routes.unregister(&id, &token);
        out
    }

    async fn exchange(
        &self,
        posting: &Posting,
        body: Vec<u8>,
        id: &str,
        route: &Arc<CallRoute>,
        cancel: &CancellationToken,
    ) -> Exchange {
        match raw::post(&self.raw, &self.uri, posting, body, self.max_bytes).await {
            Ok(Answer::Expired) => Exchange::NotSent,
            Err(e) => Exchange::Done(Forwarded::Broken(e.to_string())),
            Ok(Answer::Accepted) => {
                self.off.store(true, Ordering::Relaxed);
                tracing::warn!(uri = %self.uri, "an MCP server accepted a tool call without answering it on the call's stream; its calls go through rmcp from now on");
                Exchange::Done(Forwarded::Broken("the server accepted the call without answering it".into()))
            }
            Ok(Answer::Json(b)) => Exchange::Done(match serde_json::from_slice::<Value>(&b) {
                Ok(m) => self.message(m, id, route, posting, cancel).unwrap_or_else(|| {
                    Forwarded::Broken("the server answered something other than the call's result".into())
                }),
                Err(e) => Forwarded::Broken(format!("the server's answer is not JSON: {e}")),
            }),
            Ok(Answer::Sse(stream)) => Exchange::Done(self.follow(stream, id, route, posting, cancel).await),
        }
    }

    /// Read a call's event stream until its result, resuming it when it ends early.
    async fn follow(
        &self,
        mut stream: rmcp::transport::common::client_side_sse::BoxedSseResponse,
        id: &str,
        route: &Arc<CallRoute>,
        posting: &Posting,
        cancel: &CancellationToken,
    ) -> Forwarded {
        let mut last_id: Option<String> = None;
        let mut retry = Duration::from_secs(1);
        let mut resumes = 0;
        loop {
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(error = %e, "an MCP call's event stream broke");
                        break;
                    }
                };
                if let Some(r) = ev.retry {
                    retry = Duration::from_millis(r).min(MAX_RETRY);
                }
                if ev.id.is_some() {
                    last_id = ev.id;
                }
                let Some(data) = ev.data.filter(|d| !d.trim().is_empty()) else { continue };
                let Ok(m) = serde_json::from_str::<Value>(&data) else {
                    tracing::debug!("an MCP server sent an unreadable message on a call's stream");
                    continue;
                };
                if let Some(done) = self.message(m, id, route, posting, cancel) {
                    return done;
                }
            }
            // Ended without the result: resumable only with an event id (MCP's rule).
            let Some(from) = last_id.clone() else {
                return Forwarded::Broken("the server closed the call's stream before its result".into());
            };
            if resumes == RESUMES {
                return Forwarded::Broken(format!("the call's stream ended early {RESUMES} times"));
            }
            resumes += 1;
            tokio::time::sleep(retry).await;
            match self
                .wire
                .client
                .get_stream_with_max_sse_event_size(
                    self.uri.clone(),
                    Some(posting.session.clone()),
                    Some(from),
                    None,
                    posting.headers.clone(),
                    self.max_bytes,
                )
                .await
            {
                Ok(s) => stream = s,
                Err(e) => return Forwarded::Broken(format!("resuming the call's stream failed: {e}")),
            }
        }
    }

    /// One message from the upstream about this call: `Some` when it ends the call. A message
    /// with a `method` is a request to the client (with an `id`) or a notification; one
    /// without is a response, this call's when its id is the call's (an error with a null id
    /// is taken as this call's: the server could not read the request).
    fn message(
        &self,
        mut m: Value,
        id: &str,
        route: &Arc<CallRoute>,
        posting: &Posting,
        cancel: &CancellationToken,
    ) -> Option<Forwarded> {
        if m.get("method").is_some_and(Value::is_string) {
            match m.get("id").filter(|i| !i.is_null()).cloned() {
                Some(rid) => self.request(rid, m, route.clone(), posting, cancel.child_token()),
                None => self.notification(&m, route),
            }
            return None;
        }
        let obj = m.as_object_mut()?;
        let mine = match obj.get("id") {
            Some(Value::String(s)) => s == id,
            None | Some(Value::Null) => obj.contains_key("error"),
            Some(_) => false,
        };
        if !mine {
            return None;
        }
        if let Some(result) = obj.remove("result") {
            return Some(Forwarded::Result(result));
        }
        match obj.remove("error") {
            Some(Value::Object(mut e)) => Some(Forwarded::Error {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(crate::jsonrpc::code::INTERNAL),
                message: match e.remove("message") {
                    Some(Value::String(s)) => s,
                    _ => "the server sent an error without a message".to_string(),
                },
                data: e.remove("data"),
            }),
            _ => Some(Forwarded::Broken("the server answered the call with neither a result nor an error".into())),
        }
    }

    fn notification(&self, n: &Value, route: &Arc<CallRoute>) {
        let method = n.get("method").and_then(Value::as_str).unwrap_or("");
        let params = n.get("params");
        match method {
            "notifications/progress" => {
                if let Some(p) =
                    params.and_then(|p| serde_json::from_value::<ProgressNotificationParam>(p.clone()).ok())
                {
                    deliver_progress(route, p);
                }
            }
            "notifications/message" => self.handler.log_line(params.unwrap_or(&Value::Null), Some(route.clone())),
            "notifications/tools/list_changed" => self.handler.tools_changed(),
            "notifications/resources/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/updated" => self.handler.to_session(method, params),
            _ => {}
        }
    }

    /// A request to the client on the call's stream: answered in a task of its own (the
    /// upstream keeps the stream open until it has the answer), the answer posted back.
    fn request(&self, rid: Value, req: Value, route: Arc<CallRoute>, posting: &Posting, ct: CancellationToken) {
        let method = req.get("method").and_then(Value::as_str).unwrap_or("").to_string();
        let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
        let (handler, client, uri) = (self.handler.clone(), self.raw.clone(), self.uri.clone());
        let posting = posting.clone();
        tokio::spawn(async move {
            let answer = match method.as_str() {
                "ping" => json!({"jsonrpc": "2.0", "id": rid, "result": {}}),
                _ => match handler.request_for_call(&method, params, Some(route), ct).await {
                    Ok(v) => json!({"jsonrpc": "2.0", "id": rid, "result": v}),
                    Err(e) => json!({"jsonrpc": "2.0", "id": rid, "error": e}),
                },
            };
            let Ok(body) = serde_json::to_vec(&answer) else { return };
            match raw::post(&client, &uri, &posting, body, raw::ERROR_BODY_MAX).await {
                Ok(Answer::Accepted | Answer::Json(_) | Answer::Sse(_)) => {}
                Ok(Answer::Expired) => tracing::debug!(method, "answering an MCP server's request: session gone"),
                Err(e) => tracing::debug!(error = %e, method, "answering an MCP server's request failed"),
            }
        });
    }
}

async fn cancel_upstream(peer: &Peer<RoleClient>, id: &RequestId, why: &str) {
    let n = CancelledNotification::new(CancelledNotificationParam::new(Some(id.clone()), Some(why.to_string())));
    let _ = peer.send_notification(ClientNotification::CancelledNotification(n)).await;
}
