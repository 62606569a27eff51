#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test drives Debian's Chromium; the lesion-wise cross-check runs the official package in its own venv.
bash scripts/install_browser.sh
bash scripts/brats_eval_venv.sh
# Idle OpenMP threads must not spin: two busy-waiting torch threads collapse on a shared 2-core machine.
export OMP_WAIT_POLICY=PASSIVE
# Static checks first (configured in pyproject.toml): lint and types of the library.
.venv/bin/ruff check brats tests bench tools
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
# The declared minimum versions (a separate venv, a fast subset); BRATS_SKIP_MIN_VERSIONS=1 skips it.
if [ "${BRATS_SKIP_MIN_VERSIONS:-0}" != "1" ]; then
  bash scripts/test_min_versions.sh
fi
