//! The versions, in the sled tree `config_versions` (`storage::Tree::ConfigVersions`):
//! `v\0<agent>\0<version, big-endian u64>` -> a [`Version`] (JSON, never rewritten), and
//! `b\0<agent>` -> the version ClawButler made or accepted last (the drift baseline), and
//! `r\0<approval id>` -> a critical rollback or backup import held for approval and how it ended (JSON;
//! an import's has `"change": "import"`).
//! Versions start at 1 and only grow; a slice equal to the newest version is not stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::scope;

/// Who made a version's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The first version seen (accepted as the baseline).
    Initial,
    /// A config write the sidecar itself made (its hash was remembered).
    Clawbutler,
    /// Anything else: the OpenClaw CLI or UI, another client, a hand edit, `clawbutler attach`.
    Outside,
}

/// One immutable version of an agent's (or the global) slice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub agent: String,
    pub version: u64,
    /// RFC 3339.
    pub at: String,
    /// The gateway's `config.get` hash when it was read.
    pub gateway_hash: String,
    pub source: Source,
    /// `ClawButler (<token name>)` or `outside ClawButler`.
    pub actor: String,
    /// What made the sidecar read the config (`connected`, `config.changed`, `rollback`, ...).
    pub trigger: String,
    /// Content hash of each scope.
    pub scopes: BTreeMap<String, String>,
    /// Scopes whose content differs from the previous version.
    pub changed_scopes: Vec<String>,
    pub content: Value,
}

impl Version {
    /// The version without its content (list answers).
    pub fn head(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("content");
        }
        v
    }
}

/// What a new version is made of (the store numbers it).
pub struct Draft<'a> {
    pub gateway_hash: &'a str,
    pub source: Source,
    pub actor: &'a str,
    pub trigger: &'a str,
}

pub struct Versions {
    tree: sled::Tree,
}

fn prefix(agent: &str) -> Vec<u8> {
    let mut k = b"v\0".to_vec();
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k
}

fn key(agent: &str, v: u64) -> Vec<u8> {
    let mut k = prefix(agent);
    k.extend_from_slice(&v.to_be_bytes());
    k
}

fn base_key(agent: &str) -> Vec<u8> {
    let mut k = b"b\0".to_vec();
    k.extend_from_slice(agent.as_bytes());
    k
}

fn held_key(approval_id: &str) -> Vec<u8> {
    let mut k = b"r\0".to_vec();
    k.extend_from_slice(approval_id.as_bytes());
    k
}

/// The status of a rollback waiting in the approval inbox.
pub const HELD: &str = "awaiting_approval";
/// The status of an approved rollback being applied.
pub const APPLYING: &str = "applying";

impl Versions {
    pub fn new(tree: sled::Tree) -> Versions {
        Versions { tree }
    }

    fn decode(bytes: &[u8]) -> Option<Version> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn latest(&self, agent: &str) -> Result<Option<Version>, sled::Error> {
        Ok(self.tree.scan_prefix(prefix(agent)).next_back().transpose()?.and_then(|(_, v)| Self::decode(&v)))
    }

    pub fn get(&self, agent: &str, v: u64) -> Result<Option<Version>, sled::Error> {
        Ok(self.tree.get(key(agent, v))?.and_then(|b| Self::decode(&b)))
    }

    /// Every version, newest first.
    pub fn list(&self, agent: &str) -> Result<Vec<Version>, sled::Error> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix(agent)).rev() {
            if let Some(v) = Self::decode(&kv?.1) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Agents with at least one version (the global slice included).
    pub fn agents(&self) -> Result<Vec<String>, sled::Error> {
        let mut out: Vec<String> = Vec::new();
        for k in self.tree.scan_prefix(b"b\0").keys() {
            if let Ok(s) = std::str::from_utf8(&k?[2..]) {
                out.push(s.to_string());
            }
        }
        Ok(out)
    }

    /// Store `content` as the next version unless it equals the newest; the first version
    /// of an agent, and every version ClawButler made, becomes the baseline.
    pub fn append(&self, agent: &str, content: &Value, d: &Draft<'_>) -> Result<Option<Version>, sled::Error> {
        let last = self.latest(agent)?;
        if last.as_ref().is_some_and(|l| &l.content == content) {
            return Ok(None);
        }
        let scopes = scope::scope_hashes(agent, content);
        let changed_scopes = match &last {
            Some(l) => scopes.iter().filter(|(k, h)| l.scopes.get(*k) != Some(*h)).map(|(k, _)| k.clone()).collect(),
            None => scopes.keys().cloned().collect(),
        };
        // A version from before the workspace scope existed: the files seen for the first time
        // are where the history starts for them, not a change made outside.
        let files_first_seen = last.as_ref().is_some_and(|l| !l.scopes.contains_key(scope::WORKSPACE_BUNDLE))
            && changed_scopes == [scope::WORKSPACE_BUNDLE.to_string()];
        let source = if last.is_none() || files_first_seen { Source::Initial } else { d.source };
        let v = Version {
            agent: agent.to_string(),
            version: last.map_or(1, |l| l.version + 1),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            gateway_hash: d.gateway_hash.to_string(),
            source,
            actor: d.actor.to_string(),
            trigger: d.trigger.to_string(),
            scopes,
            changed_scopes,
            content: content.clone(),
        };
        let bytes = serde_json::to_vec(&v).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        self.tree.insert(key(agent, v.version), bytes)?;
        if source != Source::Outside {
            self.tree.insert(base_key(agent), v.version.to_be_bytes().to_vec())?;
        }
        Ok(Some(v))
    }

    /// The drift baseline: the version ClawButler made or accepted last.
    pub fn baseline(&self, agent: &str) -> Result<Option<Version>, sled::Error> {
        let Some(b) = self.tree.get(base_key(agent))? else { return Ok(None) };
        let n = <[u8; 8]>::try_from(b.as_ref()).map(u64::from_be_bytes).unwrap_or(0);
        self.get(agent, n)
    }

    /// Accept version `v` as the baseline.
    pub fn accept(&self, agent: &str, v: u64) -> Result<(), sled::Error> {
        self.tree.insert(base_key(agent), v.to_be_bytes().to_vec())?;
        Ok(())
    }

    /// Store (or replace) the record of a change (rollback or import) held for approval.
    pub fn put_held(&self, approval_id: &str, record: &Value) -> Result<(), sled::Error> {
        let bytes = serde_json::to_vec(record).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        self.tree.insert(held_key(approval_id), bytes)?;
        Ok(())
    }

    /// The record of a change held for approval.
    pub fn held(&self, approval_id: &str) -> Result<Option<Value>, sled::Error> {
        Ok(self.tree.get(held_key(approval_id))?.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// At start: a change still waiting belongs to a previous run, whose approval the broker
    /// has cancelled; it is never applied (an import's key was only in that run's memory), and
    /// its record says so.
    pub fn cancel_waiting(&self) -> Result<usize, sled::Error> {
        let mut n = 0;
        for kv in self.tree.scan_prefix(b"r\0") {
            let (k, v) = kv?;
            let Ok(mut rec) = serde_json::from_slice::<Value>(&v) else { continue };
            let (status, why) = match rec["status"].as_str() {
                Some(HELD) => ("cancelled", "the sidecar restarted while this change waited; nothing was applied"),
                Some(APPLYING) => {
                    ("interrupted", "the sidecar stopped while applying this change: check the config's versions")
                }
                _ => continue,
            };
            rec["status"] = Value::from(status);
            rec["why"] = Value::from(why);
            let bytes = serde_json::to_vec(&rec).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            self.tree.insert(k, bytes)?;
            n += 1;
        }
        Ok(n)
    }

    pub async fn flush(&self) -> Result<(), sled::Error> {
        self.tree.flush_async().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_grow_only_on_change_and_outside_changes_keep_the_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = Versions::new(db.open_tree("t").unwrap());
        let d = |source| Draft { gateway_hash: "h", source, actor: "outside ClawButler", trigger: "t" };
        let a = json!({"agents": {"entries": {"main": {"name": "a"}}}});
        let b = json!({"agents": {"entries": {"main": {"name": "b"}}}});
        let v1 = s.append("main", &a, &d(Source::Outside)).unwrap().unwrap();
        assert_eq!((v1.version, v1.source), (1, Source::Initial));
        assert!(s.append("main", &a, &d(Source::Outside)).unwrap().is_none(), "unchanged: no version");
        let v2 = s.append("main", &b, &d(Source::Outside)).unwrap().unwrap();
        assert_eq!((v2.version, v2.changed_scopes.clone()), (2, vec!["agent_config".to_string()]));
        assert_eq!(s.baseline("main").unwrap().unwrap().version, 1);
        let v3 = s.append("main", &a, &d(Source::Clawbutler)).unwrap().unwrap();
        assert_eq!(s.baseline("main").unwrap().unwrap().version, v3.version);
        assert_eq!(s.list("main").unwrap().iter().map(|v| v.version).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert!(s.list("mai").unwrap().is_empty(), "prefixes do not leak across agents");
        assert_eq!(s.agents().unwrap(), vec!["main".to_string()]);
    }

    #[test]
    fn a_rollback_left_waiting_by_a_previous_run_is_cancelled_never_applied() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let s = Versions::new(db.open_tree("t").unwrap());
        s.put_held("a1", &json!({"agent": "main", "status": HELD})).unwrap();
        s.put_held("a2", &json!({"agent": "main", "status": APPLYING})).unwrap();
        s.put_held("a3", &json!({"agent": "main", "status": "applied"})).unwrap();
        assert_eq!(s.cancel_waiting().unwrap(), 2);
        assert_eq!(s.held("a1").unwrap().unwrap()["status"], "cancelled");
        assert_eq!(s.held("a2").unwrap().unwrap()["status"], "interrupted");
        assert_eq!(s.held("a3").unwrap().unwrap()["status"], "applied");
        assert!(s.held("nope").unwrap().is_none());
        assert!(s.agents().unwrap().is_empty(), "held records are not agents");
    }
}
