#!/usr/bin/env bash
# Installs Debian's PostgreSQL server (`postgresql`) for the fleet-mode tests (tests/it/fleet):
# they start their own throwaway clusters (initdb as the `postgres` user into a temp dir, a free
# loopback port) and never use a system server. Debian's package may start a `main` cluster on
# 5432 where systemd runs; the tests neither need nor touch it.
# Idempotent: with initdb present it does nothing.
#
#   scripts/install-postgres.sh        # as root (CI) or with sudo available
#
# The tests skip when PostgreSQL is missing unless CLAWBUTLER_E2E=1, so CI runs this script first.
set -euo pipefail

if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && id postgres >/dev/null 2>&1; then
    echo "install-postgres: $(ls -d /usr/lib/postgresql/*/bin | tail -1) already present"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-postgres: need root or sudo to apt-get install" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy postgresql 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update
fi
$SUDO apt-get install -y --no-install-recommends postgresql
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { echo "install-postgres: initdb still missing" >&2; exit 1; }
echo "install-postgres: ready ($(ls -d /usr/lib/postgresql/*/bin | tail -1))"
