//! The `clawbutler` binary: parse the command line, set up logging, run.

use clap::Parser;

/// jemalloc, not glibc malloc: at saturation the data path frees on one thread what another
/// allocated (tokio moves tasks between workers; audit records end on the writer thread), and
/// glibc then contends on its arena locks (futex waits inside `free`). Measured in
/// docs/performance.md ("Allocator"): +50 % calls per second, a third less CPU per call, idle
/// RSS +3 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    // Before anything touches the data dir: every file created from here on is private.
    clawbutler::os::restrict_umask();
    let cli = clawbutler::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAWBUTLER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `[log] format` from the config (a config that does not load is reported by the command
    // itself; logging then stays text).
    let format = cli.load_config().map(|c| c.log.format).unwrap_or_default();
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        clawbutler::config::LogFormat::Text => fmt.init(),
        // One JSON object per line; the fields of the current span (a data-path call's
        // `trace_id`) are included, the event's own fields flattened to the top level.
        clawbutler::config::LogFormat::Json => {
            fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).init()
        }
    }
    let code = clawbutler::cli::run(cli).await;
    std::process::exit(code);
}
