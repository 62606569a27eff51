#!/usr/bin/env bash
# Install Debian's Chromium and chromedriver for tests/test_serve_browser.py (idempotent: skipped when present).
# The browser test drives /usr/bin/chromium with Playwright's Python package; Playwright's own browser
# downloads are never used.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing chromium and chromium-driver (apt-get)" >&2
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version >&2
