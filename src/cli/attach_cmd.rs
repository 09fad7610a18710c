//! `clawbutler attach|detach --gateway WS_URL [--token-env VAR] [--dry-run]`: rewire an
//! OpenClaw gateway through this sidecar, or put it back (see `gateway::attach`).
//!
//! Attach prints the plan (the gateway config diff, ClawButler's own config changes, the
//! keys, MCP tokens, the plugin's files, exec approvals and hardening) and the governance
//! report. It exits [`UNGOVERNED`] and changes nothing when some agent's model path would
//! stay outside the sidecar, unless `--allow-partial`. Otherwise it creates one per-agent key
//! per agent it rewires (unless `[auth] agent_keys = "off"`), one MCP token per agent it gives
//! a `cb-<agent>` MCP entry and one plugin token (`attach_creds.rs`), all through the running
//! sidecar's control API with an admin token or the store of a stopped one; writes
//! ClawButler's config file when it needs new `[[upstreams]]`, `[[mcp_servers]]` or prices
//! (`gateway::attach::cb_config`: validated first, `.bak` kept, replaced atomically); applies
//! the gateway change and prints the live report. If applying fails, the keys and tokens are
//! revoked and the config file restored. Detach undoes all of it. `--no-mcp` / `--no-plugin`
//! leave those tool paths alone.

use std::path::PathBuf;

use clap::Args;

use super::agent_key_cmd::{KeyReach, Keys};
use super::attach_creds as creds;
use super::{Cli, CliResult};
use crate::config::Config;
use gateway::attach::{self, cb_config, CbChange, CbFileRecord, Hardening, IssuedKey, KeyRef, Options};

/// Exit code when an agent's model path is not (entirely) through the sidecar.
pub const UNGOVERNED: i32 = 3;

/// Where the gateway is (shared by attach, detach and status).
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway WebSocket URL, e.g. ws://127.0.0.1:18789.
    #[arg(long)]
    pub gateway: String,
    /// Environment variable holding the gateway token (default: `[gateway] token_env`).
    #[arg(long)]
    pub token_env: Option<String>,
}

/// `attach` arguments.
#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub gw: GatewayArgs,
    /// Print the plan and the report; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply even when some agent's model path stays outside the sidecar (it is reported).
    #[arg(long)]
    pub allow_partial: bool,
    /// Keep the bundled provider plugins attach replaces enabled (no `plugins.deny`).
    #[arg(long)]
    pub no_deny_plugins: bool,
    /// Keep OpenClaw's remote model catalog refresh on.
    #[arg(long)]
    pub keep_catalog_refresh: bool,
    /// Leave OpenClaw's MCP servers alone (no `[[mcp_servers]]` move, no `cb-<agent>` entries).
    #[arg(long)]
    pub no_mcp: bool,
    /// Do not install the ClawButler plugin (built-in tools stay outside the sidecar).
    #[arg(long)]
    pub no_plugin: bool,
    /// Where per-agent keys are created (the sidecar's control API, or its store).
    #[command(flatten)]
    pub keys: KeyReach,
}

/// `detach` arguments.
#[derive(Debug, Args)]
pub struct DetachArgs {
    #[command(flatten)]
    pub gw: GatewayArgs,
    /// Print what would be restored; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where per-agent keys are revoked (the sidecar's control API, or its store).
    #[command(flatten)]
    pub keys: KeyReach,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The sidecar's data address as a local gateway reaches it (a wildcard listen address is
/// reached over loopback).
pub fn sidecar_addr(cfg: &Config) -> Result<String, BoxError> {
    let listen = cfg.listen_addr()?;
    Ok(if listen.ip().is_unspecified() { format!("127.0.0.1:{}", listen.port()) } else { listen.to_string() })
}

/// The config's upstreams as attach sees them.
pub fn upstream_refs(cfg: &Config) -> Vec<attach::UpstreamRef> {
    cfg.upstreams
        .iter()
        .map(|u| attach::UpstreamRef {
            name: u.name.clone(),
            kind: match u.kind {
                proxy::UpstreamKind::Openai => attach::UpstreamKind::Openai,
                proxy::UpstreamKind::Anthropic => attach::UpstreamKind::Anthropic,
            },
            url: u.url.clone(),
            api_key_env: u.api_key_env.clone(),
        })
        .collect()
}

/// Run attach.
pub async fn run_attach(cli: &Cli, a: &AttachArgs) -> CliResult {
    let cfg = cli.load_config()?;
    let token_env = a.gw.token_env.clone().unwrap_or_else(|| cfg.gateway.token_env.clone());
    let data_dir = cfg.server.data_dir.clone();
    let with_keys = cfg.auth.agent_keys != proxy::AgentKeyMode::Off;
    if !a.dry_run {
        attach::check_not_attached(&data_dir, &a.gw.gateway)?;
    }
    let prices = proxy::PriceTable::new(&cfg.prices)?;
    let price = |m: &str| prices.lookup(m).map(|p| (p.input, p.output, p.cached_input, p.cache_write));
    let ups = upstream_refs(&cfg);
    let addr = sidecar_addr(&cfg)?;
    let side = attach::Sidecar { addr: &addr, upstreams: &ups, price: &price };
    let opts = Options {
        with_keys,
        hardening: Hardening { deny_plugins: !a.no_deny_plugins, catalog_refresh_off: !a.keep_catalog_refresh },
    };
    let mcp_names: Vec<String> = cfg.mcp_servers.iter().map(|s| s.name.clone()).collect();
    let tools = attach::Tools {
        mcp: (!a.no_mcp).then_some(attach::McpSide { settings: &cfg.mcp, servers: &mcp_names }),
        plugin_heartbeat_s: (!a.no_plugin).then_some(cfg.plugin.heartbeat_s),
    };
    let (link, stop) = attach::connect(&a.gw.gateway, &token_env, &data_dir).await?;
    let result = attach_on(cli, a, &cfg, &link, &side, &tools, opts).await;
    let _ = stop.send(true);
    result
}

async fn attach_on(
    cli: &Cli,
    a: &AttachArgs,
    cfg: &Config,
    link: &gateway::Link,
    side: &attach::Sidecar<'_>,
    tools: &attach::Tools<'_>,
    opts: Options,
) -> CliResult {
    let prepared = attach::prepare(link, side, tools, &cfg.server.data_dir, opts).await?;
    if !opts.with_keys {
        eprintln!("note: [auth] agent_keys = \"off\": no per-agent keys are created");
    }
    for line in &prepared.lines {
        println!("{line}");
    }
    let cb_edit = match prepared.cb_changes() {
        [] => None,
        changes => Some(plan_cb_file(cli, cfg, changes)?),
    };
    let governed = prepared.report().ungoverned_agents().is_empty();
    if a.dry_run || prepared.agents().is_empty() || (!governed && !a.allow_partial) {
        for line in prepared.report().render() {
            println!("{line}");
        }
        println!(
            "{}",
            if a.dry_run {
                "dry run: nothing changed"
            } else if !governed && !a.allow_partial {
                "nothing changed: some agent's model path cannot go through ClawButler (see above); fix it, or apply \
                 the rest with --allow-partial"
            } else {
                "nothing to attach"
            }
        );
        return Ok(if governed || a.allow_partial { 0 } else { UNGOVERNED });
    }
    let needs_creds = opts.with_keys || !prepared.mcp_agents().is_empty() || prepared.plugin().is_some();
    let keys = if needs_creds { Some(Keys::reach(cli, &a.keys).await?) } else { None };
    let mut issued = attach::Issued::default();
    if let Some(k) = &keys {
        if let Err(e) = issue(k, link.url(), &prepared, opts.with_keys, &mut issued).await {
            revoke_issued(k, &issued).await;
            return Err(e);
        }
    }
    let cb_rec = match &cb_edit {
        Some((path, text)) => match cb_config::write(path, text, prepared.cb_changes()) {
            Ok(r) => Some(r),
            Err(e) => {
                if let Some(k) = &keys {
                    revoke_issued(k, &issued).await;
                }
                return Err(e.into());
            }
        },
        None => None,
    };
    let applied = match attach::apply(link, prepared, &issued, cb_rec.clone(), side.addr).await {
        Ok(a) => a,
        Err(e) => {
            if let Some(k) = &keys {
                revoke_issued(k, &issued).await;
            }
            if let Some(r) = &cb_rec {
                let _ = cb_config::restore(r);
            }
            return Err(e.into());
        }
    };
    if let Some(r) = &cb_rec {
        println!("wrote {} (the previous version is in {})", r.path.display(), r.backup.display());
        println!("{}", restart_line(&keys, r));
    }
    for line in &applied.lines {
        println!("{line}");
    }
    let live = applied.report;
    for line in live.render() {
        println!("{line}");
    }
    Ok(if live.ungoverned_agents().is_empty() || a.allow_partial { 0 } else { UNGOVERNED })
}

/// Create the credentials `prepared` needs into `issued` (on error, what was created so far
/// is in `issued` for the caller to revoke).
async fn issue(
    k: &Keys,
    url: &str,
    prepared: &attach::Prepared,
    with_keys: bool,
    issued: &mut attach::Issued,
) -> Result<(), BoxError> {
    let label = format!("attach {url}");
    if with_keys {
        for agent in prepared.agents() {
            let (secret, info) =
                k.create(agent, Some(&label)).await.map_err(|e| format!("creating the key of agent {agent}: {e}"))?;
            issued.keys.push(IssuedKey { key: KeyRef { agent: info.agent, id: info.id }, secret });
        }
    }
    for agent in prepared.mcp_agents() {
        let t = creds::create_mcp_token(k, agent, &label)
            .await
            .map_err(|e| format!("creating the MCP token of agent {agent}: {e}"))?;
        issued.mcp.push(t);
    }
    if prepared.plugin().is_some() {
        let t =
            creds::create_plugin_token(k, url, &label).await.map_err(|e| format!("creating the plugin token: {e}"))?;
        issued.plugin = Some(t);
    }
    Ok(())
}

/// Revoke what [`issue`] created (after a failed attach).
async fn revoke_issued(k: &Keys, issued: &attach::Issued) {
    revoke_all(k, issued.keys.iter().map(|i| &i.key)).await;
    revoke_tools(k, issued.mcp.iter().map(|i| &i.key), issued.plugin.as_ref().map(|p| p.id.as_str())).await;
}

/// Revoke MCP tokens and the plugin token, one line each.
async fn revoke_tools<'a>(k: &Keys, mcp: impl Iterator<Item = &'a KeyRef>, plugin: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for r in mcp {
        out.push(match creds::revoke_mcp_token(k, r).await {
            Ok(_) => format!("revoked MCP token {} of {}", r.id, r.agent),
            Err(e) => format!(
                "! could not revoke MCP token {} of {} ({e}); run `clawbutler mcp-token revoke {} {}`",
                r.id, r.agent, r.agent, r.id
            ),
        });
    }
    if let Some(id) = plugin {
        out.push(match creds::revoke_plugin_token(k, id).await {
            Ok(_) => format!("revoked plugin token {id}"),
            Err(e) => format!("! could not revoke plugin token {id} ({e}); run `clawbutler plugin-token revoke {id}`"),
        });
    }
    out
}

fn restart_line(keys: &Option<Keys>, r: &CbFileRecord) -> String {
    match keys {
        Some(Keys::Api(_)) => format!(
            "! restart the sidecar so it loads the new upstreams and keys (`clawbutler serve --config {}`): until then \
             the rewired agents' calls reach a sidecar without them",
            r.path.display()
        ),
        _ => format!("! start the sidecar with `clawbutler serve --config {}`", r.path.display()),
    }
}

/// ClawButler's config file and its new text for `changes` (validated as a config), with a
/// warning for each key variable this environment lacks.
fn plan_cb_file(cli: &Cli, cfg: &Config, changes: &[CbChange]) -> Result<(PathBuf, String), BoxError> {
    let Some(path) = cli.config_path() else {
        return Err(
            "attach must add the [[upstreams]]/[[mcp_servers]]/[prices] above to ClawButler's config, but no config file is in \
                    use: run it with --config F (an empty file is a valid start)"
                .into(),
        );
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let declares = toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("upstreams"));
    let materialize = if declares { Vec::new() } else { upstream_refs(cfg) };
    let new_text = cb_config::edit(&path, &text, changes, &materialize)?;
    Config::from_toml_str(&new_text)
        .map_err(|e| format!("the edited {} would not be a valid config: {e}", path.display()))?;
    println!(
        "~ {}: rewritten with the changes above (the current version kept as {}.bak)",
        path.display(),
        path.display()
    );
    for c in changes {
        let env = match c {
            CbChange::AddUpstream { upstream } => upstream.api_key_env.as_deref(),
            CbChange::SetKeyEnv { env, .. } => Some(env.as_str()),
            CbChange::AddPrice { .. } | CbChange::AddMcpServer { .. } => None,
        };
        if let Some(env) = env.filter(|e| std::env::var(e).map_or(true, |v| v.is_empty())) {
            println!(
                "! {env} is not set here: the sidecar holds this key now and refuses to start without it in its environment"
            );
        }
    }
    Ok((path, new_text))
}

/// Run detach.
pub async fn run_detach(cli: &Cli, a: &DetachArgs) -> CliResult {
    let cfg = cli.load_config()?;
    let token_env = a.gw.token_env.clone().unwrap_or_else(|| cfg.gateway.token_env.clone());
    let data_dir = cfg.server.data_dir.clone();
    // Reach the key store before touching the gateway, so a missing admin token fails early
    // (attach creates MCP and plugin tokens there even with agent keys off).
    let rec = attach::load_record(&data_dir, &a.gw.gateway)?;
    let has_creds =
        rec.as_ref().is_some_and(|r| !r.agent_keys.is_empty() || !r.mcp_tokens.is_empty() || r.plugin.is_some());
    let keys = if has_creds && !a.dry_run { Some(Keys::reach(cli, &a.keys).await?) } else { None };
    let (link, stop) = attach::connect(&a.gw.gateway, &token_env, &data_dir).await?;
    let done = attach::detach(&link, &data_dir, a.dry_run).await;
    let _ = stop.send(true);
    let done = done?;
    let mut lines = done.lines;
    if let Some(k) = &keys {
        lines.extend(revoke_all(k, done.agent_keys.iter()).await);
        lines.extend(revoke_tools(k, done.mcp_tokens.iter(), done.plugin_token.as_deref()).await);
    } else {
        for r in &done.agent_keys {
            lines.push(format!(
                "! key {} of {} not revoked: run `clawbutler agent-key revoke {} {}`",
                r.id, r.agent, r.agent, r.id
            ));
        }
    }
    for line in lines {
        println!("{line}");
    }
    Ok(0)
}

/// Revoke keys, one line per key; failures are reported with the command that finishes the job.
async fn revoke_all<'a>(k: &Keys, refs: impl Iterator<Item = &'a KeyRef>) -> Vec<String> {
    let mut out = Vec::new();
    for r in refs {
        out.push(match k.revoke(&r.agent, &r.id).await {
            Ok(_) => format!("revoked per-agent key {} of {}", r.id, r.agent),
            Err(e) => {
                let line = format!(
                    "! could not revoke key {} of {} ({e}); run `clawbutler agent-key revoke {} {}`",
                    r.id, r.agent, r.agent, r.id
                );
                eprintln!("{line}");
                line
            }
        });
    }
    out
}
