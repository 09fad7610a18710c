//! The `clawbutler` binary: parse the command line, set up logging, run.

use clap::Parser;

#[tokio::main]
async fn main() {
    // Before anything touches the data dir: every file created from here on is private.
    clawbutler::os::restrict_umask();
    let cli = clawbutler::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAWBUTLER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let code = clawbutler::cli::run(cli).await;
    std::process::exit(code);
}
