//! The one sidecar rig: a sidecar started in process from a config built by
//! [`SidecarConfig`], on port 0, in front of a [`ScriptedUpstream`], with a seeded admin
//! token, plus the control-API helpers most tests need.
//!
//! ```ignore
//! let rig = Rig::builder().policies("model_allowlist = [\"gpt-4o-mini\"]").start().await;
//! let held = Rig::builder().hold_rule().table("[approvals]\nevents_heartbeat_ms = 150").start().await;
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use clawbutler::app::Sidecar;
use clawbutler::config::Config;
use serde_json::{json, Value};

use crate::http::{get, post_json, HttpResponse};
use crate::upstream::ScriptedUpstream;

/// The admin token every rig seeds.
pub const ADMIN: &str = "test-admin-token";

/// The test rule [`RigBuilder::hold_rule`] adds to the shipped bundle: hold model calls to
/// models named `needs-approval*` (the shipped bundle holds only exec and tool calls).
pub const HOLD_RULE: &str = r#"package clawbutler

hold_findings contains f if {
	input.kind == "model_call"
	startswith(object.get(input.model, "name", ""), "needs-approval")
	f := {"rule": "test.model_hold", "reason": "Test models need a human's approval", "risk": "high"}
}
"#;

/// A sidecar's `clawbutler.toml`, built field by field. Defaults: both listeners on
/// `127.0.0.1:0`, the admin token [`ADMIN`], a policy time budget that suits many debug
/// sidecars on 2 cores, and no upstreams until [`SidecarConfig::upstreams`] names a base.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    data_dir: PathBuf,
    listen: String,
    control_listen: String,
    admin_token: Option<String>,
    server: Vec<String>,
    policies: Vec<String>,
    upstream_base: Option<String>,
    tables: Vec<String>,
    agent_keys: Option<String>,
}

impl SidecarConfig {
    /// A config whose data dir is `data_dir`.
    pub fn new(data_dir: &Path) -> SidecarConfig {
        SidecarConfig {
            data_dir: data_dir.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            control_listen: "127.0.0.1:0".into(),
            admin_token: Some(ADMIN.into()),
            server: Vec::new(),
            // Tests run many sidecars at once on 2 cores in a debug build: give the policy room.
            policies: vec!["eval_timeout_ms = 250".into()],
            upstream_base: None,
            tables: Vec::new(),
            agent_keys: None,
        }
    }

    /// `[auth] agent_keys` (`required`, `when_holding_key`, `off`); unset = the default.
    pub fn agent_keys(mut self, mode: &str) -> SidecarConfig {
        self.agent_keys = Some(mode.into());
        self
    }

    /// Fixed listen addresses (restart tests).
    pub fn listen(mut self, data: &str, control: &str) -> SidecarConfig {
        self.listen = data.into();
        self.control_listen = control.into();
        self
    }

    /// No seeded admin token (the first start then creates one and prints it).
    pub fn no_admin_token(mut self) -> SidecarConfig {
        self.admin_token = None;
        self
    }

    /// Extra lines of the `[server]` table (control listener limits, ...).
    pub fn server(mut self, lines: &str) -> SidecarConfig {
        self.server.push(lines.to_string());
        self
    }

    /// Upstreams `fake` (OpenAI kind, `<base>/v1`) and `anth` (Anthropic kind, `<base>`).
    pub fn upstreams(mut self, base: &str) -> SidecarConfig {
        self.upstream_base = Some(base.trim_end_matches('/').to_string());
        self
    }

    /// Extra lines of the `[policies]` table.
    pub fn policies(mut self, lines: &str) -> SidecarConfig {
        if !lines.trim().is_empty() {
            self.policies.push(lines.to_string());
        }
        self
    }

    /// Policies from `dir`, not watched (tests reload explicitly).
    pub fn policy_dir(self, dir: &Path) -> SidecarConfig {
        self.policies(&format!("dir = \"{}\"\nwatch = false", dir.display()))
    }

    /// Whole extra tables (`[[budgets]]`, `[approvals]`, `[gateway]`, ...).
    pub fn table(mut self, toml: &str) -> SidecarConfig {
        if !toml.trim().is_empty() {
            self.tables.push(toml.to_string());
        }
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[server]\nlisten = \"{}\"\ncontrol_listen = \"{}\"\ndata_dir = \"{}\"\n",
            self.listen,
            self.control_listen,
            self.data_dir.display()
        );
        for l in &self.server {
            s.push_str(l);
            s.push('\n');
        }
        if self.admin_token.is_some() || self.agent_keys.is_some() {
            s.push_str("[auth]\n");
        }
        if let Some(t) = &self.admin_token {
            s.push_str(&format!("admin_token = \"{t}\"\n"));
        }
        if let Some(m) = &self.agent_keys {
            s.push_str(&format!("agent_keys = \"{m}\"\n"));
        }
        s.push_str("[policies]\n");
        for l in &self.policies {
            s.push_str(l);
            s.push('\n');
        }
        if let Some(base) = &self.upstream_base {
            s.push_str(&format!(
                "[[upstreams]]\nname = \"fake\"\nkind = \"openai\"\nurl = \"{base}/v1\"\n\
                 [[upstreams]]\nname = \"anth\"\nkind = \"anthropic\"\nurl = \"{base}\"\n"
            ));
        }
        for t in &self.tables {
            s.push_str(t);
            s.push('\n');
        }
        s
    }

    /// The parsed config.
    pub fn build(&self) -> Config {
        Config::from_toml_str(&self.to_toml()).unwrap_or_else(|e| panic!("rig config: {e}\n{}", self.to_toml()))
    }
}

/// Copy the shipped bundle (without its tests) into `dir/bundle`, plus `extra` rule files.
pub fn bundle_dir(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let out = dir.join("bundle");
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&p, out.join(&name)).unwrap();
        }
    }
    for (name, text) in extra {
        std::fs::write(out.join(name), text).unwrap();
    }
    out
}

/// Builds a [`Rig`].
#[derive(Debug, Default)]
pub struct RigBuilder {
    server: Vec<String>,
    policies: Vec<String>,
    tables: Vec<String>,
    hold_rule: bool,
    /// A fixed data listen address (an OpenClaw config names it before the sidecar starts).
    listen: Option<String>,
}

impl RigBuilder {
    /// Extra `[policies]` lines.
    pub fn policies(mut self, lines: &str) -> RigBuilder {
        self.policies.push(lines.to_string());
        self
    }

    /// Extra `[server]` lines.
    pub fn server(mut self, lines: &str) -> RigBuilder {
        self.server.push(lines.to_string());
        self
    }

    /// Extra whole tables.
    pub fn table(mut self, toml: &str) -> RigBuilder {
        self.tables.push(toml.to_string());
        self
    }

    /// Run the shipped bundle plus [`HOLD_RULE`] from a directory.
    pub fn hold_rule(mut self) -> RigBuilder {
        self.hold_rule = true;
        self
    }

    /// Listen for data calls on `addr` (the control listener stays on a free port).
    pub fn listen(mut self, addr: &str) -> RigBuilder {
        self.listen = Some(addr.to_string());
        self
    }

    /// Start the scripted upstream and the sidecar.
    pub async fn start(self) -> Rig {
        let up = ScriptedUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SidecarConfig::new(&dir.path().join("data")).upstreams(&up.base_url());
        if let Some(addr) = &self.listen {
            cfg = cfg.listen(addr, "127.0.0.1:0");
        }
        if self.hold_rule {
            cfg = cfg.policy_dir(&bundle_dir(dir.path(), &[("zz_test_hold.rego", HOLD_RULE)]));
        }
        for l in &self.server {
            cfg = cfg.server(l);
        }
        for p in &self.policies {
            cfg = cfg.policies(p);
        }
        for t in &self.tables {
            cfg = cfg.table(t);
        }
        let sidecar = Sidecar::start(cfg.build()).await.unwrap();
        Rig { sidecar, up, dir, cfg }
    }
}

/// A running sidecar + scripted upstream (`fake` = OpenAI kind, `anth` = Anthropic kind).
pub struct Rig {
    pub sidecar: Sidecar,
    pub up: ScriptedUpstream,
    pub dir: tempfile::TempDir,
    /// The config the sidecar runs with.
    pub cfg: SidecarConfig,
}

impl Rig {
    /// A builder.
    pub fn builder() -> RigBuilder {
        RigBuilder::default()
    }

    /// Start with extra tables appended to the config.
    pub async fn start(extra: &str) -> Rig {
        Rig::builder().table(extra).start().await
    }

    /// Start with `[policies]` lines and extra tables.
    pub async fn start_with(policies: &str, extra: &str) -> Rig {
        Rig::builder().policies(policies).table(extra).start().await
    }

    /// The approvals rig: the shipped bundle plus [`HOLD_RULE`], `[policies]` lines and tables.
    pub async fn holding(policies: &str, extra: &str) -> Rig {
        Rig::builder().hold_rule().policies(policies).table(extra).start().await
    }

    /// Stop the sidecar and start a new one on the same data dir and upstream with `cfg`.
    pub async fn restart_with(self, cfg: SidecarConfig) -> Rig {
        let Rig { sidecar, up, dir, .. } = self;
        sidecar.shutdown().await;
        let sidecar = Sidecar::start(cfg.build()).await.unwrap();
        Rig { sidecar, up, dir, cfg }
    }

    /// Stop the sidecar and start a new one with the given `[policies]` lines and tables.
    pub async fn restart(self, policies: &str, extra: &str) -> Rig {
        let cfg = SidecarConfig::new(&self.dir.path().join("data"))
            .upstreams(&self.up.base_url())
            .policies(policies)
            .table(extra);
        self.restart_with(cfg).await
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

    /// Audit records of how model calls for an agent ended (or were refused), oldest first;
    /// waits for `n` of them (allowed calls are recorded when their stream ends). The
    /// `started` record every forwarded call also gets is left out (see [`Rig::audit`]).
    pub async fn model_calls(&self, agent: &str, n: usize) -> Vec<Value> {
        let url = self.control(&format!("/api/v1/audit?agent={agent}&kind=model_call&limit=1000"));
        for _ in 0..100 {
            let r = get(&url, &bearer(ADMIN)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let mut items: Vec<Value> = r.json()["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|i| i["outcome"] != "started")
                .collect();
            if items.len() >= n {
                // In call order: an end record is appended after its answer is written, so
                // it may land after a later call's; decision ids (UUIDv7) are minted in order
                // at the start of each call.
                items.sort_by(|a, b| a["decision_id"].as_str().cmp(&b["decision_id"].as_str()));
                return items;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} model_call records for {agent}");
    }

    /// Audit records matching `query` (newest first).
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let r = get(&self.control(&format!("/api/v1/audit?{query}&limit=1000")), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["items"].as_array().cloned().unwrap_or_default()
    }

    /// Audit records matching `query` (newest first), once `done` holds for them: a record
    /// appended without waiting for its group commit (config changes, allowed calls) is listed
    /// once that commit is done, which may be just after the answer arrived. Panics with what
    /// was listed after 10 s.
    pub async fn audit_until(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut items = Vec::new();
        for _ in 0..200 {
            items = self.audit(query).await;
            if done(&items) {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the audit records for {query} never got there: {items:?}");
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        get(&self.control("/metrics"), &[]).await.text()
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

    /// Send a non-streamed model call for `agent` in the background (it may be held).
    pub fn call(&self, agent: &str, model: &str, prompt: &str) -> tokio::task::JoinHandle<HttpResponse> {
        let url = self.url(&format!("/a/{agent}/fake/v1/chat/completions"));
        let body = chat(model, prompt);
        tokio::spawn(async move { post_json(&url, &[], &body).await })
    }
}

/// An `authorization: Bearer <token>` header list.
pub fn bearer(token: &str) -> Vec<(&'static str, &'static str)> {
    vec![("authorization", Box::leak(format!("Bearer {token}").into_boxed_str()))]
}

/// A non-streamed OpenAI chat body.
pub fn chat(model: &str, prompt: &str) -> Value {
    json!({"model": model, "stream": false, "messages": [{"role": "user", "content": prompt}]})
}

/// The assistant text of a non-streamed OpenAI chat reply.
pub fn reply_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}
