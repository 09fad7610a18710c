#!/usr/bin/env bash
# A profile-guided (PGO) release build of the sidecar, for operators who want the most calls per
# core. Not the default build: it takes two release builds and a training run (~25 min on a
# 2-core VM), and it needs nginx, wrk, python3 and rustup's llvm-tools.
#
# 1. Builds an instrumented binary (target/pgo-gen).
# 2. Trains it on 127.0.0.1: model calls at saturation (wrk against nginx's fixed chat reply,
#    the workload of `scripts/load.sh saturate`), then every kind of call an operator's sidecar
#    answers (scripts/pgo/train.py): streamed and non-streamed OpenAI and Anthropic calls
#    against the scripted upstream, refusals, an MCP session's tool calls (masked results among
#    them), plugin-gate decisions, holds approved and denied through the control API, and
#    control API reads. Code no training reaches (the gateway link, fleet mode, notifications)
#    is laid out as cold code; it is off the call path.
# 3. Merges the profile and builds the optimised binary (target/pgo-use). The profile's file
#    name carries its content hash, so a new training always rebuilds.
#
# Run: scripts/pgo.sh   (PGO_SECS=20: the saturation phase's length; PGO_DIR=target/pgo: the
# profiles). Prints the binary's path last; compare it with the default build:
#   CLAWBUTLER_BIN=<that path> SAT_ROUNDS=3 scripts/load.sh saturate
# Ports (127.0.0.1 only): 18090 (nginx), 18091 (data), 18092 (control), 18093 (an MCP server).
# Only the processes this script started are stopped, by their pid.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

for tool in nginx wrk python3 curl; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
        echo "pgo: '$tool' not found (Debian: sudo apt-get install -y nginx wrk python3 curl)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
rustup component add llvm-tools >/dev/null
host=$(rustc -vV | awk '/^host:/ {print $2}')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
[[ -x "$profdata" ]] || { echo "pgo: llvm-profdata missing at $profdata" >&2; exit 1; }

dir=$(realpath -m "${PGO_DIR:-target/pgo}")
secs=${PGO_SECS:-20}
mkdir -p "$dir"
rm -rf "$dir/data"
mkdir -p "$dir/data"

# `--target` keeps the profile flags off build scripts and proc macros (they run on the host).
echo "pgo: 1/3 the instrumented build"
RUSTFLAGS="-Cprofile-generate=$dir/data" cargo build --release --locked -p clawbutler \
    --target "$host" --target-dir target/pgo-gen
gen=target/pgo-gen/$host/release/clawbutler

echo "pgo: 2/3 training"
source scripts/scripted-upstream.sh
mkdir -p "$tmp/data"
source scripts/pgo/peers.sh
sidecar_toml "[[upstreams]]
name = \"fake\"
kind = \"openai\"
url = \"$up/v1\"
[[upstreams]]
name = \"anth\"
kind = \"anthropic\"
url = \"$up\""
"$gen" serve --config "$tmp/clawbutler.toml" >"$tmp/sidecar.log" 2>&1 &
sidecar=$!
pids+=($sidecar)
for _ in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:18092/livez && break; sleep 0.1; done
admin=$(cat "$tmp/data/first-admin-token")
# At saturation, each of the three call paths in turn (a model call, an MCP tool call, a
# plugin-gate decision), so each weighs in the profile as it does on a busy sidecar; then one
# pass over every kind of call (scripts/pgo/train.py).
phase() { # name, wrk script, url, seconds: fails on any answer but 2xx
    local out
    out=$(wrk -t2 -c16 -d"$4s" -s "$2" "$3")
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        echo "pgo: the $1 phase got errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "pgo: $1, $(awk '/^Requests\/sec:/ {print $2}' <<<"$out") req/s"
}
phase "model calls" benches/nginx/post.lua http://127.0.0.1:18091/a/bench/bench/v1/chat/completions "$secs"
eval "$(python3 scripts/pgo/train.py tokens "$admin")"
PGO_CALL=mcp phase "MCP tool calls" scripts/pgo/calls.lua http://127.0.0.1:18091/mcp/agent/main $((secs / 2))
PGO_CALL=decide phase "plugin-gate decisions" scripts/pgo/calls.lua http://127.0.0.1:18091/v1/decide \
    $((secs / 2))
python3 scripts/pgo/train.py train "$admin"
# A clean stop writes the profile.
kill -TERM "$sidecar"
wait "$sidecar" || true
ls "$dir"/data/*.profraw >/dev/null

echo "pgo: 3/3 the optimised build"
"$profdata" merge -o "$tmp/merged.profdata" "$dir"/data/*.profraw
hash=$(sha256sum "$tmp/merged.profdata" | cut -c1-16)
cp "$tmp/merged.profdata" "$dir/$hash.profdata"
RUSTFLAGS="-Cprofile-use=$dir/$hash.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
    cargo build --release --locked -p clawbutler --target "$host" --target-dir target/pgo-use
echo "$root/target/pgo-use/$host/release/clawbutler"
