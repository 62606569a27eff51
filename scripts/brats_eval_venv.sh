#!/usr/bin/env bash
# Create .venv-brats-eval holding the official BraTS evaluation package (pinned), for the lesion-wise
# cross-check in tests/test_lesionwise.py. It is a separate venv because that package pins its own numpy
# and pulls panoptica, SimpleITK, pandas and scikit-image, none of which the toolkit needs.
# Idempotent: does nothing when the venv already holds exactly these pins.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BRATS_EVAL_VENV:-.venv-brats-eval}"
PYTHON="${PYTHON:-python3}"
PINS=(
  "brats-evaluation==0.0.10"
  "panoptica==2.1.7"
  "numpy==2.2.6"
  "scipy==1.17.1"
  "connected-components-3d==3.29.0"
  "nibabel==5.4.2"
  "pandas==2.3.3"
  "SimpleITK==2.5.7"
)
STAMP="$VENV/.brats-eval-pins"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PINS[*]}" ]; then
  exit 0
fi
echo "setting up $VENV (official BraTS evaluation package; first run: about a minute)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
"$VENV/bin/python" -c "import brats_evaluation, panoptica"
printf '%s' "${PINS[*]}" > "$STAMP"
