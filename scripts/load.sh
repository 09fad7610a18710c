#!/usr/bin/env bash
# Load comparison: the same load straight to a fast local upstream and through the sidecar
# (policy + audit on), side by side in one run; prints added p50/p99 and the throughput ratio,
# then the added time to first byte of streams. Release build (slow the first time).
#   LOAD_RPS=2000 LOAD_SECS=5 LOAD_ROUNDS=3 LOAD_STREAMS=1000 scripts/load.sh
# `scripts/load.sh mcp`: the same comparison for MCP tools/call (`benches/mcp_load.rs`):
#   MCP_CALLS=2000 MCP_ROUNDS=3 scripts/load.sh mcp
# `scripts/load.sh plugin`: plugin-gate decisions, open loop (`benches/plugin_decide.rs`):
#   PLUGIN_RPS=1000 PLUGIN_SECS=10 scripts/load.sh plugin
# `scripts/load.sh cost`: a 90-day cost query over 1M metered calls (`cost/benches/cost_query.rs`):
#   COST_CALLS=1000000 scripts/load.sh cost
# `scripts/load.sh fleet`: fleet mode on vs off on the call path in one run, and central lease
# takes/s, on a throwaway PostgreSQL (`benches/fleet_load.rs`; LOAD_RPS=1000 LOAD_SECS=5):
#   LOAD_ROUNDS=3 TAKE_SECS=5 scripts/load.sh fleet
# `scripts/load.sh streams`: memory per open stream, 1,000 streams held open through the release
# sidecar (`scripts/streams.sh`, STREAMS=1000).
# `scripts/load.sh saturate`: closed loop to saturation with wrk against a local nginx: direct,
# through nginx as a bare proxy (the hop alone), through the bare Rust hop (the sidecar's own
# HTTP stack alone) and through the release sidecar, in one run (`scripts/saturate.sh`; needs
# `apt-get install -y nginx wrk`). A profile-guided build (`scripts/pgo.sh`) runs in it with
# CLAWBUTLER_BIN=<the path that script prints>.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "saturate" ]]; then
    exec bash scripts/saturate.sh
fi
if [[ "${1:-}" == "streams" ]]; then
    exec bash scripts/streams.sh
fi
if [[ "${1:-}" == "mcp" ]]; then
    exec cargo bench --bench mcp_load
fi
if [[ "${1:-}" == "fleet" ]]; then
    exec cargo bench --bench fleet_load
fi
if [[ "${1:-}" == "cost" ]]; then
    exec cargo bench -p cost --bench cost_query
fi
if [[ "${1:-}" == "plugin" ]]; then
    exec cargo bench --bench plugin_decide
fi
exec cargo bench --bench proxy_load
