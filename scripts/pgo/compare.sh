#!/usr/bin/env bash
# Two builds of the sidecar side by side on each of its three call paths at saturation: model
# calls (nginx's fixed chat reply), MCP tool calls (scripts/pgo/train.py's fast MCP server) and
# plugin-gate decisions. For each round, path and build: req/s and the sidecar's CPU per call
# (user + system over all its threads, /proc/<pid>/stat). The builds alternate within a round,
# so a busy moment of the host falls on both.
#
#   scripts/pgo/compare.sh BASE_BINARY OTHER_BINARY     (CMP_SECS=6 CMP_ROUNDS=2)
# e.g. the default build against the one scripts/pgo.sh printed:
#   scripts/pgo/compare.sh target/release/clawbutler target/pgo-use/<host>/release/clawbutler
#
# Needs nginx, wrk, python3 and curl. Ports (127.0.0.1 only): 18090 (nginx), 18091 (data),
# 18092 (control), 18093 (the MCP server). Only the processes this script started are stopped,
# by their pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $# -eq 2 && -x "$1" && -x "$2" ]] || { echo "usage: $0 BASE_BINARY OTHER_BINARY" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
secs=${CMP_SECS:-6}
rounds=${CMP_ROUNDS:-2}
tmp=$(mktemp -d)
pids=()
sidecar=
stop_sidecar() {
    [[ -n "$sidecar" ]] || return 0
    kill "$sidecar" 2>/dev/null || true
    wait "$sidecar" 2>/dev/null || true
    sidecar=
}
cleanup() {
    stop_sidecar
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

source scripts/pgo/peers.sh

# One sidecar of `bin` with a fresh data dir, its tokens exported for the wrk scripts.
start() { # bin
    rm -rf "$tmp/data"
    mkdir -p "$tmp/data"
    sidecar_toml
    "$1" serve --config "$tmp/clawbutler.toml" >"$tmp/sidecar.log" 2>&1 &
    sidecar=$!
    for _ in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:18092/livez && break; sleep 0.1; done
    eval "$(python3 scripts/pgo/train.py tokens "$(cat "$tmp/data/first-admin-token")")"
}
ticks() { awk '{ t += $14 + $15 } END { print t }' /proc/"$sidecar"/task/*/stat; }
# One wrk run on a path; prints "req/s us-per-call" and fails on any answer but 2xx.
measure() { # wrk script, url
    local out t0 t1 n
    wrk -t2 -c16 -d1s -s "$1" "$2" >/dev/null
    t0=$(ticks)
    out=$(wrk -t2 -c16 -d"${secs}s" -s "$1" "$2")
    t1=$(ticks)
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        echo "compare: errors on $2:" >&2
        echo "$out" >&2
        exit 1
    fi
    n=$(awk '/ requests in / { print $1 }' <<<"$out")
    awk -v rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")" -v t="$((t1 - t0))" -v n="$n" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%8.0f req/s %6.1f us per call", rps, t / hz / n * 1e6 }'
}

# name|wrk script|url|PGO_CALL (what scripts/pgo/calls.lua sends)
paths=("model calls|benches/nginx/post.lua|http://127.0.0.1:18091/a/bench/bench/v1/chat/completions|"
    "MCP tool calls|scripts/pgo/calls.lua|http://127.0.0.1:18091/mcp/agent/main|mcp"
    "plugin-gate decisions|scripts/pgo/calls.lua|http://127.0.0.1:18091/v1/decide|decide")
echo "base:  $1"
echo "other: $2"
for r in $(seq 1 "$rounds"); do
    for b in base other; do
        bin=$1
        [[ $b == other ]] && bin=$2
        start "$bin"
        for p in "${paths[@]}"; do
            IFS='|' read -r name lua url PGO_CALL <<<"$p"
            export PGO_CALL
            printf 'round %d  %-5s  %-22s %s\n' "$r" "$b" "$name" "$(measure "$lua" "$url")"
        done
        stop_sidecar
    done
done
