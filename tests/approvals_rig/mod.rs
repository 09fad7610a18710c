//! Shared rig of the approval tests: a sidecar in process on port 0 whose policy bundle is
//! the shipped one plus one test rule that holds model calls to models named
//! `needs-approval*`, a scripted upstream, and helpers for the control API.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clawbutler::app::Sidecar;
use clawbutler::config::Config;
use serde_json::{json, Value};
use testkit::upstream::ScriptedUpstream;

use crate::support::http::{get, post_json, HttpResponse};

pub const ADMIN: &str = "approvals-test-admin";

/// The extra rule: hold model calls to `needs-approval*` models (the shipped bundle holds
/// only exec and tool calls).
const HOLD_RULE: &str = r#"package clawbutler

hold_findings contains f if {
	input.kind == "model_call"
	startswith(object.get(input.model, "name", ""), "needs-approval")
	f := {"rule": "test.model_hold", "reason": "Test models need a human's approval", "risk": "high"}
}
"#;

/// Copy the shipped bundle (without its tests) plus the hold rule into `dir`.
pub fn bundle_dir(dir: &Path) -> PathBuf {
    let out = dir.join("bundle");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&p, out.join(&name)).unwrap();
        }
    }
    std::fs::write(out.join("zz_test_hold.rego"), HOLD_RULE).unwrap();
    out
}

pub struct Rig {
    pub sidecar: Sidecar,
    pub up: ScriptedUpstream,
    pub dir: tempfile::TempDir,
}

/// The config of a rig (also used by the restart test with fixed ports).
pub fn config(
    data: &Path,
    bundle: &Path,
    upstream: &str,
    listen: &str,
    control: &str,
    policies: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
control_listen = "{control}"
data_dir = "{data}"
[auth]
admin_token = "{ADMIN}"
[policies]
dir = "{bundle}"
watch = false
eval_timeout_ms = 250
{policies}
[[upstreams]]
name = "fake"
kind = "openai"
url = "{upstream}/v1"
[[upstreams]]
name = "anth"
kind = "anthropic"
url = "{upstream}"
{extra}
"#,
        data = data.display(),
        bundle = bundle.display(),
    )
}

impl Rig {
    /// `policies`: extra lines of `[policies]`; `extra`: whole extra tables.
    pub async fn start(policies: &str, extra: &str) -> Rig {
        let up = ScriptedUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let bundle = bundle_dir(dir.path());
        let cfg =
            config(&dir.path().join("data"), &bundle, &up.base_url(), "127.0.0.1:0", "127.0.0.1:0", policies, extra);
        let sidecar = Sidecar::start(Config::from_toml_str(&cfg).unwrap()).await.unwrap();
        Rig { sidecar, up, dir }
    }

    pub fn data(&self, path: &str) -> String {
        format!("http://{}{}", self.sidecar.data_addr, path)
    }

    pub fn control(&self, path: &str) -> String {
        format!("http://{}{}", self.sidecar.control_addr, path)
    }

    /// A new token of `role`, created through the API.
    pub async fn token(&self, role: &str, name: &str) -> String {
        let r = post_json(&self.control("/api/v1/tokens"), &bearer(ADMIN), &json!({"name": name, "role": role})).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Wait until `agent` has at least `n` pending approvals; returns them, oldest first.
    pub async fn wait_pending(&self, agent: &str, n: usize) -> Vec<Value> {
        for _ in 0..600 {
            let r = get(
                &self.control(&format!("/api/v1/approvals?status=pending&agent={agent}&limit=500")),
                &bearer(ADMIN),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let mut items = r.json()["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= n {
                items.reverse();
                return items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {n} pending approvals for {agent}");
    }

    /// POST a decision.
    pub async fn decide(&self, token: &str, id: &str, body: &Value, key: Option<&str>) -> HttpResponse {
        let mut h = bearer(token);
        if let Some(k) = key {
            h.push(("idempotency-key", Box::leak(k.to_string().into_boxed_str())));
        }
        post_json(&self.control(&format!("/api/v1/approvals/{id}/decision")), &h, body).await
    }

    /// Send a model call for `agent` in the background (it may be held).
    pub fn call(&self, agent: &str, model: &str, prompt: &str) -> tokio::task::JoinHandle<HttpResponse> {
        let url = self.data(&format!("/a/{agent}/fake/v1/chat/completions"));
        let body = chat(model, prompt);
        tokio::spawn(async move { post_json(&url, &[], &body).await })
    }

    /// Audit records of one kind (newest first).
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let r = get(&self.control(&format!("/api/v1/audit?{query}&limit=1000")), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["items"].as_array().cloned().unwrap_or_default()
    }
}

pub fn bearer(token: &str) -> Vec<(&'static str, &'static str)> {
    vec![("authorization", Box::leak(format!("Bearer {token}").into_boxed_str()))]
}

pub fn chat(model: &str, prompt: &str) -> Value {
    json!({"model": model, "stream": false, "messages": [{"role": "user", "content": prompt}]})
}

/// The assistant text of a non-streamed OpenAI chat reply.
pub fn reply_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}
