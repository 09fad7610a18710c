//! Issue #12, identity and grants, tested as the attacker would try it:
//! - `spellings`: a killed agent's calls are refused under every spelling of its id (case,
//!   trailing dot, colon, percent-encoding, unicode lookalikes, `.`/`..`), and with another
//!   agent's path but its own key; per-agent keys on held and pass-through upstreams.
//! - `keys`: managing keys (admin only, secret shown once, hashed, audited, revocable) through
//!   the API and the CLI; kill-switch API refuses non-canonical ids.
//! - `grants`: an "allow always" derived from any held command never allows a command that
//!   adds a shell operator (property test over random commands, Rust and `grants.rego` checked
//!   against each other), the `?*` family is `any` and needs `confirm_any`, and over a gateway
//!   link the reported reproduction stays held.

mod grants;
mod keys;
mod spellings;

use clawbutler::app::Sidecar;
use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::rig::{bearer, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

/// The upstream key the sidecar holds in these tests.
pub const HELD_KEY: &str = "sk-sidecar-held-upstream-key";
const HELD_KEY_ENV: &str = "CB_TEST_IDENTITY_HELD_KEY";

/// A sidecar whose upstreams `held` (OpenAI) and `anthheld` (Anthropic) hold their key, and
/// `passthru` (OpenAI) passes the caller's key, all in front of one scripted upstream.
pub struct IdentityRig {
    pub sc: Sidecar,
    pub up: ScriptedUpstream,
    pub _dir: tempfile::TempDir,
}

impl IdentityRig {
    pub async fn start(agent_keys: Option<&str>) -> IdentityRig {
        std::env::set_var(HELD_KEY_ENV, HELD_KEY);
        let up = ScriptedUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SidecarConfig::new(&dir.path().join("data")).table(&format!(
            "[[upstreams]]\nname = \"held\"\nkind = \"openai\"\nurl = \"{b}/v1\"\napi_key_env = \"{HELD_KEY_ENV}\"\n\
             [[upstreams]]\nname = \"anthheld\"\nkind = \"anthropic\"\nurl = \"{b}\"\napi_key_env = \"{HELD_KEY_ENV}\"\n\
             [[upstreams]]\nname = \"passthru\"\nkind = \"openai\"\nurl = \"{b}/v1\"\n",
            b = up.base_url()
        ));
        if let Some(m) = agent_keys {
            cfg = cfg.agent_keys(m);
        }
        let sc = Sidecar::start(cfg.build()).await.unwrap();
        IdentityRig { sc, up, _dir: dir }
    }

    pub fn data(&self, path: &str) -> String {
        format!("http://{}{path}", self.sc.data_addr)
    }

    pub fn control(&self, path: &str) -> String {
        format!("http://{}{path}", self.sc.control_addr)
    }

    /// A new key of `agent`, through the API.
    pub async fn key(&self, agent: &str) -> String {
        let r = post_json(&self.control(&format!("/api/v1/agents/{agent}/keys")), &bearer(ADMIN), &json!({})).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["key"].as_str().unwrap().to_string()
    }

    /// Kill `agent` through the API.
    pub async fn kill(&self, agent: &str) {
        let r = post_json(
            &self.control(&format!("/api/v1/agents/{agent}/kill")),
            &bearer(ADMIN),
            &json!({"reason": "runaway"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

pub fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "stream": false, "messages": [{"role": "user", "content": "hi"}]})
}

pub fn messages() -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": false,
           "messages": [{"role": "user", "content": "hi"}]})
}
