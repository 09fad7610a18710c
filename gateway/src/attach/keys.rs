//! How `attach` gives each agent its per-agent key (docs/security.md): the secrets go into one
//! JSON file (`{"<agent>": "cbk_..."}`, mode 0600, written atomically so it is a single-link
//! regular file as OpenClaw's file secret provider demands), an OpenClaw file secrets provider
//! `clawbutler-agent-keys` points at it, and each `cb-<agent>` provider references its entry
//! (`{"source": "file", "provider": "clawbutler-agent-keys", "id": "/<agent>"}`). A file
//! reference applies live through `config.patch` (verified on OpenClaw 2026.9.6); an env
//! reference would need the variable in the gateway's own environment and a restart.
//!
//! Where the key goes depends on who holds the upstream key: when the sidecar holds it
//! (`api_key_env`) the provider's `apiKey` *is* the agent key (the caller's key is never
//! forwarded); on a pass-through upstream the provider keeps its real `apiKey` and sends the
//! agent key in the `x-clawbutler-agent-key` header, which the sidecar strips.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::GatewayError;

/// The OpenClaw secrets provider attach adds.
pub const SECRETS_PROVIDER: &str = "clawbutler-agent-keys";

/// The header that carries an agent key beside a real upstream key (proxy `auth.rs`).
pub const AGENT_KEY_HEADER: &str = "x-clawbutler-agent-key";

/// The SecretRef of `agent`'s key (agent ids contain no `/` or `~`, so the pointer needs no
/// escaping).
pub fn key_ref(agent: &str) -> Value {
    json!({"source": "file", "provider": SECRETS_PROVIDER, "id": format!("/{agent}")})
}

/// The secrets provider entry for the key file.
pub fn provider_entry(file: &Path) -> Value {
    json!({"source": "file", "path": file.display().to_string(), "mode": "json"})
}

/// Wire `agent`'s key into its provider `p`.
pub fn wire(p: &mut Value, agent: &str, sidecar_holds_key: bool) {
    if sidecar_holds_key {
        p["apiKey"] = key_ref(agent);
    } else {
        if !p["headers"].is_object() {
            p["headers"] = json!({});
        }
        p["headers"][AGENT_KEY_HEADER] = key_ref(agent);
    }
}

/// Where the key file for a gateway lives: beside the attach record, as an absolute path
/// (OpenClaw resolves it from its own working directory).
pub fn file_path(data_dir: &Path, gateway_url: &str) -> Result<PathBuf, GatewayError> {
    let dir = data_dir.join("gateway");
    std::fs::create_dir_all(&dir).map_err(|source| GatewayError::RecordFile { path: dir.clone(), source })?;
    let dir = dir.canonicalize().map_err(|source| GatewayError::RecordFile { path: dir.clone(), source })?;
    let safe: String = gateway_url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Ok(dir.join(format!("agent-keys-{safe}.json")))
}

/// Write the secrets (owner-only, replaced atomically: a fresh inode with one link).
pub fn write(file: &Path, secrets: &BTreeMap<String, String>) -> Result<(), GatewayError> {
    let err = |source| GatewayError::RecordFile { path: file.to_path_buf(), source };
    let tmp = file.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let body = serde_json::to_vec_pretty(secrets)
        .map_err(|source| GatewayError::RecordJson { path: file.to_path_buf(), source })?;
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(&body).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, file).map_err(err)
}

/// Remove the key file (absent is fine).
pub fn remove(file: &Path) -> Result<(), GatewayError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(GatewayError::RecordFile { path: file.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_the_api_key_or_the_header_and_the_file_is_private() {
        let mut held = json!({"baseUrl": "x", "apiKey": "clawbutler-managed"});
        wire(&mut held, "ops", true);
        assert_eq!(held["apiKey"], key_ref("ops"));
        let mut pass = json!({"baseUrl": "x", "apiKey": {"source": "env", "provider": "default", "id": "OPENAI_KEY"}});
        wire(&mut pass, "ops", false);
        assert_eq!(pass["apiKey"]["id"], "OPENAI_KEY", "the real key stays");
        assert_eq!(
            pass["headers"][AGENT_KEY_HEADER],
            json!({"source": "file", "provider": SECRETS_PROVIDER, "id": "/ops"})
        );

        let dir = tempfile::tempdir().unwrap();
        let file = file_path(dir.path(), "ws://127.0.0.1:1").unwrap();
        assert!(file.is_absolute());
        let secrets = BTreeMap::from([("ops".to_string(), "cbk_1".to_string())]);
        write(&file, &secrets).unwrap();
        write(&file, &secrets).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(v, json!({"ops": "cbk_1"}));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&file).unwrap();
            assert_eq!(m.mode() & 0o777, 0o600);
            assert_eq!(m.nlink(), 1);
        }
        remove(&file).unwrap();
        remove(&file).unwrap();
        assert!(!file.exists());
    }
}
