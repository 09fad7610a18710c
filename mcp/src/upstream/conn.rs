//! One live rmcp client session to an upstream, and what the sidecar routes through it: which
//! downstream call each upstream request id and progress token belongs to, so progress,
//! logs and requests from the upstream reach the stream of the call they are about.
//!
//! Race kept safe: rmcp picks a request's id and progress token when it sends it, so the
//! upstream can answer with progress before the route is registered. Progress for a token
//! not (yet) routed is parked briefly and delivered when the route arrives; a request from
//! the upstream waits up to a second for its route ([`Routes::wait_request`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CancelledNotification, CancelledNotificationParam, ClientNotification, ClientRequest,
    MetaObject, ProgressNotificationParam, ProgressToken, Request, RequestId, RequestMetaObject, ServerPeerInfo,
    ServerResult, Tool,
};
use rmcp::service::{Peer, PeerRequestOptions, RunningService};
use rmcp::RoleClient;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::handler::Handler;
use crate::sse::Out;

/// Where messages about one forwarded call go.
pub(crate) struct CallRoute {
    pub out: mpsc::Sender<Out>,
    /// The client's own progress token, when it sent one (progress is forwarded only then).
    pub client_token: Option<Value>,
}

/// Parked progress for a token whose route is not registered yet (bounded).
const PARKED_MAX: usize = 64;

#[derive(Default)]
pub(crate) struct Routes {
    by_request: Mutex<HashMap<RequestId, Arc<CallRoute>>>,
    by_token: Mutex<HashMap<ProgressToken, Arc<CallRoute>>>,
    parked: Mutex<Vec<(ProgressToken, ProgressNotificationParam)>>,
    registered: Notify,
}

impl Routes {
    pub(super) fn register(
        &self,
        id: &RequestId,
        token: &ProgressToken,
        route: Arc<CallRoute>,
    ) -> Vec<ProgressNotificationParam> {
        if let Ok(mut m) = self.by_request.lock() {
            m.insert(id.clone(), route.clone());
        }
        let parked = {
            // Same lock order as `progress_route`: by_token, then parked.
            let mut t = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
            t.insert(token.clone(), route);
            let mut p = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *p).into_iter().partition(|(t, _)| t == token);
            *p = rest;
            mine.into_iter().map(|(_, n)| n).collect()
        };
        self.registered.notify_waiters();
        parked
    }

    pub(super) fn unregister(&self, id: &RequestId, token: &ProgressToken) {
        if let Ok(mut m) = self.by_request.lock() {
            m.remove(id);
        }
        if let Ok(mut m) = self.by_token.lock() {
            m.remove(token);
        }
    }

    /// The route of a progress token, or `None` after parking the notification.
    pub fn progress_route(&self, p: ProgressNotificationParam) -> Option<(Arc<CallRoute>, ProgressNotificationParam)> {
        let t = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = t.get(&p.progress_token) {
            return Some((r.clone(), p));
        }
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if parked.len() < PARKED_MAX {
            parked.push((p.progress_token.clone(), p));
        }
        None
    }

    /// The route of the call an upstream request arrived under, waiting up to a second for it
    /// to be registered.
    pub async fn wait_request(&self, id: &RequestId) -> Option<Arc<CallRoute>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let wait = self.registered.notified();
            if let Some(r) = self.by_request.lock().ok().and_then(|m| m.get(id).cloned()) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return None;
            }
        }
    }

    /// The route of the only call in flight on this connection, if exactly one is.
    pub fn only_call(&self) -> Option<Arc<CallRoute>> {
        let m = self.by_request.lock().ok()?;
        if m.len() == 1 {
            return m.values().next().cloned();
        }
        None
    }
}

/// How a forwarded call ended.
pub(crate) enum Forwarded {
    /// The upstream's result, as JSON.
    Result(Value),
    /// The upstream's JSON-RPC error (code, message, data), passed on as it is.
    Error { code: i64, message: String, data: Option<Value> },
    /// No answer within the server's `timeout_s` (cancelled upstream).
    Timeout,
    /// The client cancelled; the upstream was told.
    Cancelled,
    /// The connection failed (the upstream died, or the transport broke).
    Broken(String),
}

/// A live client session to one upstream.
pub(crate) struct Conn {
    pub peer: Peer<RoleClient>,
    pub info: Arc<ServerPeerInfo>,
    pub routes: Arc<Routes>,
    /// Streamable HTTP upstreams: `tools/call` posted from the call's own task.
    direct: Option<super::direct::Direct>,
    service: Mutex<Option<RunningService<RoleClient, Handler>>>,
    /// The server's tool list (all pages) and the list generation it belongs to; a change
    /// announced by the server bumps the generation, so a fetch that raced it is not kept.
    tools: Mutex<(u64, Option<Arc<Vec<Tool>>>)>,
}

impl Conn {
    pub fn new(
        service: RunningService<RoleClient, Handler>,
        info: Arc<ServerPeerInfo>,
        routes: Arc<Routes>,
        direct: Option<super::direct::Direct>,
    ) -> Conn {
        Conn {
            peer: service.peer().clone(),
            info,
            routes,
            direct,
            service: Mutex::new(Some(service)),
            tools: Mutex::new((0, None)),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.peer.is_transport_closed()
            || self.service.lock().map(|s| s.as_ref().is_none_or(|s| s.is_closed())).unwrap_or(true)
    }

    /// End the client session in the background (HTTP: DELETE; stdio: close stdin, then
    /// SIGTERM and kill after a grace period).
    pub fn close(&self) {
        let svc = self.service.lock().ok().and_then(|mut s| s.take());
        if let Some(svc) = svc {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), svc.cancel()).await;
            });
        }
    }

    /// Forget the tool list (the server said it changed).
    pub fn tools_changed(&self) {
        let mut t = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += 1;
        t.1 = None;
    }

    /// The server's tools (every page), fetched once and kept until it says they changed.
    pub async fn tools(&self, timeout: Duration) -> Result<Arc<Vec<Tool>>, String> {
        let generation = {
            let t = self.tools.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = &t.1 {
                return Ok(list.clone());
            }
            t.0
        };
        let list = tokio::time::timeout(timeout, self.peer.list_all_tools())
            .await
            .map_err(|_| format!("tools/list took longer than {} s", timeout.as_secs()))?
            .map_err(|e| format!("tools/list failed: {e}"))?;
        let list = Arc::new(list);
        let mut t = self.tools.lock().unwrap_or_else(|p| p.into_inner());
        if t.0 == generation {
            t.1 = Some(list.clone());
        }
        Ok(list)
    }

    /// Forward a tools/call (the tool's own name, its arguments, the client's `_meta` without
    /// its progress token) and wait for its end, the client's cancel or `timeout`. HTTP
    /// upstreams take the direct path (`direct.rs`) when they can, else rmcp's.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_tool(
        &self,
        tool: &str,
        args: &serde_json::Map<String, Value>,
        meta: Option<serde_json::Map<String, Value>>,
        route: Arc<CallRoute>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Forwarded {
        if let Some(d) = &self.direct {
            let r = d.call_tool(&self.peer, &self.routes, tool, args, meta.clone(), route.clone(), timeout, cancel);
            if let Some(f) = r.await {
                return f;
            }
        }
        let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(args.clone());
        if let Some(m) = meta.filter(|m| !m.is_empty()) {
            params.meta = Some(RequestMetaObject(MetaObject(m)));
        }
        self.call_tool_rmcp(params, route, timeout, cancel).await
    }

    async fn call_tool_rmcp(
        &self,
        params: CallToolRequestParams,
        route: Arc<CallRoute>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Forwarded {
        let req = ClientRequest::CallToolRequest(Request::new(params));
        let handle = match self.peer.send_request_with_option(req, PeerRequestOptions::with_timeout(timeout)).await {
            Ok(h) => h,
            Err(e) => return Forwarded::Broken(e.to_string()),
        };
        let (id, token) = (handle.id.clone(), handle.progress_token.clone());
        for p in self.routes.register(&id, &token, route.clone()) {
            super::handler::deliver_progress(&route, p);
        }
        let out = tokio::select! {
            r = handle.await_response() => match r {
                Ok(result) => match serde_json::to_value(&result) {
                    Ok(v) => Forwarded::Result(v),
                    Err(e) => Forwarded::Broken(format!("unreadable result: {e}")),
                },
                Err(e) => from_service_error(e),
            },
            _ = cancel.cancelled() => {
                let n = CancelledNotification::new(CancelledNotificationParam::new(
                    Some(id.clone()),
                    Some("cancelled by the client".into()),
                ));
                let _ = self.peer.send_notification(ClientNotification::CancelledNotification(n)).await;
                Forwarded::Cancelled
            }
        };
        // rmcp hands each notification to a task of its own but the response straight to us,
        // so the upstream's last progress or log message (sent before its result) may still be
        // on its way: let those tasks run before the route goes and the final answer is sent.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        self.routes.unregister(&id, &token);
        out
    }

    /// Forward any other request (its method and params as the client sent them) and return
    /// the result as JSON, or the error as (code, message, data).
    pub async fn forward(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, Forwarded> {
        let req: ClientRequest =
            serde_json::from_value(serde_json::json!({"method": method, "params": params})).map_err(|e| {
                Forwarded::Error { code: crate::jsonrpc::code::INVALID_PARAMS, message: e.to_string(), data: None }
            })?;
        let handle = self
            .peer
            .send_request_with_option(req, PeerRequestOptions::with_timeout(timeout))
            .await
            .map_err(|e| Forwarded::Broken(e.to_string()))?;
        match handle.await_response().await {
            Ok(r) => result_json(&r).map_err(Forwarded::Broken),
            Err(e) => Err(from_service_error(e)),
        }
    }

    /// Send a notification (roots list changed, ...) as the client sent it; failures are
    /// only logged.
    pub async fn notify(&self, method: &str, params: Value) {
        let n: Result<ClientNotification, _> =
            serde_json::from_value(serde_json::json!({"method": method, "params": params}));
        match n {
            Ok(n) => {
                if let Err(e) = self.peer.send_notification(n).await {
                    tracing::debug!(error = %e, method, "forwarding a notification upstream failed");
                }
            }
            Err(e) => tracing::debug!(error = %e, method, "notification not forwarded"),
        }
    }
}

fn result_json(r: &ServerResult) -> Result<Value, String> {
    serde_json::to_value(r).map_err(|e| format!("unreadable result: {e}"))
}

fn from_service_error(e: rmcp::ServiceError) -> Forwarded {
    match e {
        rmcp::ServiceError::McpError(err) => {
            Forwarded::Error { code: i64::from(err.code.0), message: err.message.to_string(), data: err.data }
        }
        rmcp::ServiceError::Timeout { .. } => Forwarded::Timeout,
        other => Forwarded::Broken(other.to_string()),
    }
}
