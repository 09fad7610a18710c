//! Critical imports wait for a human, as critical rollbacks do (`config_safety::approval`,
//! whose [`Gateway::hold_change`] this uses): an import whose preview holds a critical change
//! becomes an approval of kind `config_import` (agent `@global`: a package touches the whole
//! gateway), the API answers 202 with where to poll, and once allowed the import runs again on
//! the same request, but only if the gateway is still what the approver saw: the same
//! `config.get` hash and the same planned cron and file operations. Anything else is a
//! conflict and nothing is applied.
//!
//! The request (package bytes, key, filled secrets) stays in the waiter's memory only; it is
//! never stored, so a held import does not survive a restart (it is cancelled at start).

use std::sync::Arc;

use decision::CallKind;
use governance::backups::{BackupError as E, ImportRequest};
use serde_json::{json, Value};

use crate::config_safety::approval::{change_heads, critical_paths, critical_summary, Apply, HoldSpec, Settled};
use crate::config_safety::classify::SemanticChange;
use crate::config_safety::scope::GLOBAL;
use crate::Gateway;

/// The rule named on a held import.
const RULE: &str = "config_safety.critical_import";

/// Where a held import is polled (`{approval_id}` appended).
const POLL: &str = "/api/v1/backups/import";

/// What the approver saw: the preview of a held import and the hash it was planned on.
pub(crate) struct SeenImport {
    pub approval_id: String,
    hash: String,
    preview: Value,
}

impl SeenImport {
    /// The gateway is still what the approver saw: same config hash, and the import would
    /// make the same changes (config, cron jobs, files).
    pub(super) fn still(&self, hash: &str, preview: &Value) -> bool {
        let same = |k: &str| self.preview.get(k) == preview.get(k);
        self.hash == hash && ["changes", "cron", "files", "skipped", "unfilled_references"].into_iter().all(same)
    }
}

/// The approval's subject: the package, the strategy, and every change by path, group and
/// risk, the cron jobs and files by name; never a value.
fn subject(req: &ImportRequest, actor: &str, preview: &Value, changes: &[SemanticChange]) -> Value {
    let package = preview["package"].as_str().unwrap_or("(uploaded)");
    json!({
        "import": format!("{} import of backup package {package}", req.strategy),
        "package": package, "intent": preview["intent"], "strategy": req.strategy,
        "agents": req.agents, "sections": req.sections, "requested_by": actor,
        "critical_paths": critical_paths(changes),
        "changes": change_heads(changes),
        "cron": preview["cron"], "files": preview["files"],
        "skipped": preview["skipped"].as_array().into_iter().flatten().map(|s| s["path"].clone()).collect::<Vec<_>>(),
    })
}

impl Gateway {
    /// Put a critical import in the approval inbox; the answer the API gives with 202.
    pub(super) fn hold_import(
        &self,
        req: ImportRequest,
        actor: &str,
        preview: Value,
        changes: &[SemanticChange],
        summary: &str,
    ) -> Result<Value, E> {
        let subject = subject(&req, actor, &preview, changes);
        let hash = preview["base_hash"].as_str().unwrap_or_default().to_string();
        let spec = HoldSpec {
            kind: CallKind::ConfigImport,
            agent: GLOBAL.to_string(),
            rule: RULE,
            reason: format!("{summary}; it holds {}: a human must approve it", critical_summary(&subject)),
            grant_pattern: format!("package {}", subject["package"].as_str().unwrap_or_default()),
            record: json!({"change": "import", "agent": GLOBAL, "package": subject["package"],
                           "strategy": req.strategy, "base_hash": hash}),
            subject,
            poll_prefix: POLL.to_string(),
            held: audit::Outcome::ImportHeld,
            refused: audit::Outcome::ImportRefused,
            what: format!(
                "the {} import of package {}",
                req.strategy,
                preview["package"].as_str().unwrap_or("(uploaded)")
            ),
            requested_by: actor.to_string(),
            plan_key: "preview",
            plan: preview.clone(),
        };
        let apply: Apply = Box::new(move |me: Arc<Gateway>, actor: String, id: String| {
            Box::pin(async move {
                let seen = SeenImport { approval_id: id, hash, preview };
                match me.import_inner(req, &actor, Some(&seen)).await {
                    Ok(v) => Settled {
                        status: if v["complete"] == false { "incomplete" } else { "applied" },
                        extra: json!({"complete": v["complete"], "errors": v["errors"],
                                      "not_restored": v["not_restored"], "checkpoint": v["checkpoint"],
                                      "took_ms": v["took_ms"]}),
                    },
                    Err(E::Conflict(why)) => Settled { status: "conflict", extra: json!({"why": why}) },
                    Err(e) => Settled { status: "failed", extra: json!({"why": e.to_string()}) },
                }
            })
        });
        self.hold_change(spec, apply).map_err(E::Store)
    }

    /// A held import's record, with its approval as it is now.
    pub(crate) fn held_import(&self, approval_id: &str) -> Result<Value, E> {
        self.held_change(approval_id, |r| r["change"] == "import")
            .map_err(E::Store)?
            .ok_or_else(|| E::NotFound(format!("no held import '{approval_id}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_safety::classify::semantic_diff;

    #[test]
    fn the_subject_names_paths_never_values() {
        let live = json!({"tools": {"deny": ["exec"]}, "models": {"providers": {"p": {"apiKey": "sk-live-1"}}}});
        let pkg =
            json!({"tools": {}, "models": {"providers": {"p": {"apiKey": "sk-pkg-2", "baseUrl": "http://evil"}}}});
        let changes = semantic_diff(&live, &pkg);
        let req: ImportRequest =
            serde_json::from_value(json!({"id": "x", "passphrase": "pw-secret", "strategy": "exact_restore"})).unwrap();
        let preview = json!({"package": "x", "intent": "backup", "cron": {"add": ["main/nightly"]},
                             "files": [{"agent": "main", "name": "SOUL.md"}], "skipped": []});
        let s = subject(&req, "admin", &preview, &changes);
        let text = s.to_string();
        for secret in ["sk-live-1", "sk-pkg-2", "http://evil", "pw-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let critical = s["critical_paths"].as_array().unwrap();
        assert!(critical.iter().any(|p| p == "tools.deny"), "{s}");
        assert!(critical.iter().any(|p| p == "models.providers.p.baseUrl"), "{s}");
        assert_eq!(s["import"], "exact_restore import of backup package x");
        assert_eq!(s["files"][0]["name"], "SOUL.md");
    }

    #[test]
    fn only_the_same_plan_on_the_same_hash_is_still_what_was_seen() {
        let preview = json!({"changes": [{"path": "tools"}], "cron": {"add": []}, "files": [], "skipped": []});
        let seen = SeenImport { approval_id: "a".into(), hash: "h1".into(), preview: preview.clone() };
        assert!(seen.still("h1", &preview));
        assert!(!seen.still("h2", &preview), "another config hash");
        let mut more_files = preview.clone();
        more_files["files"] = json!([{"agent": "main", "name": "SOUL.md"}]);
        assert!(!seen.still("h1", &more_files), "a file edited since would be overwritten");
    }
}
