//! Who is calling: the path names an agent, a per-agent key proves it (`[auth] agent_keys`).
//!
//! The key a caller presents is, first found: `x-clawbutler-agent-key`; else, on an upstream
//! whose key the sidecar holds (`api_key_env`), the caller's own API key (`Authorization:
//! Bearer <key>` or `x-api-key`): there the OpenClaw provider's `apiKey` *is* the agent key.
//! On a pass-through upstream the caller's API key is the real upstream key, so only the
//! dedicated header can carry an agent key there.
//!
//! Modes:
//! - `when_holding_key` (default): a key is required on upstreams whose key the sidecar holds
//!   (a caller there spends the sidecar's key, so it must prove which agent it is); on
//!   pass-through upstreams the caller already needs a real upstream key, so none is
//!   required. Zero-config start (no `api_key_env`) works with no keys at all.
//! - `required`: every call needs its agent's key (pass-through ones in the header).
//! - `off`: no check (a warning at start): any local process can call as any agent.
//!
//! In every mode a key that is presented must be valid for the path's agent (a wrong key is
//! never ignored), and `x-clawbutler-agent-key` is removed before the call goes upstream.
//! Refusals are 401 in the caller's error shape and are counted; keys never reach a log.

use std::sync::Arc;

use governance::agent_keys::Verdict;
use governance::AgentKeys;
use http::HeaderMap;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::error::{KeyRefusal, ProxyError};
use crate::route::Route;

/// The header that carries an agent key next to a real upstream key.
pub const AGENT_KEY_HEADER: &str = "x-clawbutler-agent-key";

/// `[auth] agent_keys`: when the data path requires a per-agent key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKeyMode {
    /// Every call.
    Required,
    /// Calls to upstreams whose key the sidecar holds.
    #[default]
    WhenHoldingKey,
    /// Never (not recommended; warned about at start).
    Off,
}

impl AgentKeyMode {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKeyMode::Required => "required",
            AgentKeyMode::WhenHoldingKey => "when_holding_key",
            AgentKeyMode::Off => "off",
        }
    }
}

/// Why a call was refused before its body was read (label values of
/// `clawbutler_identity_refusals_total`).
#[derive(Debug, Clone, Copy)]
pub enum RefusalReason {
    BadAgentId,
    MissingKey,
    WrongKey,
}

impl RefusalReason {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::BadAgentId => "bad_agent_id",
            RefusalReason::MissingKey => "missing_key",
            RefusalReason::WrongKey => "wrong_key",
        }
    }
}

/// The identity check of the route layer.
pub struct AgentAuth {
    mode: AgentKeyMode,
    keys: Arc<AgentKeys>,
    refusals: IntCounterVec,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The agent key a caller presents (see the module docs), if any.
fn presented(h: &HeaderMap, holds_key: bool) -> Option<String> {
    if let Some(k) = header(h, AGENT_KEY_HEADER) {
        return Some(k.to_string());
    }
    if !holds_key {
        return None;
    }
    let bearer = header(h, http::header::AUTHORIZATION.as_str()).map(|v| {
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim()
        } else {
            v
        }
    });
    bearer.or_else(|| header(h, "x-api-key")).map(str::to_string)
}

impl AgentAuth {
    /// The check for `mode` over `keys`; registers `clawbutler_identity_refusals_total`.
    pub fn new(mode: AgentKeyMode, keys: Arc<AgentKeys>, registry: &Registry) -> Result<AgentAuth, prometheus::Error> {
        let refusals = IntCounterVec::new(
            Opts::new(
                "clawbutler_identity_refusals_total",
                "Data-path calls refused before their body was read: bad agent id, missing or wrong agent key.",
            ),
            &["reason"],
        )?;
        for r in [RefusalReason::BadAgentId, RefusalReason::MissingKey, RefusalReason::WrongKey] {
            refusals.with_label_values(&[r.as_str()]);
        }
        registry.register(Box::new(refusals.clone()))?;
        if mode == AgentKeyMode::Off {
            tracing::warn!(
                "[auth] agent_keys = \"off\": the data path trusts the agent named in the path, so any local process can call (and spend) as any agent and step around its kill switch and budgets"
            );
        }
        Ok(AgentAuth { mode, keys, refusals })
    }

    /// The mode in force.
    pub fn mode(&self) -> AgentKeyMode {
        self.mode
    }

    /// Count a refusal of this kind.
    pub fn count(&self, r: RefusalReason) {
        self.refusals.with_label_values(&[r.as_str()]).inc();
    }

    /// Check the caller of `route` and strip the agent-key header; a refusal is a 401.
    pub fn check(&self, route: &Route, headers: &mut HeaderMap) -> Result<(), ProxyError> {
        let holds_key = route.upstream.key.is_some();
        let key = presented(headers, holds_key);
        headers.remove(AGENT_KEY_HEADER);
        let required = match self.mode {
            AgentKeyMode::Off => return Ok(()),
            AgentKeyMode::Required => true,
            AgentKeyMode::WhenHoldingKey => holds_key,
        };
        let refusal = match key {
            None if required => KeyRefusal::Missing { in_header_only: !holds_key },
            None => return Ok(()),
            Some(k) => match self.keys.verify(&route.agent, &k) {
                Verdict::Valid(_) => return Ok(()),
                Verdict::NoKeys | Verdict::Mismatch => KeyRefusal::Wrong,
            },
        };
        let reason = match refusal {
            KeyRefusal::Missing { .. } => RefusalReason::MissingKey,
            KeyRefusal::Wrong => RefusalReason::WrongKey,
        };
        self.count(reason);
        tracing::warn!(agent = %route.agent, upstream = %route.upstream.name, reason = reason.as_str(), "data-path call refused: agent key");
        Err(ProxyError::AgentKey { agent: route.agent.clone(), why: refusal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    #[test]
    fn the_presented_key_depends_on_who_holds_the_upstream_key() {
        let both = h(&[("authorization", "Bearer cbk_a"), ("x-api-key", "cbk_b")]);
        assert_eq!(presented(&both, true).as_deref(), Some("cbk_a"));
        assert_eq!(presented(&both, false), None, "a pass-through key is the upstream's, not an agent key");
        assert_eq!(presented(&h(&[("x-api-key", "cbk_b")]), true).as_deref(), Some("cbk_b"));
        assert_eq!(presented(&h(&[("authorization", "bearer  cbk_c ")]), true).as_deref(), Some("cbk_c"));
        let header = h(&[(AGENT_KEY_HEADER, "cbk_h"), ("authorization", "Bearer sk-real")]);
        assert_eq!(presented(&header, false).as_deref(), Some("cbk_h"));
        assert_eq!(presented(&header, true).as_deref(), Some("cbk_h"));
    }

    #[test]
    fn mode_names_round_trip() {
        for m in [AgentKeyMode::Required, AgentKeyMode::WhenHoldingKey, AgentKeyMode::Off] {
            let v: AgentKeyMode = serde_json::from_value(serde_json::json!(m.as_str())).unwrap();
            assert_eq!(v, m);
        }
        assert_eq!(AgentKeyMode::default(), AgentKeyMode::WhenHoldingKey);
    }
}
