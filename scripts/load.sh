#!/usr/bin/env bash
# Load comparison: the same load straight to a fast local upstream and through the sidecar
# (policy + audit on), side by side in one run; prints added p50/p99 and the throughput ratio,
# then the added time to first byte of streams. Release build (slow the first time).
#   LOAD_RPS=2000 LOAD_SECS=5 LOAD_ROUNDS=3 LOAD_STREAMS=1000 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench proxy_load
