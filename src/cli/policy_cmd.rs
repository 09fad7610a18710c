//! `clawbutler policy test [DIR]` and `clawbutler policy eval --input F [--bundle DIR]`.

use std::path::PathBuf;

use clap::Subcommand;
use policy::BundleSource;

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
}

/// Run a policy subcommand.
pub fn run(cli: &Cli, c: &PolicyCmd) -> CliResult {
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
    }
}
