//! One function per MCP method, after the edge has checked the HTTP side and found the
//! session. `initialize` opens a session and connects the agent's servers; `tools/*` go
//! through the catalog and the call pipeline; `resources/*`, `prompts/*`,
//! `completion/complete` and `logging/setLevel` pass through to the server that owns the
//! resource or prompt (or to all, merged); `ping` is answered here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::jsonrpc::{self, code};
use crate::session::{self, Session};
use crate::sse::Out;
use crate::upstream::{Forwarded, Slot};
use crate::{call, catalog, names, State};

/// Protocol versions served (newest first); `initialize` answers the client's own when it is
/// one of them, else the newest.
pub(crate) const SUPPORTED: [&str; 2] = ["2025-11-25", "2025-06-18"];

/// How a request is answered.
pub(crate) enum Reply {
    /// JSON now (with the new session's id for `initialize`).
    Json(Bytes, Option<String>),
    /// A tool call: the future that runs it sends its messages and answer on the channel. The
    /// edge runs it inline until the answer or a first message is ready (`edge::answer`).
    Call(mpsc::Receiver<Out>, call::CallFuture),
    /// The sidecar cannot open another session now (503).
    Busy(Bytes),
}

/// Most pages followed when merging a list from one server.
const MAX_PAGES: usize = 100;

fn ok(id: &Value, v: &Value) -> Reply {
    Reply::Json(jsonrpc::result(id, v), None)
}

fn fail(id: &Value, c: i64, m: &str) -> Reply {
    Reply::Json(jsonrpc::error(id, c, m, None), None)
}

/// `initialize`: a new session for `agent` (its token `key_id`), its servers connected.
pub(crate) async fn initialize(st: &Arc<State>, agent: &str, key_id: &str, id: &Value, params: &Value) -> Reply {
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or("");
    let version = SUPPORTED.iter().find(|v| **v == asked).copied().unwrap_or(SUPPORTED[0]);
    let caps = params.get("capabilities").filter(|c| c.is_object()).cloned().unwrap_or_else(|| json!({}));
    let client: String = params
        .pointer("/clientInfo/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    if st.sessions.len() >= st.settings.max_sessions {
        match st.sessions.oldest_idle() {
            Some(old) => {
                session::close(st, &old.id, "too many sessions; the longest idle one was closed");
            }
            None => {
                return Reply::Busy(jsonrpc::error(
                    id,
                    code::SERVER,
                    "too many MCP sessions are busy; try again",
                    None,
                ));
            }
        }
    }
    let sid = match session::mint_id() {
        Ok(s) => s,
        Err(e) => return fail(id, code::INTERNAL, &format!("cannot mint a session id: {e}")),
    };
    let slots: Vec<Slot> = st.servers.iter().filter(|s| s.cfg.serves(agent)).map(|s| Slot::new(s.clone())).collect();
    let sess = Arc::new(Session::new(sid.clone(), agent, key_id, version, caps, client, slots));
    st.sessions.insert(st, sess.clone());
    let mut connects = tokio::task::JoinSet::new();
    for i in 0..sess.slots.len() {
        let (st, sess) = (st.clone(), sess.clone());
        connects.spawn(async move { sess.slots[i].get(&st, &sess).await.is_ok() });
    }
    while connects.join_next().await.is_some() {}
    let conns: Vec<_> = sess.slots.iter().filter_map(Slot::current).collect();
    let has = |f: &dyn Fn(&rmcp::model::ServerCapabilities) -> bool| conns.iter().any(|c| f(&c.info.capabilities));
    let mut capabilities = json!({"tools": {"listChanged": true}, "logging": {}});
    if has(&|c| c.resources.is_some()) {
        let subscribe = has(&|c| c.resources.as_ref().is_some_and(|r| r.subscribe == Some(true)));
        capabilities["resources"] = json!({"subscribe": subscribe, "listChanged": true});
    }
    if has(&|c| c.prompts.is_some()) {
        capabilities["prompts"] = json!({"listChanged": true});
    }
    if has(&|c| c.completions.is_some()) {
        capabilities["completions"] = json!({});
    }
    let instructions: Vec<String> = sess
        .slots
        .iter()
        .filter_map(|s| {
            s.current().and_then(|c| c.info.instructions.clone().map(|i| format!("{}: {i}", s.server.name())))
        })
        .collect();
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": "clawbutler", "title": "ClawButler", "version": env!("CARGO_PKG_VERSION")},
    });
    if !instructions.is_empty() {
        result["instructions"] = json!(instructions.join("\n\n"));
    }
    tracing::info!(agent, client = %sess.client_name, protocol = %sess.protocol, servers = sess.slots.len(), connected = conns.len(), "MCP session opened");
    Reply::Json(jsonrpc::result(id, &result), Some(sid))
}

/// A request in an open session.
pub(crate) async fn request(st: &Arc<State>, sess: &Arc<Session>, id: Value, method: &str, params: Value) -> Reply {
    match method {
        "ping" => ok(&id, &json!({})),
        "tools/list" => {
            if params.get("cursor").is_some_and(|c| !c.is_null()) {
                return fail(&id, code::INVALID_PARAMS, "invalid cursor: this server lists every tool in one page");
            }
            let cat = catalog::get(st, sess).await;
            sess.listed_hash.store(cat.hash, std::sync::atomic::Ordering::Release);
            ok(&id, &json!({"tools": cat.tools}))
        }
        "tools/call" => {
            let (tx, rx) = mpsc::channel(64);
            Reply::Call(rx, Box::pin(call::run(st.clone(), sess.clone(), id, params, tx)))
        }
        "resources/list" => merged(st, sess, &id, method, "resources", &params).await,
        "resources/templates/list" => merged(st, sess, &id, method, "resourceTemplates", &params).await,
        "prompts/list" => merged(st, sess, &id, method, "prompts", &params).await,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = params.get("uri").and_then(Value::as_str).unwrap_or("").to_string();
            match resource_owner(st, sess, &uri).await {
                Some(server) => forward_to(st, sess, &id, server, method, params).await,
                None => fail(&id, code::UPSTREAM, &format!("Resource not found: {uri}")),
            }
        }
        "prompts/get" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            match prompt_owner(st, sess, &name).await {
                Some((server, own)) => {
                    let mut p = params;
                    p["name"] = json!(own);
                    forward_to(st, sess, &id, server, method, p).await
                }
                None => fail(&id, code::INVALID_PARAMS, &format!("Unknown prompt: {name}")),
            }
        }
        "completion/complete" => complete(st, sess, id, params).await,
        "logging/setLevel" => {
            for slot in &sess.slots {
                if let Some(c) = slot.current().filter(|c| c.info.capabilities.logging.is_some()) {
                    let _ = c.forward(method, params.clone(), Duration::from_secs(10)).await;
                }
            }
            ok(&id, &json!({}))
        }
        _ => fail(&id, code::METHOD_NOT_FOUND, &format!("Method not found: {method}")),
    }
}

/// A notification in an open session.
pub(crate) async fn notification(sess: &Arc<Session>, method: &str, params: Value) {
    match method {
        "notifications/cancelled" => {
            // Unknown ids are ignored: a call that already ended, or OpenClaw's cancel of its
            // own `initialize` (id 0) long after it was answered.
            if let Some(id) = params.get("requestId") {
                if let Some(f) = sess.inflight.get(&jsonrpc::id_key(id)) {
                    f.cancel.cancel();
                }
            }
        }
        "notifications/roots/list_changed" => {
            for slot in &sess.slots {
                if let Some(c) = slot.current() {
                    c.notify(method, params.clone()).await;
                }
            }
        }
        _ => {}
    }
}

fn forwarded_error(id: &Value, f: Forwarded, server: &str) -> Reply {
    match f {
        Forwarded::Error { code, message, data } => Reply::Json(jsonrpc::error(id, code, &message, data), None),
        Forwarded::Timeout => fail(id, code::UPSTREAM, &format!("the MCP server '{server}' did not answer in time")),
        Forwarded::Broken(e) => fail(id, code::UPSTREAM, &format!("the MCP server '{server}' failed: {e}")),
        Forwarded::Result(_) | Forwarded::Cancelled => fail(id, code::INTERNAL, "unexpected answer"),
    }
}

async fn forward_to(
    st: &Arc<State>,
    sess: &Arc<Session>,
    id: &Value,
    server: usize,
    method: &str,
    params: Value,
) -> Reply {
    let Some(slot) = sess.slot_of(server) else { return fail(id, code::UPSTREAM, "no such server") };
    let conn = match slot.get(st, sess).await {
        Ok(c) => c,
        Err(e) => {
            return fail(id, code::UPSTREAM, &format!("the MCP server '{}' is not available: {e}", slot.server.name()))
        }
    };
    let timeout = Duration::from_secs(slot.server.cfg.timeout_s.max(1));
    match conn.forward(method, params, timeout).await {
        Ok(v) => ok(id, &v),
        Err(f) => forwarded_error(id, f, slot.server.name()),
    }
}

/// Every page of `method` from every server that has the capability, merged; resource URIs
/// and prompts are remembered for routing, prompt names namespaced like tools.
async fn merged(st: &Arc<State>, sess: &Arc<Session>, id: &Value, method: &str, key: &str, params: &Value) -> Reply {
    if params.get("cursor").is_some_and(|c| !c.is_null()) {
        return fail(id, code::INVALID_PARAMS, "invalid cursor: this server lists everything in one page");
    }
    let budget = names::budget(&sess.agent);
    let mut items = Vec::new();
    for slot in &sess.slots {
        let Ok(conn) = slot.get(st, sess).await else { continue };
        let caps = &conn.info.capabilities;
        let has = if key == "prompts" { caps.prompts.is_some() } else { caps.resources.is_some() };
        if !has {
            continue;
        }
        let timeout = Duration::from_secs(slot.server.cfg.timeout_s.max(1));
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let mut p = Map::new();
            if let Some(c) = &cursor {
                p.insert("cursor".into(), c.clone());
            }
            let Ok(page) = conn.forward(method, Value::Object(p), timeout).await else { break };
            let mut routing = sess.routing.lock().unwrap_or_else(|p| p.into_inner());
            for mut item in page.get(key).and_then(Value::as_array).cloned().unwrap_or_default() {
                let server = slot.server.index;
                match key {
                    "resources" => {
                        if let Some(u) = item.get("uri").and_then(Value::as_str) {
                            routing.resources.insert(u.to_string(), server);
                        }
                    }
                    "resourceTemplates" => {
                        if let Some(u) = item.get("uriTemplate").and_then(Value::as_str) {
                            routing.templates.retain(|(t, _)| t != u);
                            routing.templates.push((u.to_string(), server));
                        }
                    }
                    _ => {
                        if let Some(n) = item.get("name").and_then(Value::as_str).map(str::to_string) {
                            let exposed = names::exposed(&slot.server.cfg.tool_prefix(), &n, budget);
                            routing.prompts.insert(exposed.clone(), (server, n));
                            item["name"] = json!(exposed);
                        }
                    }
                }
                items.push(item);
            }
            cursor = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
        }
    }
    ok(id, &json!({ key: items }))
}

/// Whether `uri` matches an RFC 6570 template's literal parts (each `{...}` stands for one
/// or more characters).
fn template_matches(template: &str, uri: &str) -> bool {
    let mut lits = Vec::new();
    let mut rest = template;
    loop {
        match rest.find('{') {
            Some(o) => {
                lits.push(&rest[..o]);
                match rest[o..].find('}') {
                    Some(c) => rest = &rest[o + c + 1..],
                    None => return false,
                }
            }
            None => {
                lits.push(rest);
                break;
            }
        }
    }
    let (Some(first), Some(last)) = (lits.first(), lits.last()) else { return false };
    if lits.len() == 1 {
        return template == uri;
    }
    let Some(mut tail) = uri.strip_prefix(first) else { return false };
    for lit in &lits[1..lits.len() - 1] {
        match tail.get(1..).and_then(|t| t.find(lit)) {
            Some(off) => tail = &tail[1 + off + lit.len()..],
            None => return false,
        }
    }
    tail.len() > last.len() && tail.ends_with(last)
}

/// The server that owns `uri`: from the last lists, a template, the only server with
/// resources, or (listing again) whatever the servers say now.
async fn resource_owner(st: &Arc<State>, sess: &Arc<Session>, uri: &str) -> Option<usize> {
    let lookup = |sess: &Session| {
        let r = sess.routing.lock().unwrap_or_else(|p| p.into_inner());
        r.resources
            .get(uri)
            .copied()
            .or_else(|| r.templates.iter().find(|(t, _)| template_matches(t, uri)).map(|(_, s)| *s))
    };
    if let Some(s) = lookup(sess) {
        return Some(s);
    }
    let with_resources: Vec<usize> = sess
        .slots
        .iter()
        .filter(|s| s.current().is_some_and(|c| c.info.capabilities.resources.is_some()))
        .map(|s| s.server.index)
        .collect();
    if with_resources.len() == 1 {
        return with_resources.first().copied();
    }
    let _ = merged(st, sess, &Value::Null, "resources/list", "resources", &json!({})).await;
    let _ = merged(st, sess, &Value::Null, "resources/templates/list", "resourceTemplates", &json!({})).await;
    lookup(sess)
}

async fn prompt_owner(st: &Arc<State>, sess: &Arc<Session>, name: &str) -> Option<(usize, String)> {
    let known = |sess: &Session| sess.routing.lock().ok().and_then(|r| r.prompts.get(name).cloned());
    if let Some(p) = known(sess) {
        return Some(p);
    }
    let _ = merged(st, sess, &Value::Null, "prompts/list", "prompts", &json!({})).await;
    known(sess)
}

async fn complete(st: &Arc<State>, sess: &Arc<Session>, id: Value, params: Value) -> Reply {
    let kind = params.pointer("/ref/type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "ref/prompt" => {
            let name = params.pointer("/ref/name").and_then(Value::as_str).unwrap_or("").to_string();
            match prompt_owner(st, sess, &name).await {
                Some((server, own)) => {
                    let mut p = params;
                    p["ref"]["name"] = json!(own);
                    forward_to(st, sess, &id, server, "completion/complete", p).await
                }
                None => fail(&id, code::INVALID_PARAMS, &format!("Unknown prompt: {name}")),
            }
        }
        "ref/resource" => {
            let uri = params.pointer("/ref/uri").and_then(Value::as_str).unwrap_or("").to_string();
            match resource_owner(st, sess, &uri).await {
                Some(server) => forward_to(st, sess, &id, server, "completion/complete", params).await,
                None => fail(&id, code::UPSTREAM, &format!("Resource not found: {uri}")),
            }
        }
        _ => fail(&id, code::INVALID_PARAMS, "completion/complete needs ref.type ref/prompt or ref/resource"),
    }
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates_match_their_literal_parts() {
        assert!(template_matches("test://template/{id}/data", "test://template/42/data"));
        assert!(!template_matches("test://template/{id}/data", "test://template//data"));
        assert!(!template_matches("test://template/{id}/data", "test://other/42/data"));
        assert!(template_matches("file:///{path}", "file:///etc/hosts"));
        assert!(!template_matches("file:///{path}", "file:///"));
        assert!(template_matches("a://x", "a://x"));
    }
}
