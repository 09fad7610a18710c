//! Workspace identity files (`AGENTS.md`, `SOUL.md`, ...), read over the gateway's own RPCs
//! (`agents.files.list`, then `agents.files.get` for each present file). Backups carry every
//! present file; the version history keeps the identity set ([`HISTORY_FILES`]) in the
//! `workspace_bundle` scope, under [`FILES_KEY`] in the agent's slice.
//!
//! The history reads on every snapshot (every 30 s at least), so it keeps what it read last
//! and gets a file again only when `agents.files.list` shows another size or mtime for it.
//! A list without an mtime never counts as unchanged.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::{Gateway, GatewayError};

/// Where an agent's workspace files sit in its slice (not a config key): `{name: content}`.
pub const FILES_KEY: &str = "$workspace_files";

/// The files the version history keeps (where present and readable).
pub const HISTORY_FILES: [&str; 5] = ["AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md", "MEMORY.md"];

/// The agent writes its own memory as it works: kept as versions, never counted as drift.
pub const SELF_WRITTEN: &str = "MEMORY.md";

/// A file's content by name.
pub type Files = BTreeMap<String, String>;

/// One agent's files as read last: name -> (size and mtime, content).
type Seen = BTreeMap<String, (String, String)>;

/// What the history read last, per agent.
#[derive(Default)]
pub(crate) struct FileCache {
    seen: Mutex<BTreeMap<String, Seen>>,
}

impl FileCache {
    fn get(&self, agent: &str) -> Seen {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(agent).cloned().unwrap_or_default()
    }

    fn put(&self, agent: &str, files: Seen) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(agent.to_string(), files);
    }
}

/// A listed file's size and mtime, when the list gives an mtime.
fn stamp(f: &Value) -> Option<String> {
    let at = f.get("updatedAtMs").filter(|v| v.is_number())?;
    Some(format!("{}@{at}", f.get("size").unwrap_or(&Value::Null)))
}

impl Gateway {
    /// The present workspace files of agent `id` whose names `keep` accepts. With a cache, a
    /// file listed with the size and mtime it had last time is not read again.
    pub(crate) async fn agent_files(
        &self,
        id: &str,
        keep: impl Fn(&str) -> bool,
        cache: Option<&FileCache>,
    ) -> Result<Files, GatewayError> {
        let list = self.link.call("agents.files.list", json!({"agentId": id})).await?;
        let known = cache.map(|c| c.get(id)).unwrap_or_default();
        let mut out = Files::new();
        let mut seen = BTreeMap::new();
        for f in list.get("files").and_then(Value::as_array).into_iter().flatten() {
            let (Some(name), false) = (f.get("name").and_then(Value::as_str), f["missing"] == true) else { continue };
            if !keep(name) {
                continue;
            }
            let st = stamp(f);
            let cached = known.get(name).filter(|(k, _)| st.as_ref() == Some(k)).map(|(_, c)| c.clone());
            let content = match cached {
                Some(c) => Some(c),
                None => {
                    let got = self.link.call("agents.files.get", json!({"agentId": id, "name": name})).await?;
                    got.pointer("/file/content").and_then(Value::as_str).map(str::to_string)
                }
            };
            if let Some(c) = content {
                if let Some(s) = st {
                    seen.insert(name.to_string(), (s, c.clone()));
                }
                out.insert(name.to_string(), c);
            }
        }
        if let Some(c) = cache {
            c.put(id, seen);
        }
        Ok(out)
    }

    /// The history's files of every agent in `ids` (an agent whose files cannot be read has
    /// none in this snapshot: logged, and its previous files are not claimed removed).
    pub(crate) async fn history_files(&self, ids: &[String]) -> BTreeMap<String, Option<Files>> {
        let mut out = BTreeMap::new();
        for id in ids {
            let got = self.agent_files(id, |n| HISTORY_FILES.contains(&n), Some(&self.config.files)).await;
            let files = match got {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::debug!(agent = %id, error = %e, "reading workspace files for a config snapshot failed");
                    None
                }
            };
            out.insert(id.clone(), files);
        }
        out
    }

    /// Write back the files of `target` that differ from `current` (a rollback), each only if
    /// it still holds what the plan saw (`expectedHash`): a file edited meanwhile is a
    /// conflict, never overwritten. A file the target lacks stays (OpenClaw cannot delete one).
    pub(crate) async fn restore_files(
        &self,
        agent: &str,
        current: &Value,
        target: &Value,
    ) -> Result<Vec<String>, GatewayError> {
        let mut written = Vec::new();
        let Some(want) = target.get(FILES_KEY).and_then(Value::as_object) else { return Ok(written) };
        for (name, content) in want {
            let Some(content) = content.as_str() else { continue };
            let now = current.get(FILES_KEY).and_then(|f| f.get(name)).and_then(Value::as_str);
            if now == Some(content) {
                continue;
            }
            let got = self.link.call("agents.files.get", json!({"agentId": agent, "name": name})).await?;
            if got.pointer("/file/content").and_then(Value::as_str) != now {
                return Err(GatewayError::Attach(format!("{name} changed since it was read for this rollback")));
            }
            let mut p = json!({"agentId": agent, "name": name, "content": content});
            if let Some(h) = got.pointer("/file/hash").filter(|h| h.is_string()) {
                p["expectedHash"] = h.clone();
            }
            self.link.call("agents.files.set", p).await?;
            written.push(name.clone());
        }
        Ok(written)
    }
}
