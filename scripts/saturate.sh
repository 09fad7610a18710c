#!/usr/bin/env bash
# Closed-loop saturation: `wrk` drives a fixed number of connections as fast as answers come,
# straight to a local nginx that returns a fixed OpenAI chat-completion reply, then through the
# release sidecar (shipped policies, audit on) in front of that same nginx, in one run.
# Prints req/s, p50 and p99 for each path and the ratio sidecar/direct.
# A third path, nginx as a bare reverse proxy in front of the same nginx (kept-alive upstream
# connections, one worker per CPU, nothing decided or recorded: benches/nginx/bare-proxy.conf.in),
# shows what the hop alone costs on this machine; the sidecar's own work is the difference
# (SAT_BARE=off skips it). A fourth path, the bare Rust hop (listener/examples/bare_hop.rs: the
# sidecar's own listener, connection threads and pooled hyper client, forwarding and nothing
# else), shows what the Rust HTTP stack the sidecar is built on costs by itself (SAT_HOP=off
# skips it; built once with `cargo build --release -p listener --example bare_hop` when missing,
# or $CLAWBUTLER_HOP_BIN).
#
# Needs nginx and wrk on PATH; this script installs nothing. On Debian/Ubuntu:
#   sudo apt-get update && sudo apt-get install -y nginx wrk
# Run: scripts/load.sh saturate   (SAT_THREADS=2 SAT_CONNS=16 SAT_SECS=10 SAT_WARMUP=1 SAT_SPIN_US)
# SAT_ROUNDS=N (default 1) repeats the direct and sidecar runs N times, alternating, and adds
# each round's ratio and CPU per call and their medians: on a host whose other tenants come and
# go, one pair can land in a quiet and a busy moment; the median of alternating rounds is what
# to compare builds by (the first table stays the first round).
# SAT_PERF=/tmp/sat.perf also records a flat on-CPU profile of the sidecar during its run
# (Debian: apt-get install -y linux-perf; `perf report -i /tmp/sat.perf --no-children`).
# LiteLLM 1.100.0 (the issue's comparison) runs too when installed into the ignored cache dir
# (newer releases do not install here):
#   python3 -m venv ~/.cache/clawbutler/litellm-1.100.0
#   ~/.cache/clawbutler/litellm-1.100.0/bin/pip install 'litellm[proxy]==1.100.0'
# (SAT_LITELLM=<venv> elsewhere, SAT_LITELLM=off to skip); one worker, nginx as its upstream.
# Ports (127.0.0.1 only): SAT_NGINX_PORT=18090, SAT_PORT=18091 (data), SAT_CONTROL_PORT=18092,
# SAT_LITELLM_PORT=18093, SAT_BARE_PORT=18094, SAT_HOP_PORT=18095.
# The binary is $CLAWBUTLER_BIN, else the release build in ${CARGO_TARGET_DIR:-target} (built
# once with `cargo build --release --bin clawbutler` when missing).
# Only the processes this script started are stopped, by their pid.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

for tool in nginx wrk; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
        echo "saturate: '$tool' not found. Install it first: sudo apt-get install -y nginx wrk" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

threads=${SAT_THREADS:-2}
rounds=${SAT_ROUNDS:-1}
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "saturate: SAT_ROUNDS must be a whole number of rounds, 1 or more (got '$rounds')" >&2
    exit 1
fi
conns=${SAT_CONNS:-16}
secs=${SAT_SECS:-10}
warmup=${SAT_WARMUP:-1}
nport=${SAT_NGINX_PORT:-18090}
port=${SAT_PORT:-18091}
cport=${SAT_CONTROL_PORT:-18092}
lport=${SAT_LITELLM_PORT:-18093}
bport=${SAT_BARE_PORT:-18094}
bare=${SAT_BARE:-on}
hport=${SAT_HOP_PORT:-18095}
hop=${SAT_HOP:-on}
litellm_venv=${SAT_LITELLM:-$HOME/.cache/clawbutler/litellm-1.100.0}
litellm=
[[ "$litellm_venv" != off && -x "$litellm_venv/bin/litellm" ]] && litellm="$litellm_venv/bin/litellm"

bin=${CLAWBUTLER_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/clawbutler}
if [[ ! -x "$bin" ]]; then
    cargo build --release --bin clawbutler
fi
hop_bin=${CLAWBUTLER_HOP_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/examples/bare_hop}
if [[ "$hop" != off && ! -x "$hop_bin" ]]; then
    cargo build --release -p listener --example bare_hop
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# nginx, fixed reply.
mkdir -p "$tmp/nginx"
sed -e "s|@PORT@|$nport|g" -e "s|@DIR@|$tmp/nginx|g" benches/nginx/nginx.conf.in >"$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
pids+=($!)
# nginx as a bare proxy in front of it (its workers' CPU is counted like the sidecar's).
bpid=
if [[ "$bare" != off ]]; then
    mkdir -p "$tmp/bare"
    sed -e "s|@PORT@|$bport|g" -e "s|@UPSTREAM@|127.0.0.1:$nport|g" -e "s|@DIR@|$tmp/bare|g" \
        benches/nginx/bare-proxy.conf.in >"$tmp/bare/nginx.conf"
    "$NGINX" -p "$tmp/bare" -c "$tmp/bare/nginx.conf" &
    bpid=$!
    pids+=("$bpid")
fi

# The sidecar: defaults (embedded policy bundle, durable audit log) with nginx as the upstream.
mkdir -p "$tmp/data"
cat >"$tmp/clawbutler.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
control_listen = "127.0.0.1:$cport"
data_dir = "$tmp/data"

[[upstreams]]
name = "bench"
kind = "openai"
url = "http://127.0.0.1:$nport/v1"
TOML
# SAT_SPIN_US sets `[proxy] spin_us` (docs/performance.md, "Staying awake").
if [[ -n "${SAT_SPIN_US:-}" ]]; then
    printf '\n[proxy]\nspin_us = %s\n' "$SAT_SPIN_US" >>"$tmp/clawbutler.toml"
fi
"$bin" serve --config "$tmp/clawbutler.toml" >"$tmp/sidecar.log" 2>&1 &
spid=$!
pids+=("$spid")
# The bare Rust hop in front of the same nginx (its CPU is counted like the sidecar's).
hpid=
if [[ "$hop" != off ]]; then
    "$hop_bin" "127.0.0.1:$hport" "http://127.0.0.1:$nport" >"$tmp/hop.log" 2>&1 &
    hpid=$!
    pids+=("$hpid")
fi

if [[ -n "$litellm" ]]; then
    cat >"$tmp/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$nport/v1
      api_key: sk-bench
YAML
    (cd "$tmp" && exec "$litellm" --config "$tmp/litellm.yaml" --host 127.0.0.1 --port "$lport" --num_workers 1) \
        >"$tmp/litellm.log" 2>&1 &
    pids+=($!)
fi

wait_up() { # url [tries of 0.1 s]
    for _ in $(seq 1 "${2:-100}"); do
        if curl -s -o /dev/null -X POST -H 'content-type: application/json' --data '{}' "$1"; then
            return 0
        fi
        sleep 0.1
    done
    echo "saturate: $1 did not come up" >&2
    cat "$tmp/sidecar.log" "$tmp/litellm.log" >&2 2>/dev/null || true
    exit 1
}
direct="http://127.0.0.1:$nport/v1/chat/completions"
proxied="http://127.0.0.1:$port/a/bench/bench/v1/chat/completions"
via_bare="http://127.0.0.1:$bport/v1/chat/completions"
via_hop="http://127.0.0.1:$hport/v1/chat/completions"
wait_up "$direct"
wait_up "$proxied"
[[ -n "$bpid" ]] && wait_up "$via_bare"
[[ -n "$hpid" ]] && wait_up "$via_hop"
code=$(curl -s -o "$tmp/one.json" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data-binary "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" "$proxied")
if [[ "$code" != 200 ]]; then
    echo "saturate: the sidecar answered $code: $(cat "$tmp/one.json")" >&2
    exit 1
fi

# One wrk run; prints "req/s p50_ms p99_ms errors".
run() { # url secs
    local out
    out=$(wrk -t"$threads" -c"$conns" -d"$2"s --latency -s benches/nginx/post.lua "$1")
    echo "$out" >>"$tmp/wrk.log"
    echo "$out" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx/ { err += $5 }
        /Socket errors/ { err += $4 + $6 + $8 + $10 }
        END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, err }'
}

[[ "$warmup" -gt 0 ]] && { run "$direct" "$warmup" >/dev/null; run "$proxied" "$warmup" >/dev/null; }
[[ "$warmup" -gt 0 && -n "$bpid" ]] && run "$via_bare" "$warmup" >/dev/null
[[ "$warmup" -gt 0 && -n "$hpid" ]] && run "$via_hop" "$warmup" >/dev/null
read -r d_rps d_p50 d_p99 d_err < <(run "$direct" "$secs")
# CPU time (user + system, clock ticks) of the bare proxy's workers.
bare_ticks() { for w in $(pgrep -P "$bpid"); do awk '{ print $14 + $15 }' "/proc/$w/stat"; done | awk '{ t += $1 } END { print t + 0 }'; }
# One run of a path whose CPU is counted (the bare proxy, the bare hop); prints "req/s p50_ms
# p99_ms errors ticks" ("0 0 0 0 0" when the path is off). Args: its pid ("" = off), url, and
# the function that prints its CPU ticks.
run_counted() {
    if [[ -z "$1" ]]; then
        echo "0 0 0 0 0"
        return
    fi
    local t0 r
    t0=$($3)
    r=$(run "$2" "$secs")
    echo "$r $(($($3) - t0))"
}
hop_ticks() { awk '{ print $14 + $15 }' "/proc/$hpid/stat"; }
run_bare() { run_counted "$bpid" "$via_bare" bare_ticks; }
run_hop() { run_counted "$hpid" "$via_hop" hop_ticks; }
read -r b_rps b_p50 b_p99 b_err b_ticks < <(run_bare)
read -r h_rps h_p50 h_p99 h_err h_ticks < <(run_hop)
# Voluntary context switches (sleeps that ended in a wake-up) of the sidecar's threads, by name.
switches() {
    for t in /proc/"$spid"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")"
    done | awk '{ n[$1] += $2 } END { for (k in n) print k, n[k] }' | sort
}
switches >"$tmp/sw0"
# CPU time the sidecar used (user + system, clock ticks): per call, it is the figure that moves
# least when other programs share the machine.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$spid/stat"; }
cpu0=$(cpu_ticks)
perfpid=
if [[ -n "${SAT_PERF:-}" ]]; then
    # Profile the sidecar during its run (flat, on-CPU): `perf report -i $SAT_PERF --no-children`.
    perf record -q -e cpu-clock -F 999 -p "$spid" -o "$SAT_PERF" -- sleep "$secs" >/dev/null 2>&1 &
    perfpid=$!
fi
read -r s_rps s_p50 s_p99 s_err < <(run "$proxied" "$secs")
if [[ -n "$perfpid" ]]; then
    wait "$perfpid" || true
fi
switches >"$tmp/sw1"
cpu1=$(cpu_ticks)
rss=$(awk '/VmRSS/ {print $2/1024 " MB"}' "/proc/$spid/status" 2>/dev/null || echo "?")
# Per round (SAT_ROUNDS): "direct_rps sidecar_rps sidecar_ticks errors bare_rps bare_ticks
# hop_rps hop_ticks".
echo "$d_rps $s_rps $((cpu1 - cpu0)) $((d_err + s_err + b_err + h_err)) $b_rps $b_ticks $h_rps $h_ticks" >"$tmp/rounds"
for ((r = 2; r <= rounds; r++)); do
    read -r rd_rps _ _ rd_err < <(run "$direct" "$secs")
    read -r rb_rps _ _ rb_err rb_ticks < <(run_bare)
    read -r rh_rps _ _ rh_err rh_ticks < <(run_hop)
    c0=$(cpu_ticks)
    read -r rs_rps _ _ rs_err < <(run "$proxied" "$secs")
    c1=$(cpu_ticks)
    echo "$rd_rps $rs_rps $((c1 - c0)) $((rd_err + rs_err + rb_err + rh_err)) $rb_rps $rb_ticks $rh_rps $rh_ticks" >>"$tmp/rounds"
done
if [[ -n "$litellm" ]]; then
    via_litellm="http://127.0.0.1:$lport/v1/chat/completions"
    wait_up "$via_litellm" 900 # it takes a while to import
    [[ "$warmup" -gt 0 ]] && run "$via_litellm" "$warmup" >/dev/null
    read -r l_rps l_p50 l_p99 l_err < <(run "$via_litellm" "$secs")
fi

echo "closed loop: wrk -t$threads -c$conns -d${secs}s, POST chat completion, nginx fixed reply (1 worker)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %10s %10s %10s %8s\n' path req/s p50_ms p99_ms errors
printf '%-22s %10s %10s %10s %8s\n' direct "$d_rps" "$d_p50" "$d_p99" "$d_err"
[[ -n "$bpid" ]] && printf '%-22s %10s %10s %10s %8s\n' "bare nginx proxy" "$b_rps" "$b_p50" "$b_p99" "$b_err"
[[ -n "$hpid" ]] && printf '%-22s %10s %10s %10s %8s\n' "bare Rust hop" "$h_rps" "$h_p50" "$h_p99" "$h_err"
printf '%-22s %10s %10s %10s %8s\n' sidecar "$s_rps" "$s_p50" "$s_p99" "$s_err"
[[ -n "$litellm" ]] && printf '%-22s %10s %10s %10s %8s\n' "litellm 1.100.0" "$l_rps" "$l_p50" "$l_p99" "$l_err"
awk -v s="$s_rps" -v d="$d_rps" -v sp="$s_p99" -v dp="$d_p99" 'BEGIN {
    printf "ratio sidecar/direct: %.3fx req/s; added p99 %+.3f ms\n", (d > 0 ? s / d : 0), sp - dp }'
if [[ -n "$bpid" ]]; then
    awk -v b="$b_rps" -v d="$d_rps" -v s="$s_rps" -v t="$b_ticks" -v hz="$(getconf CLK_TCK)" -v secs="$secs" 'BEGIN {
        printf "ratio bare proxy/direct: %.3fx req/s (the hop alone, %.0f us CPU per call); sidecar/bare proxy: %.3fx\n",
            (d > 0 ? b / d : 0), (b > 0 ? t / hz * 1e6 / (b * secs) : 0), (b > 0 ? s / b : 0) }'
fi
if [[ -n "$hpid" ]]; then
    awk -v h="$h_rps" -v d="$d_rps" -v s="$s_rps" -v t="$h_ticks" -v hz="$(getconf CLK_TCK)" -v secs="$secs" 'BEGIN {
        printf "ratio bare Rust hop/direct: %.3fx req/s (the sidecar'"'"'s HTTP stack alone, %.0f us CPU per call); sidecar/hop: %.3fx\n",
            (d > 0 ? h / d : 0), (h > 0 ? t / hz * 1e6 / (h * secs) : 0), (h > 0 ? s / h : 0) }'
fi
if [[ -n "$litellm" ]]; then
    awk -v l="$l_rps" -v d="$d_rps" -v s="$s_rps" 'BEGIN {
        printf "ratio litellm/direct: %.4fx req/s; sidecar/litellm: %.0fx\n", (d > 0 ? l / d : 0), (l > 0 ? s / l : 0) }'
else
    [[ "$litellm_venv" == off ]] && echo "(LiteLLM skipped: SAT_LITELLM=off)" ||
        echo "(LiteLLM not installed: see the top of scripts/saturate.sh to add it to the comparison)"
fi
echo "sidecar RSS after the run: $rss"
awk -v t="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" -v n="$s_rps" -v s="$secs" 'BEGIN {
    if (n > 0) printf "sidecar CPU per proxied call: %.0f us (user + system)\n", t / hz * 1e6 / (n * s) }'
if [[ "$rounds" -gt 1 ]]; then
    order="direct"
    [[ -n "$bpid" ]] && order+=" / bare proxy"
    [[ -n "$hpid" ]] && order+=" / bare Rust hop"
    order+=" / sidecar"
    echo "rounds (SAT_ROUNDS=$rounds, alternating $order, ${secs} s each):"
    # Per round: "ratio cpu_us_per_call bare_ratio bare_cpu_us hop_ratio hop_cpu_us" from the
    # rounds file (fields 9-14 once pasted beside it).
    awk -v hz="$(getconf CLK_TCK)" -v s="$secs" '
        function us(ticks, rps) { return rps > 0 ? ticks / hz * 1e6 / (rps * s) : 0 }
        { d = $1; printf "%.6f %.3f %.6f %.3f %.6f %.3f\n", (d > 0 ? $2 / d : 0), us($3, $2),
            (d > 0 ? $5 / d : 0), us($6, $5), (d > 0 ? $7 / d : 0), us($8, $7) }' \
        "$tmp/rounds" >"$tmp/r.derived"
    paste -d' ' "$tmp/rounds" "$tmp/r.derived" | awk -v bare="$bpid" -v hop="$hpid" '{
        printf "  round %d: direct %d req/s, sidecar %d req/s, ratio %.3fx, CPU per call %.0f us", NR, $1, $2, $9, $10
        if (bare != "") printf "; bare proxy %d req/s, %.3fx, %.0f us", $5, $11, $12
        if (hop != "") printf "; bare Rust hop %d req/s, %.3fx, %.0f us", $7, $13, $14
        printf "\n" }'
    median() { # column of r.derived
        cut -d' ' -f"$1" "$tmp/r.derived" | sort -g |
            awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
    }
    printf 'median over %d rounds: ratio %.3fx, CPU per call %.0f us' "$rounds" "$(median 1)" "$(median 2)"
    [[ -n "$bpid" ]] && printf '; bare proxy %.3fx, %.0f us' "$(median 3)" "$(median 4)"
    [[ -n "$hpid" ]] && printf '; bare Rust hop %.3fx, %.0f us' "$(median 5)" "$(median 6)"
    printf '\n'
fi
echo "sidecar threads: voluntary context switches per proxied call during the run"
join "$tmp/sw0" "$tmp/sw1" | awk -v n="$s_rps" -v s="$secs" '{ if (n > 0) printf "  %-18s %.3f\n", $1, ($3 - $2) / (n * s) }'
if [[ "$d_err" != 0 || "$s_err" != 0 || "$b_err" != 0 || "$h_err" != 0 || "${l_err:-0}" != 0 ]] || awk '$4 != 0 { bad = 1 } END { exit !bad }' "$tmp/rounds"; then
    echo "saturate: errors during the run (see above)" >&2
    exit 1
fi
