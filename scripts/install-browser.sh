#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and its WebDriver for the UI browser test
# (tests/it/ui_browser.rs), and poppler-utils, whose `pdftoppm` renders the reports' PDF pages
# in the reports test (tests/it/reports.rs). Idempotent: a second run with everything present
# does nothing.
#
#   scripts/install-browser.sh        # as root (CI) or with sudo available
#
# The test finds the binaries at /usr/bin/chromium and /usr/bin/chromedriver (override with
# CLAWBUTLER_CHROMIUM / CLAWBUTLER_CHROMEDRIVER). It skips when they are missing unless
# CLAWBUTLER_E2E=1, so CI runs this script first.
set -euo pipefail

CHROMIUM="${CLAWBUTLER_CHROMIUM:-/usr/bin/chromium}"
DRIVER="${CLAWBUTLER_CHROMEDRIVER:-/usr/bin/chromedriver}"

if [[ -x "$CHROMIUM" && -x "$DRIVER" ]] && command -v pdftoppm >/dev/null 2>&1; then
    echo "install-browser: $CHROMIUM, $DRIVER and pdftoppm already present"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-browser: need root or sudo to apt-get install" >&2; exit 1; }
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh container has no package lists; `apt-get install` alone would fail with "no candidate".
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update
fi
$SUDO apt-get install -y --no-install-recommends chromium chromium-driver fonts-noto-cjk poppler-utils

[[ -x "$CHROMIUM" && -x "$DRIVER" ]] || { echo "install-browser: install finished but $CHROMIUM or $DRIVER is missing" >&2; exit 1; }
command -v pdftoppm >/dev/null 2>&1 || { echo "install-browser: install finished but pdftoppm is missing" >&2; exit 1; }
"$CHROMIUM" --version
"$DRIVER" --version
