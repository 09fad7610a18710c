//! Attach's edits of ClawButler's own config file (`--config F`): the `[[upstreams]]` it adds
//! or gives an `api_key_env`, and `[prices]` from OpenClaw's catalog (`wire.rs`).
//!
//! Safety: the edit keeps the file's comments and layout (`toml_edit`), the caller validates
//! the result as a config before anything is written, the original is copied to `<F>.bak`
//! (never over a different existing `.bak`: then `<F>.bak.<unix time>`), and the new text
//! replaces the file by writing a temporary file beside it, syncing it and renaming it over
//! (so a crash leaves the old file or the new one, never half of each; the mode is kept).
//! The record keeps both SHA-256 digests: detach puts the backup back byte for byte when the
//! file is still what attach wrote, and otherwise removes only what attach added.
//!
//! A file with no `[[upstreams]]` runs on the built-in `openai` and `anthropic` upstreams;
//! adding one entry would drop those, so the edit first writes them out (`materialize`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use super::wire::CbChange;
use super::UpstreamRef;

/// Errors editing or writing the config file.
#[derive(Debug, thiserror::Error)]
pub enum CbConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid TOML: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: `upstreams` is neither [[upstreams]] tables nor an array")]
    Shape { path: PathBuf },
}

/// What attach did to the file, kept in the attach record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbFileRecord {
    pub path: PathBuf,
    /// The copy of the file as it was.
    pub backup: PathBuf,
    pub before_sha256: String,
    pub after_sha256: String,
    pub changes: Vec<CbChange>,
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn upstream_table(u: &UpstreamRef) -> Table {
    let mut t = Table::new();
    t["name"] = value(u.name.as_str());
    t["kind"] = value(u.kind.as_str());
    t["url"] = value(u.url.as_str());
    if let Some(e) = &u.api_key_env {
        t["api_key_env"] = value(e.as_str());
    }
    t
}

/// An `[[mcp_servers]]` table for `server` (its TOML as the MCP crate writes it).
fn mcp_table(path: &Path, server: &::mcp::McpServerConfig) -> Result<Table, CbConfigError> {
    let parse = |msg: String| CbConfigError::Parse { path: path.into(), msg };
    let text = ::mcp::attach::to_toml(std::slice::from_ref(server)).map_err(parse)?;
    let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| parse(e.to_string()))?;
    match doc.get("mcp_servers") {
        Some(Item::ArrayOfTables(aot)) => aot.get(0).cloned().ok_or_else(|| parse("no [[mcp_servers]] table".into())),
        _ => Err(parse("no [[mcp_servers]] table".into())),
    }
}

/// `text` with `changes` applied; `materialize` are the upstreams in force when the file
/// declares none (written out first).
pub fn edit(
    path: &Path,
    text: &str,
    changes: &[CbChange],
    materialize: &[UpstreamRef],
) -> Result<String, CbConfigError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| CbConfigError::Parse { path: path.into(), msg: e.to_string() })?;
    let shape = || CbConfigError::Shape { path: path.into() };
    let needs_upstreams =
        changes.iter().any(|c| matches!(c, CbChange::AddUpstream { .. } | CbChange::SetKeyEnv { .. }));
    if needs_upstreams && doc.get("upstreams").is_none() {
        let mut aot = ArrayOfTables::new();
        for u in materialize {
            aot.push(upstream_table(u));
        }
        doc.insert("upstreams", Item::ArrayOfTables(aot));
    }
    for c in changes {
        match c {
            CbChange::AddUpstream { upstream } => match doc.get_mut("upstreams") {
                Some(Item::ArrayOfTables(aot)) => aot.push(upstream_table(upstream)),
                Some(Item::Value(toml_edit::Value::Array(arr))) => {
                    arr.push(upstream_table(upstream).into_inline_table());
                }
                _ => return Err(shape()),
            },
            CbChange::SetKeyEnv { name, env } => match doc.get_mut("upstreams") {
                Some(Item::ArrayOfTables(aot)) => {
                    for t in aot.iter_mut().filter(|t| t.get("name").and_then(|n| n.as_str()) == Some(name)) {
                        t["api_key_env"] = value(env.as_str());
                    }
                }
                Some(Item::Value(toml_edit::Value::Array(arr))) => {
                    for t in arr.iter_mut().filter_map(|v| v.as_inline_table_mut()) {
                        if t.get("name").and_then(|n| n.as_str()) == Some(name) {
                            t.insert("api_key_env", env.as_str().into());
                        }
                    }
                }
                _ => return Err(shape()),
            },
            CbChange::AddMcpServer { server, .. } => {
                let t = mcp_table(path, server)?;
                match doc.entry("mcp_servers").or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new())) {
                    Item::ArrayOfTables(aot) => aot.push(t),
                    Item::Value(toml_edit::Value::Array(arr)) => arr.push(t.into_inline_table()),
                    _ => return Err(shape()),
                }
            }
            CbChange::AddPrice { model, input, output, cached_input, cache_write } => {
                let prices = doc.entry("prices").or_insert_with(|| {
                    let mut t = Table::new();
                    t.set_implicit(true);
                    Item::Table(t)
                });
                let Some(prices) = prices.as_table_like_mut() else { return Err(shape()) };
                let mut t = Table::new();
                t["input"] = value(*input);
                t["output"] = value(*output);
                if let Some(c) = cached_input {
                    t["cached_input"] = value(*c);
                }
                if let Some(w) = cache_write {
                    t["cache_write"] = value(*w);
                }
                prices.insert(model, Item::Table(t));
            }
        }
    }
    Ok(doc.to_string())
}

/// Remove what `changes` added from `text` (detach when the file changed since attach).
pub fn unedit(path: &Path, text: &str, changes: &[CbChange]) -> Result<String, CbConfigError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| CbConfigError::Parse { path: path.into(), msg: e.to_string() })?;
    for c in changes {
        match c {
            CbChange::AddUpstream { upstream } => {
                if let Some(Item::ArrayOfTables(aot)) = doc.get_mut("upstreams") {
                    aot.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(upstream.name.as_str()));
                }
            }
            CbChange::SetKeyEnv { name, env } => {
                if let Some(Item::ArrayOfTables(aot)) = doc.get_mut("upstreams") {
                    for t in aot.iter_mut().filter(|t| t.get("name").and_then(|n| n.as_str()) == Some(name)) {
                        if t.get("api_key_env").and_then(|e| e.as_str()) == Some(env) {
                            t.remove("api_key_env");
                        }
                    }
                }
            }
            CbChange::AddMcpServer { server, .. } => match doc.get_mut("mcp_servers") {
                Some(Item::ArrayOfTables(aot)) => {
                    aot.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(server.name.as_str()));
                }
                Some(Item::Value(toml_edit::Value::Array(arr))) => arr.retain(|v| {
                    v.as_inline_table().and_then(|t| t.get("name")).and_then(|n| n.as_str())
                        != Some(server.name.as_str())
                }),
                _ => {}
            },
            CbChange::AddPrice { model, .. } => {
                if let Some(p) = doc.get_mut("prices").and_then(Item::as_table_like_mut) {
                    p.remove(model);
                }
            }
        }
    }
    Ok(doc.to_string())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CbConfigError + '_ {
    move |source| CbConfigError::Io { path: path.to_path_buf(), source }
}

/// Replace `path` with `bytes` atomically (temporary file beside it, fsync, rename), keeping
/// its permission bits.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<(), CbConfigError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.clawbutler-{}.tmp", std::process::id()));
    let perms = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    if let Some(p) = perms {
        std::fs::set_permissions(&tmp, p).map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Back `path` up and write `new_text` over it; the record of what was done.
pub fn write(path: &Path, new_text: &str, changes: &[CbChange]) -> Result<CbFileRecord, CbConfigError> {
    let before = std::fs::read(path).map_err(io(path))?;
    let mut backup = PathBuf::from(format!("{}.bak", path.display()));
    if std::fs::read(&backup).is_ok_and(|b| b != before) {
        backup = PathBuf::from(format!("{}.bak.{}", path.display(), chrono::Utc::now().timestamp()));
    }
    std::fs::write(&backup, &before).map_err(io(&backup))?;
    if let Ok(m) = std::fs::metadata(path) {
        std::fs::set_permissions(&backup, m.permissions()).map_err(io(&backup))?;
    }
    replace_atomically(path, new_text.as_bytes())?;
    Ok(CbFileRecord {
        path: path.to_path_buf(),
        backup,
        before_sha256: sha(&before),
        after_sha256: sha(new_text.as_bytes()),
        changes: changes.to_vec(),
    })
}

/// Undo [`write`]: the backup byte for byte when the file is still what attach wrote, else
/// only attach's additions removed. Returns the line to print.
pub fn restore(rec: &CbFileRecord) -> Result<String, CbConfigError> {
    let now = std::fs::read(&rec.path).map_err(io(&rec.path))?;
    if sha(&now) == rec.before_sha256 {
        return Ok(format!("= {}: already as before attach", rec.path.display()));
    }
    let backup = std::fs::read(&rec.backup).ok().filter(|b| sha(b) == rec.before_sha256);
    if let (true, Some(b)) = (sha(&now) == rec.after_sha256, backup) {
        replace_atomically(&rec.path, &b)?;
        return Ok(format!("restored {} byte for byte (from {})", rec.path.display(), rec.backup.display()));
    }
    let text = String::from_utf8_lossy(&now).to_string();
    let undone = unedit(&rec.path, &text, &rec.changes)?;
    replace_atomically(&rec.path, undone.as_bytes())?;
    Ok(format!(
        "! {} changed since attach: removed only the entries attach added (the original is in {})",
        rec.path.display(),
        rec.backup.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::UpstreamKind;

    const FILE: &str = "# my sidecar\n[server]\nlisten = \"127.0.0.1:8787\" # data\n\n# the vendors\n[[upstreams]]\nname = \"openai\"\nkind = \"openai\"\nurl = \"https://api.openai.com/v1\"\n\n[gateway]\nurl = \"ws://127.0.0.1:18789\"\n";

    fn changes() -> Vec<CbChange> {
        vec![
            CbChange::SetKeyEnv { name: "openai".into(), env: "OPENAI_API_KEY".into() },
            CbChange::AddUpstream {
                upstream: UpstreamRef {
                    name: "anthropic".into(),
                    kind: UpstreamKind::Anthropic,
                    url: "https://api.anthropic.com".into(),
                    api_key_env: Some("ANTHROPIC_API_KEY".into()),
                },
            },
            CbChange::AddPrice {
                model: "gpt-5.4-mini".into(),
                input: 0.75,
                output: 4.5,
                cached_input: Some(0.075),
                cache_write: None,
            },
        ]
    }

    #[test]
    fn edits_keep_comments_and_parse_back() {
        let p = Path::new("c.toml");
        let out = edit(p, FILE, &changes(), &[]).unwrap();
        assert!(out.contains("# my sidecar") && out.contains("# data") && out.contains("# the vendors"), "{out}");
        let v: toml::Table = toml::from_str(&out).unwrap();
        let ups = v["upstreams"].as_array().unwrap();
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[0]["api_key_env"].as_str(), Some("OPENAI_API_KEY"));
        assert_eq!(ups[1]["kind"].as_str(), Some("anthropic"));
        assert_eq!(v["prices"]["gpt-5.4-mini"]["cached_input"].as_float(), Some(0.075));
        assert_eq!(v["gateway"]["url"].as_str(), Some("ws://127.0.0.1:18789"), "other tables untouched");
        let back = unedit(p, &out, &changes()).unwrap();
        let b: toml::Table = toml::from_str(&back).unwrap();
        assert_eq!(b, toml::from_str::<toml::Table>(FILE).unwrap(), "unedit removes exactly the additions");
    }

    #[test]
    fn mcp_servers_are_appended_and_removed() {
        let p = Path::new("c.toml");
        let moved = ::mcp::attach::plan(&serde_json::json!({"ev": {"url": "http://127.0.0.1:9/mcp"}})).unwrap();
        let add =
            vec![CbChange::AddMcpServer { openclaw_name: "ev".into(), server: Box::new(moved.servers[0].clone()) }];
        let out = edit(p, FILE, &add, &[]).unwrap();
        assert!(out.contains("# my sidecar"), "{out}");
        let v: toml::Table = toml::from_str(&out).unwrap();
        let servers = v["mcp_servers"].as_array().unwrap();
        assert_eq!(servers[0]["name"].as_str(), Some("ev"));
        assert_eq!(servers[0]["url"].as_str(), Some("http://127.0.0.1:9/mcp"));
        assert_eq!(v["upstreams"].as_array().unwrap().len(), 1, "upstreams untouched");
        let back: toml::Table = toml::from_str(&unedit(p, &out, &add).unwrap()).unwrap();
        assert!(back.get("mcp_servers").is_none_or(|s| s.as_array().is_some_and(Vec::is_empty)), "{back:?}");
    }

    #[test]
    fn a_file_without_upstreams_gets_the_defaults_written_out_first() {
        let defaults = [UpstreamRef {
            name: "openai".into(),
            kind: UpstreamKind::Openai,
            url: "https://api.openai.com/v1".into(),
            api_key_env: None,
        }];
        let out = edit(Path::new("c.toml"), "[server]\n", &changes(), &defaults).unwrap();
        let v: toml::Table = toml::from_str(&out).unwrap();
        let names: Vec<&str> = v["upstreams"].as_array().unwrap().iter().filter_map(|u| u["name"].as_str()).collect();
        assert_eq!(names, ["openai", "anthropic"]);
    }

    #[test]
    fn write_backs_up_and_restore_is_byte_exact_or_surgical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clawbutler.toml");
        std::fs::write(&path, FILE).unwrap();
        let new = edit(&path, FILE, &changes(), &[]).unwrap();
        let rec = write(&path, &new, &changes()).unwrap();
        assert_eq!(std::fs::read_to_string(&rec.backup).unwrap(), FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        assert!(restore(&rec).unwrap().contains("byte for byte"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);

        // Changed since attach: only attach's entries go, the operator's edit stays.
        let rec = write(&path, &new, &changes()).unwrap();
        std::fs::write(&path, format!("{new}\n[audit]\n")).unwrap();
        assert!(restore(&rec).unwrap().contains("changed since attach"));
        let now: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(now.contains_key("audit") && !now.contains_key("prices"), "{now:?}");
    }
}
