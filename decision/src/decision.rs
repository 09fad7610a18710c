//! The one `Decision` type: produced by the policy engine (or synthetically by a step that
//! refuses without asking it), acted on by the proxy, recorded by the audit log, shown by the
//! control API.

use serde::{Deserialize, Serialize};

/// What happens to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward the call.
    Allow,
    /// Park the call until a human decides.
    Hold,
    /// Refuse the call.
    Deny,
}

impl Action {
    /// Stable label value for metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Hold => "hold",
            Action::Deny => "deny",
        }
    }

    /// Combine two actions: deny beats hold beats allow.
    pub fn strongest(self, other: Action) -> Action {
        // The derive(Ord) order above is Allow < Hold < Deny, which is exactly precedence.
        self.max(other)
    }
}

/// How risky the call is, as judged by the rule that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    /// Stable label value for metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// What happens to secrets found in a tool's result (MCP calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResultSecrets {
    /// Replace each secret with a `[class:hash]` token before the client sees the result
    /// (also what an absent obligation means: fail safe).
    #[default]
    Mask,
    /// Pass the result unchanged (the secrets are still detected and recorded).
    Pass,
}

/// Side instructions a rule attaches to its decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Obligations {
    /// Extra values (paths, literals) the audit log must mask in this call's record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
    /// How long a hold may wait for a human before it expires (deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ttl_s: Option<u64>,
    /// Tool calls: what to do with secrets in the result; absent = mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_secrets: Option<ResultSecrets>,
    /// Plugin-gate calls only: parameters to change before the tool runs, shallow-merged into
    /// the call's own (OpenClaw merges `{...params, ...rewrite}`, so a key cannot be removed).
    /// Only meaningful with action `allow`; other kinds ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Reason string used whenever the policy could not produce a trustworthy decision.
pub const POLICY_ERROR: &str = "policy_error";

/// A decision's id: a UUID v7 (time-ordered, so ids sort by creation), unique per call and
/// returned to the caller as `x-clawbutler-decision-id`. Serialised as its plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DecisionId(String);

impl DecisionId {
    /// A fresh id (see [`IdGen`]: cheap, strictly increasing per thread).
    pub fn new() -> DecisionId {
        // Encoded into uuid's own buffer: `to_string` went through `fmt` (~500 instructions).
        let id = IDS.with(|ids| ids.borrow_mut().next());
        DecisionId(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for DecisionId {
    /// Wrap an id read back from a record or a header (not validated: ids from older records
    /// are shown as they were written).
    fn from(s: String) -> DecisionId {
        DecisionId(s)
    }
}

impl From<DecisionId> for String {
    fn from(id: DecisionId) -> String {
        id.0
    }
}

/// The outcome of evaluating one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unique per call; returned to the caller as `x-clawbutler-decision-id`.
    pub id: DecisionId,
    /// Content hash of the bundle that decided (empty when no bundle was involved).
    pub bundle_revision: String,
    pub action: Action,
    /// The rule that made the decision, e.g. `exec.destructive_rm`.
    pub rule: String,
    /// Human-readable reason, shown to the caller on deny.
    pub reason: String,
    pub risk: Risk,
    #[serde(default)]
    pub obligations: Obligations,
}

impl Decision {
    /// Fail-closed decision used for undefined, ill-typed or conflicting output, timeouts and
    /// engine errors.
    pub fn policy_error(bundle_revision: &str, detail: &str) -> Decision {
        Decision {
            id: DecisionId::new(),
            bundle_revision: bundle_revision.to_string(),
            action: Action::Deny,
            rule: POLICY_ERROR.to_string(),
            reason: format!("{POLICY_ERROR}: {detail}"),
            risk: Risk::High,
            obligations: Obligations::default(),
        }
    }

    /// A decision made outside Rego (kill switch, budget breaker, ...), so every refusal still
    /// carries one Decision.
    pub fn synthetic(action: Action, rule: &str, reason: &str, risk: Risk) -> Decision {
        Decision {
            id: DecisionId::new(),
            bundle_revision: String::new(),
            action,
            rule: rule.to_string(),
            reason: reason.to_string(),
            risk,
            obligations: Obligations::default(),
        }
    }
}

/// Per-thread UUID v7 generator. `uuid::Uuid::now_v7` takes a process-wide mutex and reads the
/// OS random source for every id; a decision id needs neither. Each thread keeps a 42-bit
/// counter (random at each new millisecond, +1 within one, as RFC 9562 method 1) so its ids
/// increase strictly, and fills the low 32 bits from a PRNG seeded once from the OS.
struct IdGen {
    last_ms: u64,
    counter: u64,
    rng: u64,
}

thread_local! {
    static IDS: std::cell::RefCell<IdGen> = std::cell::RefCell::new(IdGen::new());
}

/// 128 bits from this thread's generator, never zero: the random trace id of a call that
/// arrived without one. Asking the OS for each (`Uuid::new_v4`) was a `getrandom` system call
/// on every such call; a trace id has to be unlikely to collide, not unpredictable.
pub(crate) fn random_u128() -> u128 {
    IDS.with(|ids| {
        let mut g = ids.borrow_mut();
        let v = (u128::from(g.random()) << 64) | u128::from(g.random());
        v.max(1)
    })
}

const COUNTER_BITS: u32 = 42;

impl IdGen {
    fn new() -> IdGen {
        let (seed, _) = uuid::Uuid::new_v4().as_u64_pair();
        IdGen { last_ms: 0, counter: 0, rng: seed | 1 }
    }

    /// splitmix64: cheap, and plenty for the random part of an id.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next(&mut self) -> uuid::Uuid {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if now > self.last_ms {
            self.last_ms = now;
            // Start low in the counter range so a burst within one millisecond cannot overflow.
            self.counter = self.random() >> (64 - COUNTER_BITS + 1);
        } else {
            // Same millisecond, or the clock went back: stay on the last one and count up.
            self.counter += 1;
            if self.counter >> COUNTER_BITS != 0 {
                self.last_ms += 1;
                self.counter = 0;
            }
        }
        // 80 bits after the timestamp: [4 version][12 counter high][2 variant][30 counter low]
        // [32 random]; the builder overwrites the version and variant bits.
        let bits: u128 = (u128::from(self.counter >> 30) << 64)
            | (u128::from(self.counter & 0x3FFF_FFFF) << 32)
            | u128::from(self.random() as u32);
        let bytes = bits.to_be_bytes();
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&bytes[6..]);
        uuid::Builder::from_unix_timestamp_millis(self.last_ms, &tail).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_increasing() {
        let ids: Vec<DecisionId> = (0..20_000).map(|_| DecisionId::new()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        let parsed = uuid::Uuid::parse_str(ids[0].as_str()).unwrap();
        // The text form is the canonical one (lowercase, hyphenated), as `to_string` wrote it.
        assert_eq!(ids[0].as_str(), parsed.to_string());
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        let ms = parsed.get_timestamp().unwrap().to_unix();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!(now.as_secs().abs_diff(ms.0) <= 2);
        // Another thread gets its own sequence, and no id repeats.
        let other = std::thread::spawn(|| (0..1000).map(|_| DecisionId::new()).collect::<Vec<_>>()).join().unwrap();
        let all: std::collections::HashSet<&DecisionId> = ids.iter().chain(other.iter()).collect();
        assert_eq!(all.len(), ids.len() + other.len());
    }

    #[test]
    fn trace_ids_are_w3c_shaped_and_distinct_across_threads() {
        let here: Vec<String> = (0..20_000).map(|_| crate::new_trace_id()).collect();
        let there =
            std::thread::spawn(|| (0..20_000).map(|_| crate::new_trace_id()).collect::<Vec<_>>()).join().unwrap();
        for t in here.iter().chain(there.iter()) {
            assert_eq!(t.len(), 32, "{t}");
            assert!(t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{t}");
            assert_ne!(t.as_str(), "00000000000000000000000000000000");
        }
        let all: std::collections::HashSet<&String> = here.iter().chain(there.iter()).collect();
        assert_eq!(all.len(), here.len() + there.len());
        // The encoding is `{:032x}`'s, leading zeros included.
        for v in [1u128, 0xabc, u128::from(u64::MAX), u128::MAX, 0x0123_4567_89ab_cdef_0011_2233_4455_6677] {
            assert_eq!(crate::input::trace_id_text(v), format!("{v:032x}"));
        }
        // Both halves vary (not a counter in one half and a constant in the other).
        let high: std::collections::HashSet<&str> = here.iter().map(|t| &t[..16]).collect();
        let low: std::collections::HashSet<&str> = here.iter().map(|t| &t[16..]).collect();
        assert_eq!((high.len(), low.len()), (here.len(), here.len()));
    }

    #[test]
    fn precedence_is_deny_hold_allow() {
        assert_eq!(Action::Allow.strongest(Action::Hold), Action::Hold);
        assert_eq!(Action::Deny.strongest(Action::Hold), Action::Deny);
        assert_eq!(Action::Allow.strongest(Action::Allow), Action::Allow);
    }

    #[test]
    fn policy_error_denies() {
        let d = Decision::policy_error("rev", "timeout");
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rule, POLICY_ERROR);
        assert!(d.reason.starts_with("policy_error"));
    }
}
