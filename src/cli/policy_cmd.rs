//! `clawbutler policy test [DIR]`, `clawbutler policy eval --input F [--bundle DIR]`, and
//! `clawbutler policy publish DIR --key F` (fleet mode: sign the bundle with the fleet's key
//! and publish it to every sidecar through one sidecar's control API).

use std::path::PathBuf;

use clap::Subcommand;
use policy::BundleSource;

use super::client::{ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Run every `test_*` rule of the bundle's `*_test.rego` files (like `opa test`).
    Test {
        /// Bundle directory (default: [policies] dir, else the embedded bundle).
        dir: Option<PathBuf>,
    },
    /// Evaluate one input document and print the Decision as JSON.
    Eval {
        /// Input document (JSON file, `-` for stdin).
        #[arg(long)]
        input: PathBuf,
        /// Bundle directory (default: [policies] dir, else the embedded bundle).
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Sign a bundle with the fleet's key and publish it to every sidecar of the fleet
    /// (admin). The sidecar refuses it unless the signature verifies and its tests pass.
    Publish {
        /// Bundle directory (every .rego and data.json file, tests included).
        dir: PathBuf,
        /// The fleet's private policy key (`clawbutler fleet keygen`).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Run a policy subcommand.
pub async fn run(cli: &Cli, c: &PolicyCmd) -> CliResult {
    match c {
        PolicyCmd::Publish { dir, key, api } => {
            let key = audit::keys::load_private(key)?;
            let bundle = policy::SignedBundle::from_dir(dir, &key, chrono::Utc::now())?;
            let body = serde_json::to_value(&bundle)?;
            let v = ApiClient::from_cli(cli, api)?.post("/api/v1/fleet/policy", &body).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            eprintln!("published; `clawbutler fleet sidecars` shows the policy each sidecar serves");
            Ok(0)
        }
        _ => run_local(cli, c),
    }
}

/// `policy test` and `policy eval`: no sidecar needed.
fn run_local(cli: &Cli, c: &PolicyCmd) -> CliResult {
    let cfg = cli.load_config()?;
    let source = |dir: &Option<PathBuf>| match dir {
        Some(d) => BundleSource::Dir(d.clone()),
        None => cfg.policies.source(),
    };
    match c {
        PolicyCmd::Test { dir } => {
            let report = policy::testing::run_tests(&source(dir), &serde_json::Value::Null)?;
            print!("{report}");
            Ok(if report.ok() { 0 } else { 1 })
        }
        PolicyCmd::Eval { input, bundle } => {
            let text = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?
            };
            let d = policy::testing::eval_input(
                &source(bundle),
                cfg.policies.data(),
                cfg.policies.engine_options(),
                &text,
            )?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(0)
        }
        PolicyCmd::Publish { .. } => Err("policy publish goes through a sidecar's API".into()),
    }
}
