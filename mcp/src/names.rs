//! Tool names as the client sees them. Each upstream's tools are namespaced with its prefix
//! (`<server>__` unless configured), so two servers' tools never collide, and every name
//! fits MCP's 64-character rule *counting OpenClaw's own prefix*: OpenClaw shows the model
//! `<its server entry>__<tool>`, and `attach` names the per-agent entry `cb-<agent>`.
//!
//! A name is `[A-Za-z0-9_-]` only (what model providers accept for function names). A name
//! that had to be changed (other characters, too long) ends in `_` + 6 hex digits of the
//! SHA-256 of the original, so it stays unique and stable across restarts.

use sha2::{Digest, Sha256};

/// MCP's (and the model providers') limit on a tool name.
pub const MAX_NAME: usize = 64;

/// The fewest characters a tool keeps, whatever the agent's name.
const MIN_BUDGET: usize = 16;

/// The prefix OpenClaw puts before the tools of the agent's ClawButler server entry.
pub fn openclaw_prefix(agent: &str) -> String {
    format!("cb-{agent}__")
}

/// How long a tool name may be for `agent` (64 minus OpenClaw's prefix, at least 16).
pub fn budget(agent: &str) -> usize {
    MAX_NAME.saturating_sub(openclaw_prefix(agent).len()).max(MIN_BUDGET)
}

fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn hash6(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..3])
}

/// The exposed name of `tool` behind `prefix`, at most `budget` characters.
pub fn exposed(prefix: &str, tool: &str, budget: usize) -> String {
    let full = format!("{prefix}{tool}");
    let clean: String = full.chars().map(|c| if safe(c) { c } else { '_' }).collect();
    if clean == full && full.len() <= budget {
        return full;
    }
    uniquified(&clean, &full, budget)
}

/// `clean` cut to leave room for `_` + the hash of `original`.
fn uniquified(clean: &str, original: &str, budget: usize) -> String {
    let keep = budget.saturating_sub(7);
    let head: String = clean.chars().take(keep).collect();
    format!("{head}_{}", hash6(original))
}

/// A second distinct name for a tool whose exposed name another tool already has.
pub fn disambiguated(name: &str, server: &str, tool: &str, budget: usize) -> String {
    uniquified(name, &format!("{server}\u{0}{tool}"), budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_prefix_and_tool() {
        assert_eq!(exposed("github__", "create_issue", budget("main")), "github__create_issue");
        assert_eq!(exposed("", "test_simple_text", budget("conf")), "test_simple_text");
        assert_eq!(openclaw_prefix("main"), "cb-main__");
        assert_eq!(budget("main"), 64 - 9);
    }

    #[test]
    fn every_name_fits_with_openclaws_prefix() {
        for agent in ["main", "a", "a-very-long-agent-name-that-eats-the-budget-x"] {
            let b = budget(agent);
            for tool in ["x", "get-env", &"t".repeat(80), "name.with/odd chars!"] {
                let n = exposed("some_server_name__", tool, b);
                assert!(n.len() <= b, "{n}");
                assert!(n.chars().all(safe), "{n}");
                if openclaw_prefix(agent).len() + MIN_BUDGET <= MAX_NAME {
                    assert!(openclaw_prefix(agent).len() + n.len() <= MAX_NAME, "{agent} {n}");
                }
            }
        }
    }

    #[test]
    fn changed_names_stay_distinct_and_stable() {
        let a = exposed("s__", &format!("{}a", "x".repeat(70)), 55);
        let b = exposed("s__", &format!("{}b", "x".repeat(70)), 55);
        assert_ne!(a, b);
        assert_eq!(a, exposed("s__", &format!("{}a", "x".repeat(70)), 55));
        let dotted = exposed("s__", "mail.send", 55);
        assert!(dotted.starts_with("s__mail_send_") && dotted.len() == "s__mail_send".len() + 7, "{dotted}");
        assert_ne!(dotted, exposed("s__", "mail_send", 55));
        let d = disambiguated("s__x", "s", "x", 55);
        assert!(d.starts_with("s__x_") && d != "s__x");
    }
}
