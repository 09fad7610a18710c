//! What an upstream sends the sidecar as its client: requests for the client (elicitation,
//! sampling, roots: forwarded by `reverse.rs`, under policy), progress (forwarded only with
//! the client's own progress token), log lines, and list changes.
//!
//! Routing: a request or progress about one call goes on that call's answer stream; with
//! HTTP, rmcp marks which of our requests a server request arrived under
//! (`InboundStreamOrigin`); over stdio (no marker) and for log lines, the one call in flight
//! on this connection, if exactly one is; everything else goes on the session's GET stream.

// Sampling, roots and logging are part of MCP 2025-11-25, the protocol served; rmcp marks
// them deprecated for 2026-07-28 (SEP-2577).
#![allow(deprecated)]

use std::sync::{Arc, Weak};

use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, ErrorCode, ErrorData, Implementation, ListRootsResult, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProtocolVersion, ResourceUpdatedNotificationParam,
};
use rmcp::service::{InboundStreamOrigin, NotificationContext, RequestContext};
use rmcp::{ClientHandler, RoleClient};
use serde_json::{json, Value};

use super::conn::{CallRoute, Routes};
use crate::jsonrpc;
use crate::session::Session;
use crate::sse::Out;
use crate::State;

/// The client side the sidecar plays towards one upstream, for one MCP session.
#[derive(Clone)]
pub(crate) struct Handler {
    state: Weak<State>,
    session: Weak<Session>,
    server: usize,
    routes: Arc<Routes>,
    caps: ClientCapabilities,
}

impl Handler {
    pub fn new(st: &Arc<State>, sess: &Arc<Session>, server: usize, routes: Arc<Routes>) -> Handler {
        Handler { state: Arc::downgrade(st), session: Arc::downgrade(sess), server, routes, caps: sess.upstream_caps() }
    }

    fn parts(&self) -> Result<(Arc<State>, Arc<Session>), ErrorData> {
        match (self.state.upgrade(), self.session.upgrade()) {
            (Some(st), Some(s)) => Ok((st, s)),
            _ => Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "the MCP session has ended", None)),
        }
    }

    /// The call a request from the upstream belongs to, when it can be told.
    async fn origin(&self, ctx: &RequestContext<RoleClient>) -> Option<Arc<CallRoute>> {
        match ctx.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => self.routes.wait_request(id).await,
            Some(InboundStreamOrigin::Unassociated) => None,
            None => self.routes.only_call(),
        }
    }

    /// Forward a request to the client (policy, audit, routing: `reverse.rs`).
    async fn to_client(
        &self,
        method: &str,
        params: Value,
        ctx: RequestContext<RoleClient>,
    ) -> Result<Value, ErrorData> {
        let route = self.origin(&ctx).await;
        self.request_for_call(method, params, route, ctx.ct).await
    }

    /// A request from the upstream, already known to belong to `route`'s call (or to none),
    /// forwarded to the client; also what `direct.rs` uses for requests on a call's stream.
    pub(crate) async fn request_for_call(
        &self,
        method: &str,
        params: Value,
        route: Option<Arc<CallRoute>>,
        ct: tokio_util::sync::CancellationToken,
    ) -> Result<Value, ErrorData> {
        let (st, sess) = self.parts()?;
        crate::reverse::forward(&st, &sess, self.server, method, params, route, ct).await
    }

    /// A log line from the upstream: on the stream of `route`'s call when there is one, else
    /// on the session's GET stream.
    pub(crate) fn log_line(&self, params: &Value, route: Option<Arc<CallRoute>>) {
        let msg = jsonrpc::notification("notifications/message", Some(params));
        match route {
            Some(route) => {
                let _ = route.out.try_send(Out::Event(msg));
            }
            None => {
                if let Some(s) = self.session.upgrade() {
                    s.notify(msg);
                }
            }
        }
    }

    /// The upstream's tool list changed.
    pub(crate) fn tools_changed(&self) {
        let (Some(st), Some(sess)) = (self.state.upgrade(), self.session.upgrade()) else { return };
        if let Some(conn) = sess.slot_of(self.server).and_then(|s| s.current()) {
            conn.tools_changed();
        }
        crate::catalog::refresh_session(&st, &sess);
    }

    /// A notification for the whole session (resource/prompt lists, resource updates),
    /// passed on as the upstream sent it.
    pub(crate) fn to_session(&self, method: &str, params: Option<&Value>) {
        if let Some(s) = self.session.upgrade() {
            s.notify(jsonrpc::notification(method, params));
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, ErrorData> {
    serde_json::from_value(v).map_err(|e| {
        ErrorData::new(ErrorCode::INTERNAL_ERROR, format!("the client's answer is not a {what} result: {e}"), None)
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(v).map_err(|e| ErrorData::new(ErrorCode::INTERNAL_ERROR, e.to_string(), None))
}

/// Send upstream progress on its call's stream, under the client's own token (dropped when
/// the client sent none, or its stream is full).
pub(crate) fn deliver_progress(route: &CallRoute, p: ProgressNotificationParam) {
    let Some(token) = &route.client_token else { return };
    let mut params = json!({"progressToken": token, "progress": p.progress});
    if let Some(t) = p.total {
        params["total"] = json!(t);
    }
    if let Some(m) = p.message {
        params["message"] = json!(m);
    }
    let _ = route.out.try_send(Out::Event(jsonrpc::notification("notifications/progress", Some(&params))));
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(self.caps.clone(), Implementation::new("clawbutler", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let v = self.to_client("elicitation/create", to_json(&request)?, ctx).await?;
        parse(v, "elicitation")
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let v = self.to_client("sampling/createMessage", to_json(&params)?, ctx).await?;
        parse(v, "sampling")
    }

    async fn list_roots(&self, ctx: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        let v = self.to_client("roots/list", json!({}), ctx).await?;
        parse(v, "roots")
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _ctx: NotificationContext<RoleClient>) {
        if let Some((route, p)) = self.routes.progress_route(params) {
            deliver_progress(&route, p);
        }
    }

    async fn on_logging_message(&self, params: LoggingMessageNotificationParam, _ctx: NotificationContext<RoleClient>) {
        let Ok(v) = serde_json::to_value(&params) else { return };
        self.log_line(&v, self.routes.only_call());
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.tools_changed();
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.to_session("notifications/resources/list_changed", None);
    }

    async fn on_prompt_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.to_session("notifications/prompts/list_changed", None);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let Ok(v) = serde_json::to_value(&params) else { return };
        self.to_session("notifications/resources/updated", Some(&v));
    }
}
