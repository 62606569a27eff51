#!/usr/bin/env bash
# Create .venv and install the toolkit with its dev extra (skipped when already up to date).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/brats ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setting up .venv (first run: a few minutes; torch is large)" >&2
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch .venv/.installed
fi
