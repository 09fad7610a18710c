#!/usr/bin/env bash
# Installs what the SRE tests (tests/it/sre/) need from Debian: `prometheus` (the server and
# `promtool`, to check and unit-test deploy/prometheus/ and scrape a live sidecar) and
# `systemd` (`systemd-analyze`, to verify deploy/clawbutler.service and score its hardening) and
# `buildah` (builds and runs the image of deploy/container/ offline, vfs storage) and `nginx`
# (a TLS + HTTP/2 upstream for tests/it/upstream_h2.rs, and the saturation benchmark's upstream).
# Idempotent: with every binary present it does nothing.
#
#   scripts/install-sre-tools.sh        # as root (CI) or with sudo available
#
# The tests skip when a tool is missing unless CLAWBUTLER_E2E=1, so CI runs this script first.
set -euo pipefail

declare -A PKG=([prometheus]=prometheus [promtool]=prometheus [systemd-analyze]=systemd [buildah]=buildah [nginx]=nginx)
export PATH="$PATH:/usr/sbin"
missing=()
for bin in "${!PKG[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("${PKG[$bin]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-sre-tools: prometheus, promtool, systemd-analyze, buildah and nginx already present"
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-sre-tools: need root or sudo to apt-get install" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update
fi
# The Debian package would also start a Prometheus service where systemd runs; the tests
# start their own on a free loopback port.
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
for bin in "${!PKG[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || { echo "install-sre-tools: $bin still missing" >&2; exit 1; }
done
promtool --version | head -1
