# Sourced by the load scripts that need the scripted upstream (`testkit`'s scripted-upstream,
# built once in debug when missing): makes $tmp, stops every pid in `pids` and removes $tmp on
# exit, starts the upstream on 127.0.0.1 and sets $up to its base URL. Only the processes the
# script started are stopped, by their pid.
up_bin=${CARGO_TARGET_DIR:-$root/target}/debug/scripted-upstream
[[ -x "$up_bin" ]] || cargo build -p testkit --bin scripted-upstream
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
"$up_bin" >"$tmp/up.url" 2>"$tmp/up.log" &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$tmp/up.url" ]] && break; sleep 0.1; done
up=$(head -1 "$tmp/up.url")
