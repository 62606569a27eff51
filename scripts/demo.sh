#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo on a synthetic cohort. Extra arguments go to `brats demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/brats demo "$@"
