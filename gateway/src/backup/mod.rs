//! Encrypted gateway backups, `.cbpkg` (issue #16, `docs/config-safety.md` "Backups"): a
//! package of the linked gateway's portable config (every section but the machine-local
//! ones), its cron jobs (`cron.list`, those the gateway does not manage itself) and every
//! agent's workspace identity files (`agents.files.list/get`), sealed with
//! [`container`]. Three intents decide what happens to secrets ([`secrets`]); an import
//! previews and applies a package with one of three strategies ([`plan`], `import.rs`); one
//! with a critical change waits for a human first ([`hold`]).
//! Packages are stored under `<data_dir>/backups/<id>.cbpkg`.

pub mod container;
mod hold;
mod import;
pub mod plan;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use base64::Engine;
use governance::backups::{BackupError as E, CreateRequest, InspectRequest, KeyInput, PackageInput};
use serde_json::{json, Map, Value};

use crate::config_safety::scope::GLOBAL;
use crate::{Gateway, GatewayError};
use container::{PackageError, Secret};

/// What a package is for (see [`secrets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Backup,
    Clone,
    Share,
}

impl Intent {
    pub fn parse(s: &str) -> Result<Intent, E> {
        match s {
            "backup" => Ok(Intent::Backup),
            "clone" => Ok(Intent::Clone),
            "share" => Ok(Intent::Share),
            other => Err(E::BadRequest(format!("unknown intent '{other}': use backup, clone or share"))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Backup => "backup",
            Intent::Clone => "clone",
            Intent::Share => "share",
        }
    }
}

/// The key a request gives.
pub fn secret_of(k: &KeyInput) -> Result<Secret, E> {
    match (&k.passphrase, &k.key) {
        (Some(p), None) if !p.is_empty() => Ok(Secret::Passphrase(p.clone())),
        (None, Some(key)) => {
            container::parse_key_file(key.as_bytes()).map(Secret::Key).map_err(|e| E::BadRequest(e.to_string()))
        }
        (Some(_), Some(_)) => Err(E::BadRequest("give a passphrase or a key, not both".into())),
        _ => Err(E::BadRequest("a package needs a key: give `passphrase` or `key` (32 bytes, hex or base64)".into())),
    }
}

fn refused(e: PackageError) -> E {
    E::Refused(e.to_string())
}

/// Stored packages (`<data_dir>/backups`).
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(data_dir: &std::path::Path) -> Store {
        Store { dir: data_dir.join("backups") }
    }

    fn path(&self, id: &str) -> Result<PathBuf, E> {
        let ok = !id.is_empty() && id.len() <= 96 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(E::BadRequest(format!("'{id}' is not a package id")));
        }
        Ok(self.dir.join(format!("{id}.cbpkg")))
    }

    fn write(&self, id: &str, bytes: &[u8]) -> Result<(), E> {
        let path = self.path(id)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| E::Store(format!("{}: {e}", self.dir.display())))?;
        let tmp = path.with_extension("cbpkg.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| E::Store(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| E::Store(format!("{}: {e}", path.display())))
    }

    pub fn read(&self, id: &str) -> Result<Vec<u8>, E> {
        let path = self.path(id)?;
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => E::NotFound(format!("no backup package '{id}'")),
            _ => E::Store(format!("{}: {e}", path.display())),
        })
    }

    fn head(bytes: &[u8]) -> Value {
        match container::read_manifest(bytes) {
            Ok((m, _)) => {
                let mut v = Value::Object(m.extra);
                v["format"] = json!(m.format);
                v["bytes"] = json!(bytes.len());
                v
            }
            Err(e) => json!({"unreadable": e.to_string(), "bytes": bytes.len()}),
        }
    }

    fn list(&self) -> Result<Vec<Value>, E> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(E::Store(format!("{}: {e}", self.dir.display()))),
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let p = entry.path();
            let Some(id) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".cbpkg")) else {
                continue;
            };
            let bytes = std::fs::read(&p).map_err(|e| E::Store(format!("{}: {e}", p.display())))?;
            let mut h = Self::head(&bytes);
            h["id"] = json!(id);
            out.push(h);
        }
        out.sort_by(|a, b| b["created_at"].as_str().cmp(&a["created_at"].as_str()));
        Ok(out)
    }
}

/// The gateway as read for a package.
pub(crate) struct Live {
    pub hash: String,
    pub config: Value,
    /// `cron.list` jobs the gateway does not manage itself, as the gateway shows them.
    pub cron: Vec<Value>,
    /// Agent → file name → content.
    pub files: BTreeMap<String, BTreeMap<String, String>>,
}

/// The fields of a cron job that make it what it is (not its id, state or revision).
const CRON_FIELDS: [&str; 13] = [
    "name",
    "agentId",
    "description",
    "enabled",
    "schedule",
    "sessionTarget",
    "wakeMode",
    "payload",
    "delivery",
    "deleteAfterRun",
    "displayName",
    "failureAlert",
    "pacing",
];

/// Jobs the gateway creates and keeps itself (heartbeats, declared jobs) are not packaged.
fn managed(job: &Value) -> bool {
    job.pointer("/payload/kind").and_then(Value::as_str) == Some("heartbeat")
        || job.get("declarationKey").is_some_and(|d| !d.is_null())
}

/// A job's portable fields.
pub fn portable_job(job: &Value) -> Value {
    let o: Map<String, Value> = CRON_FIELDS
        .iter()
        .filter_map(|k| job.get(*k).filter(|v| !v.is_null()).map(|v| (k.to_string(), v.clone())))
        .collect();
    Value::Object(o)
}

/// `agentId/name` of a job, for previews.
fn plan_job_name(j: &Value) -> String {
    format!("{}/{}", j["agentId"].as_str().unwrap_or_default(), j["name"].as_str().unwrap_or_default())
}

fn summary(config: &Value, cron: &[Value], files: &BTreeMap<String, BTreeMap<String, String>>) -> Value {
    let agents: Vec<&String> =
        config.pointer("/agents/entries").and_then(Value::as_object).map(|o| o.keys().collect()).unwrap_or_default();
    let sections: Vec<&String> = config.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    let file_names: BTreeMap<&String, Vec<&String>> = files.iter().map(|(a, f)| (a, f.keys().collect())).collect();
    let jobs: Vec<Value> = cron.iter().map(|j| json!({"agentId": j["agentId"], "name": j["name"]})).collect();
    json!({"agents": agents, "sections": sections, "cron_jobs": jobs, "files": file_names})
}

impl Gateway {
    /// Read what a package holds from the live gateway.
    pub(crate) async fn live_state(&self) -> Result<Live, GatewayError> {
        let v = self.link.call("config.get", json!({})).await?;
        let hash = v.get("hash").and_then(Value::as_str).unwrap_or_default().to_string();
        let config =
            v.get("parsed").filter(|p| p.is_object()).or_else(|| v.get("config")).cloned().unwrap_or(json!({}));
        let jobs = self.link.call("cron.list", json!({"includeDisabled": true, "limit": 200})).await?;
        let cron: Vec<Value> =
            jobs.get("jobs").and_then(Value::as_array).into_iter().flatten().filter(|j| !managed(j)).cloned().collect();
        let mut files = BTreeMap::new();
        let ids: Vec<String> = config
            .pointer("/agents/entries")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            files.insert(id.clone(), self.agent_files(&id, |_| true, None).await?);
        }
        Ok(Live { hash, config, cron, files })
    }

    /// The gateway's config file, when configured and readable (else why not).
    fn config_file(&self) -> Result<Value, String> {
        let Some(p) = &self.settings.config_file else {
            return Err("[gateway] config_file is not set, so the sidecar cannot read secret values".into());
        };
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not plain JSON ({e})", p.display()))
    }

    /// Seal a package of `live` for `intent`; returns its id, bytes and manifest.
    pub(crate) async fn build_package(
        &self,
        live: &Live,
        intent: Intent,
        secret: &Secret,
        actor: &str,
        note: Option<&str>,
    ) -> Result<(String, Vec<u8>, Value), E> {
        let mut config = plan::portable(&live.config);
        let mut cron: Vec<Value> = live.cron.iter().map(portable_job).collect();
        let mut files = live.files.clone();
        let file = self.config_file();
        // Every secret value the sidecar can know, for the scans.
        let mut known: BTreeSet<String> = BTreeSet::new();
        if let Ok(f) = &file {
            let (_, _, values) = secrets::fill(&mut live.config.clone(), Some(f));
            known.extend(values);
            let (_, _, all) = secrets::fill(&mut f.clone(), None);
            known.extend(all);
        }
        let mut sec = json!({});
        match intent {
            Intent::Backup => {
                let (filled, missing, _) = secrets::fill(&mut config, file.as_ref().ok());
                sec = json!({"included": filled.len(), "missing": missing});
                if !missing.is_empty() {
                    sec["missing_why"] = json!(file.as_ref().err().cloned().unwrap_or_else(|| {
                        "not in the gateway's config file (set outside it, e.g. by an environment variable)".into()
                    }));
                }
            }
            Intent::Clone => {
                sec = json!({"references": secrets::to_references(&mut config)});
            }
            Intent::Share => {
                let mut removed = secrets::strip_for_share(&mut config);
                for (agent, fs) in files.iter_mut() {
                    fs.retain(|name, content| {
                        let keep = !secrets::PERSONAL_FILES.contains(&name.as_str())
                            && secrets::scan(&json!(content), &known).is_empty();
                        if !keep {
                            removed.push(format!("files.{agent}.{name}"));
                        }
                        keep
                    });
                }
                cron.retain(|j| {
                    let keep = secrets::scan(j, &known).is_empty();
                    if !keep {
                        removed.push(format!("cron.{}", j["name"].as_str().unwrap_or_default()));
                    }
                    keep
                });
                sec = json!({"removed": removed});
            }
        }
        let payload = json!({"config": config, "cron": cron, "files": files});
        if intent != Intent::Backup {
            // Verified by a scan of what is about to be sealed: for `share` anything that looks
            // like a secret, a token, a personal path or a placeholder; for `clone` the secret
            // values this gateway has.
            let findings = secrets::scan(&payload, &known);
            let findings: Vec<_> = match intent {
                Intent::Clone => findings.into_iter().filter(|f| f.kind == "a secret value of this gateway").collect(),
                _ => findings,
            };
            if !findings.is_empty() {
                return Err(E::Refused(format!(
                    "the {} package was not written: its scan found {}",
                    intent.as_str(),
                    findings.iter().map(|f| format!("{} at {}", f.kind, f.at)).collect::<Vec<_>>().join("; ")
                )));
            }
        }
        let now = chrono::Utc::now();
        let mut rnd = [0u8; 3];
        getrandom::getrandom(&mut rnd).map_err(|e| E::Store(e.to_string()))?;
        let id = format!("{}-{}-{}", now.format("%Y%m%dT%H%M%SZ"), intent.as_str(), hex::encode(rnd));
        let mut extra = Map::new();
        extra.insert("id".into(), json!(id));
        extra.insert("intent".into(), json!(intent.as_str()));
        extra.insert("created_at".into(), json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        extra.insert("created_by".into(), json!(actor));
        extra.insert("clawbutler".into(), json!(env!("CARGO_PKG_VERSION")));
        extra.insert("source_gateway".into(), json!(self.link.url()));
        extra.insert("source_hash".into(), json!(live.hash));
        if let Some(n) = note {
            extra.insert("note".into(), json!(n));
        }
        extra.insert("summary".into(), summary(&config, &cron, &files));
        extra.insert("secrets".into(), sec);
        let bytes = container::seal_off_runtime(payload, extra.clone(), secret.clone(), container::DEFAULT_LOG_N)
            .await
            .map_err(|e| E::BadRequest(e.to_string()))?;
        Ok((id, bytes, Value::Object(extra)))
    }

    async fn create_backup(&self, req: CreateRequest, actor: &str) -> Result<Value, E> {
        let t0 = Instant::now();
        let intent = Intent::parse(&req.intent)?;
        let secret = secret_of(&req.key)?;
        if !self.link.is_connected() {
            return Err(E::Unavailable("the gateway link is down: cannot read OpenClaw's config now".into()));
        }
        let live = self.live_state().await.map_err(|e| E::Unavailable(e.to_string()))?;
        let (id, bytes, manifest) = self.build_package(&live, intent, &secret, actor, req.note.as_deref()).await?;
        self.backups.write(&id, &bytes)?;
        let took_ms = t0.elapsed().as_millis() as u64;
        self.audit_config(
            GLOBAL,
            actor,
            audit::Outcome::BackupCreated,
            None,
            format!("{} package {id} written ({} bytes)", intent.as_str(), bytes.len()),
            json!({"id": id, "intent": intent.as_str(), "bytes": bytes.len(), "secrets": manifest["secrets"]}),
        );
        Ok(json!({"id": id, "bytes": bytes.len(), "took_ms": took_ms, "manifest": manifest}))
    }

    fn package_bytes(&self, p: &PackageInput) -> Result<Vec<u8>, E> {
        match (&p.id, &p.package) {
            (Some(id), None) => self.backups.read(id),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| E::BadRequest(format!("`package` is not base64: {e}"))),
            _ => {
                Err(E::BadRequest("give the package as `id` (a stored one) or `package` (base64), one of them".into()))
            }
        }
    }

    async fn inspect_package(&self, req: InspectRequest) -> Result<Value, E> {
        let bytes = self.package_bytes(&req.package)?;
        let len = bytes.len();
        let secret = secret_of(&req.key)?;
        let (m, payload) = container::open_off_runtime(bytes, secret).await.map_err(refused)?;
        let cron: Vec<Value> = payload["cron"].as_array().cloned().unwrap_or_default();
        let files: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_value(payload["files"].clone()).unwrap_or_default();
        Ok(json!({"format": m.format, "manifest": Value::Object(m.extra), "bytes": len, "verified": true,
                  "contents": summary(&payload["config"], &cron, &files)}))
    }
}

impl governance::backups::Backups for Gateway {
    fn create<'a>(&'a self, req: CreateRequest, actor: &'a str) -> governance::backups::BackupFuture<'a> {
        Box::pin(self.create_backup(req, actor))
    }
    fn list(&self) -> Result<Value, E> {
        Ok(json!({"items": self.backups.list()?}))
    }
    fn manifest(&self, id: &str) -> Result<Value, E> {
        let bytes = self.backups.read(id)?;
        let mut h = Store::head(&bytes);
        h["id"] = json!(id);
        Ok(h)
    }
    fn bytes(&self, id: &str) -> Result<Vec<u8>, E> {
        self.backups.read(id)
    }
    fn inspect<'a>(&'a self, req: InspectRequest) -> governance::backups::BackupFuture<'a> {
        Box::pin(self.inspect_package(req))
    }
    fn import<'a>(
        &'a self,
        req: governance::backups::ImportRequest,
        actor: &'a str,
    ) -> governance::backups::BackupFuture<'a> {
        Box::pin(self.import_package(req, actor))
    }
    fn held_import(&self, approval_id: &str) -> Result<Value, E> {
        Gateway::held_import(self, approval_id)
    }
}
