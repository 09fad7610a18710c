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
    // Colours only for a person at a terminal: a sidecar's stderr is a journal, a container log
    // or a file, where escape codes are noise. They also cost: the text format paints every
    // span field as it is recorded, and a data-path call opens a span (its trace id) per call.
    // `NO_COLOR` (https://no-color.org) turns them off at a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
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
