# Sourced by scripts/pgo.sh and scripts/pgo/compare.sh (after they set $tmp, $pids and $NGINX):
# starts what the sidecar calls on 127.0.0.1, nginx's fixed chat reply on 18090 and the fast MCP
# server of scripts/pgo/train.py on 18093, and defines `sidecar_toml`, the config both scripts
# run the sidecar with (data 18091, control 18092, data dir $tmp/data).
mkdir -p "$tmp/nginx"
sed -e "s|@PORT@|18090|g" -e "s|@DIR@|$tmp/nginx|g" benches/nginx/nginx.conf.in >"$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
pids+=($!)
python3 scripts/pgo/train.py mcp-server 18093 &
pids+=($!)

# Writes $tmp/clawbutler.toml: the two peers above, then any further TOML given as $1.
sidecar_toml() {
    cat >"$tmp/clawbutler.toml" <<TOML
[server]
listen = "127.0.0.1:18091"
control_listen = "127.0.0.1:18092"
data_dir = "$tmp/data"
[[upstreams]]
name = "bench"
kind = "openai"
url = "http://127.0.0.1:18090/v1"
[[mcp_servers]]
name = "fast"
transport = "streamable-http"
url = "http://127.0.0.1:18093/mcp"
${1:-}
TOML
}
