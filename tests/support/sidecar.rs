//! A sidecar started in process from a config string on port 0, in front of a scripted model
//! server, with a seeded admin token: the rig most integration tests use.

use std::time::Duration;

use clawbutler::app::Sidecar;
use clawbutler::config::Config;
use serde_json::Value;
use testkit::upstream::ScriptedUpstream;

use super::http::get;

/// The admin token every rig seeds.
pub const ADMIN: &str = "test-admin-token";

/// A running sidecar + scripted upstream (`fake` = OpenAI kind, `anth` = Anthropic kind).
pub struct Rig {
    pub sidecar: Sidecar,
    pub up: ScriptedUpstream,
    pub dir: tempfile::TempDir,
}

/// The config text of a rig: `policies` lines go into `[policies]`, `extra` is appended as
/// whole tables.
pub fn config_text(data_dir: &std::path::Path, upstream_base: &str, policies: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
control_listen = "127.0.0.1:0"
data_dir = "{data}"
[auth]
admin_token = "{ADMIN}"
[policies]
# Tests run many sidecars at once on 2 cores in a debug build: give the policy room.
eval_timeout_ms = 250
{policies}
[[upstreams]]
name = "fake"
kind = "openai"
url = "{upstream_base}/v1"
[[upstreams]]
name = "anth"
kind = "anthropic"
url = "{upstream_base}"
{extra}
"#,
        data = data_dir.display(),
    )
}

impl Rig {
    /// Start with extra tables appended to the config.
    pub async fn start(extra: &str) -> Rig {
        Rig::start_with("", extra).await
    }

    /// Start with `[policies]` lines and extra tables.
    pub async fn start_with(policies: &str, extra: &str) -> Rig {
        let up = ScriptedUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_text(dir.path(), &up.base_url(), policies, extra);
        let sidecar = Sidecar::start(Config::from_toml_str(&cfg).unwrap()).await.unwrap();
        Rig { sidecar, up, dir }
    }

    /// Stop the sidecar and start a new one on the same data dir and upstream.
    pub async fn restart(self, policies: &str, extra: &str) -> Rig {
        let Rig { sidecar, up, dir } = self;
        sidecar.shutdown().await;
        let cfg = config_text(dir.path(), &up.base_url(), policies, extra);
        let sidecar = Sidecar::start(Config::from_toml_str(&cfg).unwrap()).await.unwrap();
        Rig { sidecar, up, dir }
    }

    /// A data-listener URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.sidecar.data_addr, path)
    }

    /// A control-listener URL.
    pub fn control(&self, path: &str) -> String {
        format!("http://{}{}", self.sidecar.control_addr, path)
    }

    /// A URL on the scripted upstream itself (a direct call).
    pub fn direct(&self, path: &str) -> String {
        format!("{}{}", self.up.base_url(), path)
    }

    /// Audit records of model calls for an agent, oldest first; waits for `n` of them
    /// (allowed calls are recorded when their stream ends).
    pub async fn model_calls(&self, agent: &str, n: usize) -> Vec<Value> {
        let url = self.control(&format!("/api/v1/audit?agent={agent}&kind=model_call&limit=1000"));
        for _ in 0..100 {
            let r = get(&url, &[("authorization", &format!("Bearer {ADMIN}"))]).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let mut items = r.json()["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= n {
                items.reverse();
                return items;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} model_call records for {agent}");
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        get(&self.control("/metrics"), &[]).await.text()
    }
}
