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
    // Caught from here on: a SIGTERM during the start, or just after READY (a quick `systemctl
    // restart`), still gets STOPPING and the graceful shutdown. Registered only once READY was
    // sent, the default action could end the process in between.
    let mut signals = Signals::catch();
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
    signals.wait(&sidecar).await;
    notify("STOPPING=1\nSTATUS=shutting down");
    println!("clawbutler: shutting down");
    sidecar.shutdown().await;
    Ok(0)
}

/// SIGTERM, SIGINT and SIGHUP, caught from [`Signals::catch`] on.
struct Signals {
    #[cfg(unix)]
    caught: Option<Caught>,
}

#[cfg(unix)]
struct Caught {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn catch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) {
            (Ok(term), Ok(int), Ok(hup)) => Signals { caught: Some(Caught { term, int, hup }) },
            _ => Signals { caught: None },
        }
    }

    #[cfg(not(unix))]
    fn catch() -> Signals {
        Signals {}
    }

    /// Until SIGTERM or SIGINT; a SIGHUP meanwhile reloads the policies.
    #[cfg(unix)]
    async fn wait(&mut self, sidecar: &Sidecar) {
        let Some(c) = &mut self.caught else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = c.term.recv() => return,
                _ = c.int.recv() => return,
                _ = c.hup.recv() => {
                    notify("RELOADING=1\nSTATUS=reloading policies");
                    sidecar.reload_policies("sighup");
                    notify("READY=1\nSTATUS=serving");
                }
            }
        }
    }

    #[cfg(not(unix))]
    async fn wait(&mut self, _sidecar: &Sidecar) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
