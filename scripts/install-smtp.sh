#!/usr/bin/env bash
# Installs Debian's aiosmtpd and cryptography for the notification e-mail test's real SMTP
# server (tests/it/notify/smtp_server.py, run with /usr/bin/python3). Idempotent: does nothing
# when both import. The test runs this script itself; it fails (not skips) when the script
# cannot install them and CLAWBUTLER_E2E=1.
set -euo pipefail

PY="${CLAWBUTLER_SMTP_PYTHON:-/usr/bin/python3}"
if "$PY" -c 'import aiosmtpd, cryptography' 2>/dev/null; then
    echo "install-smtp: aiosmtpd and cryptography already importable by $PY"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-smtp: need root or sudo to apt-get install" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy python3-aiosmtpd 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update
fi
$SUDO apt-get install -y --no-install-recommends python3 python3-aiosmtpd python3-cryptography
"$PY" -c 'import aiosmtpd, cryptography' || { echo "install-smtp: installed, but $PY cannot import them" >&2; exit 1; }
echo "install-smtp: ready"
