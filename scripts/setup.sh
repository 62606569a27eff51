#!/usr/bin/env bash
# Create .venv and install the toolkit with its dev extra at the tested versions (skipped when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/brats ] || [ pyproject.toml -nt .venv/.installed ] || [ constraints.txt -nt .venv/.installed ]; then
  echo "setting up .venv (first run: a few minutes; torch is large)" >&2
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # constraints.txt: the exact versions the suite is tested with (synthetic files are byte-identical only
  # with the same library versions).
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
  touch .venv/.installed
fi
