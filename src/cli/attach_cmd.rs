//! `clawbutler attach|detach --gateway WS_URL [--token-env VAR] [--dry-run]`: rewire an
//! OpenClaw gateway through this sidecar, or put it back (see `gateway::attach`).
//!
//! Unless `[auth] agent_keys = "off"`, attach also creates one per-agent key for every agent
//! it rewires (through the control API of the running sidecar, `--token`/`CLAWBUTLER_TOKEN`
//! with an admin token, or the store of a stopped one) and wires it into the agent's
//! provider; detach revokes exactly those keys. If applying fails, the new keys are revoked.

use clap::Args;

use super::agent_key_cmd::{KeyReach, Keys};
use super::{Cli, CliResult};
use gateway::attach::{self, IssuedKey, KeyRef};

/// Arguments shared by attach and detach.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Gateway WebSocket URL, e.g. ws://127.0.0.1:18789.
    #[arg(long)]
    pub gateway: String,
    /// Environment variable holding the gateway token (default: `[gateway] token_env`).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Print the diff and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where per-agent keys are created and revoked (the sidecar's control API, or its store).
    #[command(flatten)]
    pub keys: KeyReach,
}

/// Run attach (`detach == false`) or detach.
pub async fn run(cli: &Cli, a: &AttachArgs, detach: bool) -> CliResult {
    let cfg = cli.load_config()?;
    let token_env = a.token_env.clone().unwrap_or_else(|| cfg.gateway.token_env.clone());
    let data_dir = cfg.server.data_dir.clone();
    let with_keys = cfg.auth.agent_keys != proxy::AgentKeyMode::Off;
    if !detach && !a.dry_run {
        attach::check_not_attached(&data_dir, &a.gateway)?;
    }
    // Reach the key store before touching the gateway, so a missing admin token fails early.
    let keys = if with_keys && !a.dry_run { Some(Keys::reach(cli, &a.keys).await?) } else { None };
    let (link, stop) = attach::connect(&a.gateway, &token_env, &data_dir).await?;
    let listen = cfg.listen_addr()?;
    // A wildcard listen address is reached over loopback from a local gateway.
    let sidecar =
        if listen.ip().is_unspecified() { format!("127.0.0.1:{}", listen.port()) } else { listen.to_string() };
    let result = if detach {
        run_detach(&link, &data_dir, a.dry_run, keys.as_ref()).await
    } else {
        let ups: Vec<attach::UpstreamRef> = cfg
            .upstreams
            .iter()
            .map(|u| attach::UpstreamRef {
                name: u.name.clone(),
                url: u.url.clone(),
                holds_key: u.api_key_env.is_some(),
            })
            .collect();
        run_attach(&link, &ups, &sidecar, &data_dir, a.dry_run, with_keys, keys.as_ref()).await
    };
    let _ = stop.send(true);
    for line in result? {
        println!("{line}");
    }
    Ok(0)
}

type Lines = Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>;

async fn run_attach(
    link: &gateway::Link,
    ups: &[attach::UpstreamRef],
    sidecar: &str,
    data_dir: &std::path::Path,
    dry_run: bool,
    with_keys: bool,
    keys: Option<&Keys>,
) -> Lines {
    let prepared = attach::prepare(link, ups, sidecar, data_dir, with_keys).await?;
    if !with_keys {
        eprintln!("note: [auth] agent_keys = \"off\": no per-agent keys are created");
    }
    if dry_run || prepared.agents().is_empty() {
        let mut lines = prepared.lines;
        lines.push(if dry_run { "dry run: nothing changed".into() } else { "nothing to attach".into() });
        return Ok(lines);
    }
    let mut issued = Vec::new();
    if let Some(k) = keys {
        let label = format!("attach {}", link.url());
        for agent in prepared.agents() {
            match k.create(agent, Some(&label)).await {
                Ok((secret, info)) => issued.push(IssuedKey { key: KeyRef { agent: info.agent, id: info.id }, secret }),
                Err(e) => {
                    revoke_all(k, issued.iter().map(|i| &i.key)).await;
                    return Err(format!("creating the key of agent {agent}: {e}").into());
                }
            }
        }
    }
    match attach::apply(link, prepared, &issued).await {
        Ok(lines) => Ok(lines),
        Err(e) => {
            if let Some(k) = keys {
                revoke_all(k, issued.iter().map(|i| &i.key)).await;
            }
            Err(e.into())
        }
    }
}

async fn run_detach(link: &gateway::Link, data_dir: &std::path::Path, dry_run: bool, keys: Option<&Keys>) -> Lines {
    let done = attach::detach(link, data_dir, dry_run).await?;
    let mut lines = done.lines;
    if let (Some(k), false) = (keys, done.agent_keys.is_empty()) {
        lines.extend(revoke_all(k, done.agent_keys.iter()).await);
    } else if !done.agent_keys.is_empty() {
        for r in &done.agent_keys {
            lines.push(format!(
                "! key {} of {} not revoked: run `clawbutler agent-key revoke {} {}`",
                r.id, r.agent, r.agent, r.id
            ));
        }
    }
    Ok(lines)
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
