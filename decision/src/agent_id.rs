//! The one agent-id grammar every crate checks against: OpenClaw's canonical agent id
//! (`normalizeAgentIdStrict` in OpenClaw 2026.9.6, `packages/normalization-core/src/agent-id.ts`):
//! 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter or a digit.
//!
//! Invariant: an id that passes [`check`] is the only spelling of that agent. OpenClaw itself
//! lower-cases ids and folds other characters into `-`, so `MAIN`, `main.` or `main:` name the
//! same OpenClaw agent as `main` (or an agent that cannot exist); accepting them would let a
//! caller reach the upstream under a spelling the kill switch, budgets and per-agent keys do
//! not know. They are refused, never normalised silently, and the refusal suggests the
//! canonical spelling.

/// Longest agent id OpenClaw produces.
pub const MAX_AGENT_ID_LEN: usize = 64;

/// The grammar in words, for error messages and docs.
pub const AGENT_ID_GRAMMAR: &str =
    "1 to 64 characters of lowercase a-z, 0-9, '_' and '-', starting with a letter or a digit";

/// Why a string is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent id '{shown}' is not valid: agent ids are {AGENT_ID_GRAMMAR}{hint}")]
pub struct AgentIdError {
    /// The offending id, cut to 80 characters and with control characters replaced.
    pub shown: String,
    /// ` (did you mean 'main'?)` when OpenClaw would read it as another id, else empty.
    pub hint: String,
}

/// Whether `id` is a canonical agent id.
pub fn is_valid(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_AGENT_ID_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Check `id`; the error names the grammar and, when OpenClaw would fold the string into a
/// canonical id, that id.
pub fn check(id: &str) -> Result<(), AgentIdError> {
    if is_valid(id) {
        return Ok(());
    }
    let shown: String = id.chars().take(80).map(|c| if c.is_control() || c == '\'' { '?' } else { c }).collect();
    let hint = match openclaw_normalised(id) {
        Some(n) if n != id => format!(" (did you mean '{n}'?)"),
        _ => String::new(),
    };
    Err(AgentIdError { shown, hint })
}

/// What OpenClaw's `normalizeAgentIdStrict` makes of `raw`: trimmed, lower-cased, runs of
/// other characters folded into `-`, leading and trailing `-` dropped, cut to 64. `None`
/// when nothing is left. Used only to suggest a spelling.
pub fn openclaw_normalised(raw: &str) -> Option<String> {
    let lower = raw.trim().to_lowercase();
    let mut out = String::new();
    let mut in_bad = false;
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
            out.push(c);
            in_bad = false;
        } else if !in_bad {
            out.push('-');
            in_bad = true;
        }
    }
    let out: String = out.trim_matches('-').chars().take(MAX_AGENT_ID_LEN).collect();
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty() && is_valid(&out)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ids_pass() {
        for id in ["main", "ops", "ix-a", "a", "0", "agent_7", &"a".repeat(64)] {
            assert!(check(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn every_other_spelling_is_refused() {
        let long = "a".repeat(65);
        for id in [
            "",
            ".",
            "..",
            "MAIN",
            "Main",
            "main.",
            "main:",
            "m%61in",
            "ma\u{131}n",
            "\u{ff4d}ain",
            "main ",
            " main",
            "-main",
            "_main",
            "main/x",
            "main\0",
            "main\n",
            &long,
        ] {
            assert!(check(id).is_err(), "{id:?} accepted");
        }
    }

    #[test]
    fn the_refusal_suggests_what_openclaw_would_read() {
        let e = check("MAIN").unwrap_err().to_string();
        assert!(e.contains("did you mean 'main'"), "{e}");
        let e = check("main.").unwrap_err().to_string();
        assert!(e.contains("did you mean 'main'"), "{e}");
        let e = check("..").unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "{e}");
        assert_eq!(openclaw_normalised("Ops Team!"), Some("ops-team".into()));
    }
}
