//! The tool list an agent sees in one session: every server it may use, each server's tools
//! (all pages, followed with the server's cursors) that pass its `tool_filter` and that the
//! policy does not always deny for this agent, under their namespaced names (`names.rs`).
//! The list is served as one page.
//!
//! "Always denied" is decided at list time with `tool.args` null and `mcp.phase` `list`
//! (docs/policy-input.md): a rule that denies or holds depending on arguments cannot fire
//! there, so such tools stay listed and are decided per call. A server that fails is left
//! out (its health says why); when a list changes (policy reload, a server's own change,
//! a server back online) a client that was given the old one gets
//! `notifications/tools/list_changed`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use decision::{Action, CallKind, McpInput, McpPhase, PolicyInput, ToolInput};
use serde_json::Value;

use crate::names;
use crate::session::Session;
use crate::State;

/// One listed tool.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Config index of its server.
    pub server: usize,
    /// The server's own name for it.
    pub tool: String,
    pub cost_usd: Option<f64>,
}

/// A session's tool list.
pub(crate) struct Catalog {
    /// The tools as listed (the servers' tool objects, names replaced).
    pub tools: Vec<Value>,
    pub by_name: HashMap<String, Entry>,
    pub hash: u64,
}

/// The session's list, built when it has none.
pub(crate) async fn get(st: &Arc<State>, sess: &Arc<Session>) -> Arc<Catalog> {
    if let Some(c) = sess.catalog.lock().ok().and_then(|c| c.clone()) {
        return c;
    }
    let c = build(st, sess).await;
    if let Ok(mut slot) = sess.catalog.lock() {
        *slot = Some(c.clone());
    }
    c
}

/// Whether the policy lists a tool (any decision but deny at list time).
fn listed(st: &State, sess: &Session, server: &str, tool: &str, grants: &[decision::GrantInput]) -> bool {
    let mut input = PolicyInput::new(CallKind::ToolCall, &sess.agent, &decision::new_trace_id());
    input.session = Some(sess.id.clone());
    input.tool = Some(ToolInput { server: Some(server.to_string()), name: tool.to_string(), args: Value::Null });
    input.mcp = Some(McpInput { phase: McpPhase::List, calls: Vec::new(), secret_seen: false });
    input.grants = grants.to_vec();
    st.parts.policy.evaluate(&input).action != Action::Deny
}

/// Build the list now (connecting servers that are not connected yet).
pub(crate) async fn build(st: &Arc<State>, sess: &Arc<Session>) -> Arc<Catalog> {
    let timeout = Duration::from_secs(st.settings.connect_timeout_s.max(1) * 2);
    let mut fetches = tokio::task::JoinSet::new();
    for i in 0..sess.slots.len() {
        let (st, sess) = (st.clone(), sess.clone());
        fetches.spawn(async move {
            let slot = &sess.slots[i];
            let conn = slot.get(&st, &sess).await.ok()?;
            match conn.tools(timeout).await {
                Ok(t) => {
                    slot.server.ok();
                    if let Ok(mut last) = slot.server.last_tools.lock() {
                        *last = t.as_ref().clone();
                    }
                    Some((i, t))
                }
                Err(e) => {
                    slot.server.degraded("protocol", &e);
                    None
                }
            }
        });
    }
    let mut lists = vec![None; sess.slots.len()];
    while let Some(done) = fetches.join_next().await {
        if let Ok(Some((i, t))) = done {
            lists[i] = Some(t);
        }
    }
    let budget = names::budget(&sess.agent);
    let grants = st.parts.broker.grants_for(&sess.agent);
    let mut tools = Vec::new();
    let mut by_name = HashMap::new();
    for (slot, list) in sess.slots.iter().zip(lists) {
        let Some(list) = list else { continue };
        let server = &slot.server;
        let prefix = server.cfg.tool_prefix();
        for t in list.iter() {
            if !server.offers(&t.name) || !listed(st, sess, server.name(), &t.name, &grants) {
                continue;
            }
            let mut name = names::exposed(&prefix, &t.name, budget);
            if by_name.contains_key(&name) {
                name = names::disambiguated(&name, server.name(), &t.name, budget);
            }
            let Ok(mut v) = serde_json::to_value(t) else { continue };
            v["name"] = Value::String(name.clone());
            tools.push(v);
            by_name.insert(
                name,
                Entry { server: server.index, tool: t.name.to_string(), cost_usd: server.cfg.cost_of(&t.name) },
            );
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&tools).unwrap_or_default().hash(&mut h);
    // Never 0: 0 means "never listed".
    let hash = h.finish().max(1);
    Arc::new(Catalog { tools, by_name, hash })
}

/// Rebuild a session's list in the background and tell its client when the list it was
/// given changed.
pub(crate) fn refresh_session(st: &Arc<State>, sess: &Arc<Session>) {
    let (st, sess) = (st.clone(), sess.clone());
    tokio::spawn(async move {
        if sess.closed.is_cancelled() {
            return;
        }
        let c = build(&st, &sess).await;
        let hash = c.hash;
        if let Ok(mut slot) = sess.catalog.lock() {
            *slot = Some(c);
        }
        let given = sess.listed_hash.load(Ordering::Acquire);
        if given != 0 && given != hash {
            sess.notify(crate::jsonrpc::notification("notifications/tools/list_changed", None));
        }
    });
}

/// After a policy reload: refresh every session that has a list.
pub(crate) fn refresh_all(st: &Arc<State>) {
    for s in st.sessions.all() {
        let has = s.catalog.lock().map(|c| c.is_some()).unwrap_or(false);
        if has {
            refresh_session(st, &s);
        }
    }
}
