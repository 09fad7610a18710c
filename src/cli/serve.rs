//! `clawbutler serve`.

use clap::Args;

use super::{Cli, CliResult};
use crate::app::Sidecar;
use crate::notify::notify;

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data listener address (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Control listener address (overrides server.control_listen).
    #[arg(long)]
    pub control_listen: Option<String>,
}

/// Run until SIGINT/SIGTERM.
pub async fn run(cli: &Cli, a: &ServeArgs) -> CliResult {
    let mut cfg = cli.load_config()?;
    if let Some(l) = &a.listen {
        cfg.server.listen = l.clone();
    }
    if let Some(l) = &a.control_listen {
        cfg.server.control_listen = l.clone();
    }
    let sidecar = Sidecar::start(cfg.clone()).await?;
    println!(
        "clawbutler {} ready: data http://{} (route /a/<agent>/<upstream>/v1/...), control + UI http://{}, data dir {}",
        env!("CARGO_PKG_VERSION"),
        sidecar.data_addr,
        sidecar.control_addr,
        cfg.server.data_dir.display()
    );
    if let Some(path) = &sidecar.first_admin_token_file {
        // Never the token itself: stdout ends up in the journal.
        println!(
            "first start: created an admin token in {} (readable only by this user); store it somewhere safe, then delete the file",
            path.display()
        );
    }
    // Both listeners are bound and the state is open: `systemctl start` may return.
    notify(&format!(
        "READY=1\nSTATUS=serving data on {}, control on {}\nMAINPID={}",
        sidecar.data_addr,
        sidecar.control_addr,
        std::process::id()
    ));
    wait_for_signal(&sidecar).await;
    notify("STOPPING=1\nSTATUS=shutting down");
    println!("clawbutler: shutting down");
    sidecar.shutdown().await;
    Ok(0)
}

#[cfg(unix)]
async fn wait_for_signal(sidecar: &Sidecar) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                notify("RELOADING=1\nSTATUS=reloading policies");
                sidecar.reload_policies("sighup");
                notify("READY=1\nSTATUS=serving");
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_sidecar: &Sidecar) {
    let _ = tokio::signal::ctrl_c().await;
}
