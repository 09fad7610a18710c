//! A `tools/call` to a Streamable HTTP upstream posted straight from the call's own task, on
//! the upstream session rmcp opened (its `Mcp-Session-Id` and headers, remembered by
//! [`Wire`]), instead of through rmcp's service loop and transport worker. That path costs
//! several task hand-offs per call, most of the sidecar's added latency on a tool call; this
//! one costs the HTTP exchange itself. Everything else (initialize, lists, resources,
//! prompts, the session's GET stream, DELETE, stdio servers) stays with rmcp.
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification, NumberOrString,
    ProgressNotificationParam, ProgressToken, RequestId, ServerJsonRpcMessage,
};
use rmcp::service::Peer;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use rmcp::RoleClient;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::conn::{CallRoute, Forwarded, Routes};
use super::handler::{deliver_progress, Handler};
use super::wire::{Posting, Wire};

/// Most times a call's event stream is resumed after it ended early.
const RESUMES: usize = 3;

/// Longest wait before a resume, whatever the server's `retry` says.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The direct path of one upstream connection.
pub(crate) struct Direct {
    wire: Wire,
    uri: Arc<str>,
    limits: StreamableHttpResponseLimits,
    handler: Handler,
    next: AtomicU64,
    off: AtomicBool,
}

/// How a direct exchange ended.
enum Exchange {
    Done(Forwarded),
    /// Nothing ran upstream (the session expired): send it through rmcp instead.
    NotSent,
}

impl Direct {
    pub fn new(wire: Wire, uri: &str, max_bytes: usize, handler: Handler) -> Direct {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_json_response_size = max_bytes;
        limits.max_sse_event_size = max_bytes;
        Direct { wire, uri: uri.into(), limits, handler, next: AtomicU64::new(1), off: AtomicBool::new(false) }
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
        let msg = json!({"jsonrpc": "2.0", "id": &*key, "method": "tools/call",
                         "params": {"name": tool, "arguments": args, "_meta": meta}});
        let msg: ClientJsonRpcMessage = serde_json::from_value(msg).ok()?;
        let id = RequestId::String(key.clone());
        let token = ProgressToken(NumberOrString::String(key));
        for p in routes.register(&id, &token, route.clone()) {
            deliver_progress(&route, p);
        }
        let exchange = self.exchange(&posting, msg, &id, &route, cancel);
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
        msg: ClientJsonRpcMessage,
        id: &RequestId,
        route: &Arc<CallRoute>,
        cancel: &CancellationToken,
    ) -> Exchange {
        let sent = self
            .wire
            .client
            .post_message_with_response_limits(
                self.uri.clone(),
                msg,
                Some(posting.session.clone()),
                None,
                posting.headers.clone(),
                self.limits,
            )
            .await;
        match sent {
            Err(StreamableHttpError::SessionExpired) => Exchange::NotSent,
            Err(e) => Exchange::Done(Forwarded::Broken(e.to_string())),
            Ok(StreamableHttpPostResponse::Accepted) => {
                self.off.store(true, Ordering::Relaxed);
                tracing::warn!(uri = %self.uri, "an MCP server accepted a tool call without answering it on the call's stream; its calls go through rmcp from now on");
                Exchange::Done(Forwarded::Broken("the server accepted the call without answering it".into()))
            }
            Ok(StreamableHttpPostResponse::Json(m, _)) => {
                Exchange::Done(self.message(m, id, route, posting, cancel).unwrap_or_else(|| {
                    Forwarded::Broken("the server answered something other than the call's result".into())
                }))
            }
            Ok(StreamableHttpPostResponse::Sse(stream, _)) => {
                Exchange::Done(self.follow(stream, id, route, posting, cancel).await)
            }
            Ok(other) => Exchange::Done(Forwarded::Broken(format!("unexpected answer to a tool call: {other:?}"))),
        }
    }

    /// Read a call's event stream until its result, resuming it when it ends early.
    async fn follow(
        &self,
        mut stream: rmcp::transport::common::client_side_sse::BoxedSseResponse,
        id: &RequestId,
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
                let Ok(m) = serde_json::from_str::<ServerJsonRpcMessage>(&data) else {
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
                    self.limits.max_sse_event_size,
                )
                .await
            {
                Ok(s) => stream = s,
                Err(e) => return Forwarded::Broken(format!("resuming the call's stream failed: {e}")),
            }
        }
    }

    /// One message from the upstream about this call: `Some` when it ends the call.
    fn message(
        &self,
        m: ServerJsonRpcMessage,
        id: &RequestId,
        route: &Arc<CallRoute>,
        posting: &Posting,
        cancel: &CancellationToken,
    ) -> Option<Forwarded> {
        match m {
            ServerJsonRpcMessage::Response(r) if r.id == *id => Some(match serde_json::to_value(&r.result) {
                Ok(v) => Forwarded::Result(v),
                Err(e) => Forwarded::Broken(format!("unreadable result: {e}")),
            }),
            ServerJsonRpcMessage::Error(e) if e.id.as_ref().is_none_or(|i| i == id) => Some(Forwarded::Error {
                code: i64::from(e.error.code.0),
                message: e.error.message.to_string(),
                data: e.error.data,
            }),
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_) => None,
            ServerJsonRpcMessage::Notification(n) => {
                let Ok(v) = serde_json::to_value(&n.notification) else { return None };
                self.notification(&v, route);
                None
            }
            ServerJsonRpcMessage::Request(r) => {
                let Ok(v) = serde_json::to_value(&r.request) else { return None };
                self.request(r.id, v, route.clone(), posting, cancel.child_token());
                None
            }
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
    fn request(&self, rid: RequestId, req: Value, route: Arc<CallRoute>, posting: &Posting, ct: CancellationToken) {
        let method = req.get("method").and_then(Value::as_str).unwrap_or("").to_string();
        let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
        let (handler, client, uri) = (self.handler.clone(), self.wire.client.clone(), self.uri.clone());
        let (session, headers) = (posting.session.clone(), posting.headers.clone());
        tokio::spawn(async move {
            let answer = match method.as_str() {
                "ping" => json!({"jsonrpc": "2.0", "id": rid, "result": {}}),
                _ => match handler.request_for_call(&method, params, Some(route), ct).await {
                    Ok(v) => json!({"jsonrpc": "2.0", "id": rid, "result": v}),
                    Err(e) => json!({"jsonrpc": "2.0", "id": rid, "error": e}),
                },
            };
            let Ok(msg) = serde_json::from_value::<ClientJsonRpcMessage>(answer) else { return };
            if let Err(e) = client.post_message(uri, msg, Some(session), None, headers).await {
                tracing::debug!(error = %e, method, "answering an MCP server's request failed");
            }
        });
    }
}

async fn cancel_upstream(peer: &Peer<RoleClient>, id: &RequestId, why: &str) {
    let n = CancelledNotification::new(CancelledNotificationParam::new(Some(id.clone()), Some(why.to_string())));
    let _ = peer.send_notification(ClientNotification::CancelledNotification(n)).await;
}
