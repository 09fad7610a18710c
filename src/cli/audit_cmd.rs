//! `clawbutler audit verify|export|tail|rotate-key`: offline tools over the log files; they
//! never need the sidecar to be running (or trusted). `rotate-key` needs it stopped.
//! `verify --fleet` checks the central copy in the fleet database instead (with `[fleet]`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};

use super::{Cli, CliResult};

/// Export formats on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain, checkpoints and signatures; names the first bad seq.
    Verify {
        /// Verify an exported jsonl file instead of the data dir's log.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Public keys to trust: one key, or a key history (`audit-pubkeys.pem`, one PEM block
        /// per key, oldest first). Default: the keys in the log dir; pass the auditor's copy.
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Verify the central audit trail in the fleet database (`[fleet]` of the config):
        /// every sidecar's shipped copy, or `--sidecar`'s, with the same checks.
        #[arg(long, conflicts_with = "export")]
        fleet: bool,
        /// With --fleet: only this sidecar's copy (needed to check it against --pubkey).
        #[arg(long, requires = "fleet")]
        sidecar: Option<String>,
    },
    /// Write records to stdout (or --output).
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Inclusive start (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Inclusive end (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Retire the checkpoint-signing key for a new one (the sidecar must be stopped): a
    /// checkpoint signed with the old key names the new one, the rotation is recorded, and
    /// `audit-pubkeys.pem` keeps every key for verifying.
    RotateKey,
    /// Print the last records; with -f keep following.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

/// Run an audit subcommand.
pub async fn run(cli: &Cli, c: &AuditCmd) -> CliResult {
    let cfg = cli.load_config()?;
    let dir = cfg.server.data_dir.join("audit");
    match c {
        AuditCmd::Verify { fleet: true, sidecar, pubkey, json, .. } => {
            let f =
                cfg.fleet.as_ref().ok_or("--fleet needs the [fleet] section of the config (the database to read)")?;
            let keys = match pubkey {
                Some(p) => Some(audit::keys::load_public_set(p)?),
                None => None,
            };
            let reports = fleet::verify_central_audit(f, sidecar.as_deref(), keys.as_deref()).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else if reports.is_empty() {
                println!("no sidecar has shipped audit records to the fleet database yet");
            } else {
                for r in &reports {
                    print!("sidecar {}: {}", r.sidecar_id, r.report);
                }
            }
            Ok(if reports.iter().all(|r| r.report.ok) { 0 } else { 1 })
        }
        AuditCmd::Verify { export, pubkey, json, .. } => {
            let report = match export {
                Some(f) => audit::verify_export(f, pubkey.as_deref()),
                None => audit::verify_dir(&dir, pubkey.as_deref()),
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(if report.ok { 0 } else { 1 })
        }
        AuditCmd::Export { format, from, to, output } => {
            let fmt = match format {
                Format::Jsonl => audit::ExportFormat::Jsonl,
                Format::Csv => audit::ExportFormat::Csv,
            };
            let mut out: Box<dyn Write> = match output {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = audit::export(&dir, fmt, *from, *to, &mut out)?;
            out.flush()?;
            eprintln!("exported {n} records");
            Ok(0)
        }
        AuditCmd::RotateKey => {
            // Opening the state store proves the sidecar is stopped (it holds the store's lock):
            // two writers must never share the log.
            let state = cfg.server.data_dir.join("state");
            let db = storage::Store::open(&state).map_err(|e| {
                format!(
                    "cannot open {} ({e}): stop the sidecar first, rotate-key needs the log to itself",
                    state.display()
                )
            })?;
            let log = audit::AuditLog::open(&dir, &cfg.audit, &db, &prometheus::Registry::new())?;
            let (old, new) = log.rotate_key()?;
            drop(log);
            let report = audit::verify_dir(&dir, None);
            println!("audit signing key rotated: {old} retired, {new} signs from now on");
            println!("give auditors {} (every key, oldest first)", dir.join(audit::keys::HISTORY_FILE).display());
            if !report.ok {
                println!("{report}");
                return Ok(1);
            }
            Ok(0)
        }
        AuditCmd::Tail { n, follow } => {
            let recs = audit::tail(&dir, *n)?;
            let mut last = 0;
            for r in &recs {
                println!("{}", serde_json::to_string(r)?);
                last = r.seq;
            }
            if *follow {
                audit::follow(&dir, last, Duration::from_millis(500), |r| {
                    serde_json::to_string(&r).map(|s| println!("{s}")).is_ok()
                })?;
            }
            Ok(0)
        }
    }
}
