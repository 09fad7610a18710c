//! The small pieces `Sidecar::start` wires in: the control API's views of the MCP endpoint
//! and the price table, the first admin token (seeded or new, written owner-only), the data
//! dir's permissions, connection caps that fit the open-file limit, the state store's
//! writability gauge and the audit record of a policy reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StartError;
use crate::config::{Config, ConfigError};

/// The control API's view of the MCP endpoint.
pub(super) struct McpView(pub(super) mcp::Mcp);

impl control_api::McpStatus for McpView {
    fn servers(&self) -> serde_json::Value {
        serde_json::to_value(self.0.servers()).unwrap_or_else(|_| serde_json::json!([]))
    }
}

/// The proxy's price table as savings suggestions read it (`cost::PriceBook`).
pub(super) struct PriceView(pub(super) proxy::PriceTable);

impl cost::PriceBook for PriceView {
    fn resolve(&self, model: &str) -> Option<(String, String)> {
        let (name, _) = self.0.resolve(model)?;
        let family = self.0.entries().into_iter().find(|(n, _)| *n == name).map(|(_, f)| f.to_string())?;
        Some((name.to_string(), family))
    }

    fn entries(&self) -> Vec<(String, String)> {
        self.0.entries().into_iter().map(|(n, f)| (n.to_string(), f.to_string())).collect()
    }

    fn cost(&self, model: &str, usage: &audit::Usage) -> Option<f64> {
        self.0.cost(model, usage)
    }
}

/// Seed tokens: `[auth] admin_token` / `CLAWBUTLER_ADMIN_TOKEN` (an empty or weak one is
/// refused), or a new admin token on a first start with none (returned, to be written to
/// [`FIRST_TOKEN_FILE`]).
pub(super) fn seed_tokens(tokens: &control_api::TokenStore, cfg: &Config) -> Result<Option<String>, StartError> {
    let seeded = match &cfg.auth.admin_token {
        Some(t) => Some(t.clone()),
        None => match std::env::var("CLAWBUTLER_ADMIN_TOKEN") {
            Ok(t) => {
                crate::config::check_admin_token("CLAWBUTLER_ADMIN_TOKEN", &t)?;
                Some(t)
            }
            Err(_) => None,
        },
    };
    if let Some(secret) = seeded {
        if tokens.verify(&secret).is_none() {
            tokens.insert(&secret, "seeded-admin", control_api::Role::Admin)?;
        }
        return Ok(None);
    }
    if tokens.is_empty() {
        let (secret, _) = tokens.create("first-admin", control_api::Role::Admin)?;
        return Ok(Some(secret));
    }
    Ok(None)
}

/// File name of the first admin token, in the data dir.
pub const FIRST_TOKEN_FILE: &str = "first-admin-token";

/// Write the first admin token to a 0600 file in the data dir (never to stdout or the
/// journal); returns its path.
pub(super) fn write_first_token(data_dir: &Path, token: &str) -> Result<PathBuf, StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(FIRST_TOKEN_FILE);
    let err = |source| StartError::TokenFile { path: path.clone(), source };
    let tmp = data_dir.join(format!("{FIRST_TOKEN_FILE}.tmp"));
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(format!("{token}\n").as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(path)
}

/// Create the data dir (0700) or tighten an existing one to 0700 (older builds left it 0755
/// with world-readable files inside; a private directory makes them unreachable). A path
/// that is not a directory is refused naming the key and the path.
pub(super) fn private_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    if dir.exists() && !dir.is_dir() {
        return Err(StartError::Config(ConfigError::Invalid {
            key: "server.data_dir".into(),
            msg: format!("{} exists and is not a directory", dir.display()),
        }));
    }
    let err = |source| StartError::DataDir { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

/// Descriptors kept out of both connection caps: the store, the audit log, upstream
/// connections, the gateway link.
pub(super) const FD_RESERVE: u64 = 512;

/// The connection caps in force: the configured ones, lowered (with a warning) when they do
/// not fit the open-file limit, so a flood of connections makes new ones wait instead of
/// running the process out of descriptors (then the audit log, the store and upstream calls
/// would fail too). Returns (data, control).
pub(super) fn connection_caps(cfg: &Config, soft: Option<u64>) -> (usize, usize) {
    let (data, control) = (cfg.proxy.max_connections, cfg.server.control_max_connections);
    let Some(soft) = soft else { return (data, control) };
    if (data + control) as u64 + FD_RESERVE <= soft {
        return (data, control);
    }
    let room = soft.saturating_sub(FD_RESERVE).max(2) as usize;
    let control_fit = control.min((room / 8).max(1));
    let data_fit = data.min(room - control_fit).max(1);
    tracing::warn!(
        open_files = soft,
        data = data_fit,
        control = control_fit,
        "proxy.max_connections + server.control_max_connections do not fit the open-file limit; \
         serving fewer connections at once (raise LimitNOFILE to serve the configured caps)"
    );
    (data_fit, control_fit)
}

/// `clawbutler_state_store_writable`: 1 while the state store can write (checked every 5 s).
pub(super) fn state_store_gauge(registry: &prometheus::Registry) -> Result<prometheus::IntGauge, StartError> {
    let g = prometheus::IntGauge::new(
        "clawbutler_state_store_writable",
        "1 while the state store (sled) can write; 0 after a write error, until a restart",
    )?;
    g.set(1);
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Records every policy reload attempt (the API records its own, with the caller as actor).
pub(super) fn reload_auditor(audit: Arc<audit::AuditLog>) -> policy::ReloadHook {
    Arc::new(move |o: &policy::ReloadOutcome| {
        if o.trigger == policy::ReloadTrigger::Api {
            return;
        }
        let trigger = serde_json::to_value(o.trigger).unwrap_or_default();
        let ev = audit::AuditEvent {
            bundle_revision: Some(o.revision.clone()),
            actor: Some(trigger.as_str().unwrap_or("system").to_string()),
            outcome: Some(if o.error.is_some() {
                audit::Outcome::Error
            } else if o.changed {
                audit::Outcome::Reloaded
            } else {
                audit::Outcome::Unchanged
            }),
            reason: o.error.clone(),
            details: serde_json::to_value(o).unwrap_or_default(),
            ..audit::AuditEvent::new(audit::RecordKind::PolicyReload)
        };
        if let Err(e) = audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a policy reload");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_caps_fit_the_open_file_limit() {
        let cfg = Config::default();
        assert_eq!(connection_caps(&cfg, None), (4096, 256));
        assert_eq!(connection_caps(&cfg, Some(65_536)), (4096, 256));
        let (d, c) = connection_caps(&cfg, Some(1024));
        assert!(d + c + FD_RESERVE as usize <= 1024 && c >= 1 && d > c, "{d} {c}");
        let (d, c) = connection_caps(&cfg, Some(10));
        assert_eq!((d, c), (1, 1));
    }
}
