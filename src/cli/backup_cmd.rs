//! `clawbutler backup create|list|inspect|restore`: encrypted gateway backups (`.cbpkg`),
//! through the running sidecar's control API (`docs/config-safety.md`, "Backups"). The key
//! is a passphrase from an environment variable (never a flag: it would show in `ps`) or a
//! key file read here and sent as hex.

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::{ApiArgs, ApiClient};
use super::config_cmd::{out, s};
use super::config_held as held;
use super::{Cli, CliResult};

/// The key of a package.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Environment variable holding the passphrase.
    #[arg(long, default_value = "CLAWBUTLER_BACKUP_PASSPHRASE")]
    pub passphrase_env: String,
    /// A key file instead of a passphrase: 32 bytes, raw, hex or base64.
    #[arg(long)]
    pub key_file: Option<std::path::PathBuf>,
}

/// Which package: a file here or a stored one.
#[derive(Debug, Clone, Args)]
pub struct PackageArgs {
    /// A `.cbpkg` file.
    pub file: Option<std::path::PathBuf>,
    /// A package stored by the sidecar.
    #[arg(long, conflicts_with = "file")]
    pub id: Option<String>,
}

/// Backup subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write an encrypted package of the linked gateway (admin).
    Create {
        /// `backup` (secrets included), `clone` (secrets as references), `share` (publishable).
        #[arg(long, default_value = "backup")]
        intent: String,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        note: Option<String>,
        /// Also download the package to this file.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// List the stored packages.
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Open a package (checks the key and integrity) and show what it holds (admin).
    Inspect {
        #[command(flatten)]
        package: PackageArgs,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Import a package into the linked gateway (admin); `--dry-run` previews only. An import
    /// with a critical change waits for a human in the approval inbox (exit 4, or with
    /// `--wait` until it is decided: exit 0 applied, 1 not applied or incomplete).
    Restore {
        #[command(flatten)]
        package: PackageArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// `merge`, `replace_scope` or `exact_restore`.
        #[arg(long, default_value = "merge")]
        strategy: String,
        /// replace_scope: agents to replace (comma-separated).
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
        /// replace_scope: top-level sections to replace (comma-separated; `cron` = the cron jobs).
        #[arg(long, value_delimiter = ',')]
        sections: Vec<String>,
        /// A clone package's secret, `path=ENV_VAR` (the value is read from that variable).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        wait: held::WaitArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
}

fn key_json(k: &KeyArgs) -> Result<Map<String, Value>, Box<dyn std::error::Error + Send + Sync>> {
    let mut m = Map::new();
    match &k.key_file {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let key =
                gateway::backup::container::parse_key_file(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            m.insert("key".into(), json!(hex::encode(key)));
        }
        None => {
            let pass = std::env::var(&k.passphrase_env)
                .map_err(|_| format!("set the passphrase in ${} (or pass --key-file)", k.passphrase_env))?;
            m.insert("passphrase".into(), json!(pass));
        }
    }
    Ok(m)
}

fn package_json(p: &PackageArgs, m: &mut Map<String, Value>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match (&p.file, &p.id) {
        (Some(f), None) => {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            m.insert("package".into(), json!(base64::engine::general_purpose::STANDARD.encode(bytes)));
        }
        (None, Some(id)) => {
            m.insert("id".into(), json!(id));
        }
        _ => return Err("give a .cbpkg file or --id".into()),
    }
    Ok(())
}

fn print_preview(p: &Value) {
    for (kind, label) in [("agents", "agent"), ("sections", "section")] {
        for (name, changes) in p["by"][kind].as_object().into_iter().flatten() {
            println!("  {label} {name}:");
            for c in changes.as_array().into_iter().flatten() {
                println!("    [{:<8}] {}: {} -> {}", s(&c["risk"]), s(&c["path"]), s(&c["before"]), s(&c["after"]));
            }
        }
    }
    for k in ["add", "update", "remove"] {
        for j in p["cron"][k].as_array().into_iter().flatten() {
            println!("  cron {k} {}", s(j));
        }
    }
    for f in p["files"].as_array().into_iter().flatten() {
        println!("  file {} of {}", s(&f["name"]), s(&f["agent"]));
    }
    for k in p["skipped"].as_array().into_iter().flatten() {
        println!("  skipped {}: {}", s(&k["path"]), s(&k["why"]));
    }
}

/// Run a backup subcommand.
pub async fn run(cli: &Cli, c: &BackupCmd) -> CliResult {
    match c {
        BackupCmd::Create { intent, key, note, out: file, api, json } => {
            let client = ApiClient::from_cli(cli, api)?;
            let mut body = key_json(key)?;
            body.insert("intent".into(), json!(intent));
            if let Some(n) = note {
                body.insert("note".into(), json!(n));
            }
            let v = client.post("/api/v1/backups", &Value::Object(body)).await?;
            let id = s(&v["id"]);
            if let Some(f) = file {
                let bytes = client.get_bytes(&format!("/api/v1/backups/{id}/download")).await?;
                std::fs::write(f, bytes).map_err(|e| format!("{}: {e}", f.display()))?;
            }
            if !out(&v, *json) {
                println!("{intent} package {id}: {} bytes in {} ms", s(&v["bytes"]), s(&v["took_ms"]));
                let missing = &v["manifest"]["secrets"]["missing"];
                if missing.as_array().is_some_and(|m| !m.is_empty()) {
                    println!("  secrets MISSING (not in the package): {}", s(missing));
                    println!("  why: {}", s(&v["manifest"]["secrets"]["missing_why"]));
                }
                if let Some(f) = file {
                    println!("  written to {}", f.display());
                }
            }
            Ok(0)
        }
        BackupCmd::List { api, json } => {
            let v = ApiClient::from_cli(cli, api)?.get("/api/v1/backups").await?;
            if !out(&v, *json) {
                for i in v["items"].as_array().into_iter().flatten() {
                    println!(
                        "{:<40} {:<7} {:<26} {} bytes",
                        s(&i["id"]),
                        s(&i["intent"]),
                        s(&i["created_at"]),
                        s(&i["bytes"])
                    );
                }
            }
            Ok(0)
        }
        BackupCmd::Inspect { package, key, api, json } => {
            let mut body = key_json(key)?;
            package_json(package, &mut body)?;
            let v = ApiClient::from_cli(cli, api)?.post("/api/v1/backups/inspect", &Value::Object(body)).await?;
            if !out(&v, *json) {
                let m = &v["manifest"];
                println!(
                    "{} package {} (format {}), made {} by {}",
                    s(&m["intent"]),
                    s(&m["id"]),
                    s(&v["format"]),
                    s(&m["created_at"]),
                    s(&m["created_by"])
                );
                println!(
                    "  integrity and key verified; agents {}; cron jobs {}",
                    s(&v["contents"]["agents"]),
                    s(&v["contents"]["cron_jobs"])
                );
                println!("  files {}; secrets {}", s(&v["contents"]["files"]), s(&m["secrets"]));
            }
            Ok(0)
        }
        BackupCmd::Restore { package, key, strategy, agents, sections, secrets, dry_run, wait, api, json } => {
            let mut body = key_json(key)?;
            package_json(package, &mut body)?;
            let mut given = Map::new();
            for pair in secrets {
                let (path, var) =
                    pair.split_once('=').ok_or_else(|| format!("--secret {pair}: expected path=ENV_VAR"))?;
                let value = std::env::var(var).map_err(|_| format!("--secret {path}: ${var} is not set"))?;
                given.insert(path.to_string(), json!(value));
            }
            body.insert("strategy".into(), json!(strategy));
            body.insert("agents".into(), json!(agents));
            body.insert("sections".into(), json!(sections));
            body.insert("secrets".into(), Value::Object(given));
            body.insert("dry_run".into(), json!(dry_run));
            let client = ApiClient::from_cli(cli, api)?;
            let v = client.post("/api/v1/backups/import", &Value::Object(body)).await?;
            if v["status"] == "awaiting_approval" {
                if !*json {
                    print_preview(&v["preview"]);
                }
                return held::follow(&client, held::Change::Import, &v, wait.wait, *json).await;
            }
            if !out(&v, *json) {
                let p = if *dry_run { &v } else { &v["preview"] };
                println!(
                    "{} {strategy}: {} config change(s), worst risk {}",
                    if *dry_run { "PREVIEW (nothing changed):" } else { "imported," },
                    p["changes"].as_array().map_or(0, Vec::len),
                    s(&p["risk"])
                );
                print_preview(p);
                if !*dry_run {
                    println!("  checkpoint before the import: {} (restore it to undo)", s(&v["checkpoint"]));
                    for e in v["errors"].as_array().into_iter().flatten() {
                        println!("  NOT APPLIED: {}", s(e));
                    }
                }
            }
            Ok(if v["complete"] == false { 1 } else { 0 })
        }
    }
}
