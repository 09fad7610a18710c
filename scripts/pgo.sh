#!/usr/bin/env bash
# A profile-guided (PGO) release build of the sidecar, for operators who want the most calls per
# core. Not the default build: it takes two release builds and a training run (~25 min on a
# 2-core VM), and it needs nginx, wrk, python3 and rustup's llvm-tools.
#
# 1. Builds an instrumented binary (target/pgo-gen).
# 2. Trains it on 127.0.0.1: model calls at saturation (wrk against nginx's fixed chat reply,
#    the workload of `scripts/load.sh saturate`), then streamed and non-streamed OpenAI and
#    Anthropic calls against the scripted upstream, refusals (an unknown route, a bad body) and
#    control API reads. Paths the training does not run (MCP tools, the plugin gate, holds) are
#    compiled as cold code: measure them before relying on this build for them.
# 3. Merges the profile and builds the optimised binary (target/pgo-use). The profile's file
#    name carries its content hash, so a new training always rebuilds.
#
# Run: scripts/pgo.sh   (PGO_SECS=20: the saturation phase's length; PGO_DIR=target/pgo: the
# profiles). Prints the binary's path last; compare it with the default build:
#   CLAWBUTLER_BIN=<that path> SAT_ROUNDS=3 scripts/load.sh saturate
# Ports (127.0.0.1 only): 18090 (nginx), 18091 (data), 18092 (control).
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
mkdir -p "$tmp/nginx" "$tmp/data"
sed -e "s|@PORT@|18090|g" -e "s|@DIR@|$tmp/nginx|g" benches/nginx/nginx.conf.in >"$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
pids+=($!)
cat >"$tmp/clawbutler.toml" <<TOML
[server]
listen = "127.0.0.1:18091"
control_listen = "127.0.0.1:18092"
data_dir = "$tmp/data"
[[upstreams]]
name = "bench"
kind = "openai"
url = "http://127.0.0.1:18090/v1"
[[upstreams]]
name = "fake"
kind = "openai"
url = "$up/v1"
[[upstreams]]
name = "anth"
kind = "anthropic"
url = "$up"
TOML
"$gen" serve --config "$tmp/clawbutler.toml" >"$tmp/sidecar.log" 2>&1 &
sidecar=$!
pids+=($sidecar)
for _ in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:18092/livez && break; sleep 0.1; done
wrk -t2 -c16 -d"${secs}s" -s benches/nginx/post.lua http://127.0.0.1:18091/a/bench/bench/v1/chat/completions |
    grep 'Requests/sec'
python3 - "$(cat "$tmp/data/first-admin-token")" <<'PY'
import json, sys, urllib.request, urllib.error
token = sys.argv[1]
def call(path, body, headers=None, port=18091):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
    except urllib.error.HTTPError as e:
        e.read()
chat = lambda stream: json.dumps({"model": "gpt-4o-mini", "stream": stream, "max_tokens": 64,
    "messages": [{"role": "user", "content": "hello"}]}).encode()
msg = lambda stream: json.dumps({"model": "claude-haiku-4-5", "stream": stream, "max_tokens": 64,
    "messages": [{"role": "user", "content": "hello"}]}).encode()
js = {"content-type": "application/json"}
for i in range(300):
    call("/a/main/fake/v1/chat/completions", chat(i % 2 == 0), js)
    call("/a/main/anth/v1/messages", msg(i % 2 == 0), {**js, "anthropic-version": "2023-06-01"})
    if i % 10 == 0:
        call("/a/main/nosuch/v1/chat/completions", chat(False), js)
        call("/a/main/fake/v1/chat/completions", b"{not json", js)
        auth = {"authorization": f"Bearer {token}"}
        for path in ("/api/v1/audit?limit=50", "/metrics", "/api/v1/budgets"):
            call(path, None, auth, port=18092)
print("pgo: 600 calls against the scripted upstream, 60 refusals, 90 control API reads")
PY
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
