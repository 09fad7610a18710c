#!/usr/bin/env bash
# Memory per open stream: the release sidecar (default config: shipped policies, audit on) in
# front of the scripted upstream, N streamed chat completions held open at once through it
# (benches/streams/hold_streams.py), its RSS before and with them open.
# Run: scripts/load.sh streams   (STREAMS=1000; needs python3; builds the release sidecar and the
# debug scripted-upstream once when missing). Ports: 127.0.0.1 only, STREAMS_PORT=18095 (data),
# 18096 (control). Only the processes this script started are stopped, by their pid.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
n=${STREAMS:-1000}
port=${STREAMS_PORT:-18095}
target=${CARGO_TARGET_DIR:-$root/target}
bin=${CLAWBUTLER_BIN:-$target/release/clawbutler}
[[ -x "$bin" ]] || cargo build --release --bin clawbutler
source scripts/scripted-upstream.sh
cat >"$tmp/clawbutler.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
control_listen = "127.0.0.1:$((port + 1))"
data_dir = "$tmp/data"

[[upstreams]]
name = "bench"
kind = "openai"
url = "$up/v1"
TOML
"$bin" serve --config "$tmp/clawbutler.toml" >"$tmp/sidecar.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$((port + 1))/livez" && break; sleep 0.1; done
python3 benches/streams/hold_streams.py "http://127.0.0.1:$port/a/bench/bench/v1/chat/completions" "${pids[1]}" "$n"
