#!/usr/bin/env bash
# The browser test (tests/browser) drives Debian's Chromium. Install it when it is missing and we
# can (root, or passwordless sudo, with apt-get); otherwise say so: the test then skips, except
# under CI=true, where it fails.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${FEATURE_ROLLOUT_CHROMIUM:-}" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get here; install Chromium and set FEATURE_ROLLOUT_CHROMIUM to run the browser test." >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure-chromium: Chromium is missing and installing it needs root: sudo apt-get install chromium" >&2
    exit 0
fi
echo "ensure-chromium: installing Debian's chromium for the browser test ..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
chromium --version
