#!/usr/bin/env bash
# Install the declared MINIMUM versions of the dependencies (the `>=` bounds in pyproject.toml) in a separate
# venv (.venv-min) and run a fast test subset against them, so a lower bound that is too low fails here.
#
# torch and torchvision are the exception: their minimum (2.3 / 0.18) is a multi-GB download, so this venv
# reuses the constrained ones of .venv (a .pth file puts .venv's site-packages after its own, and pip leaves
# packages outside this venv alone). Every other dependency is installed at its minimum.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
MIN=.venv-min
export OMP_WAIT_POLICY=PASSIVE
MAIN_SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# name==minimum for every `>=` requirement but torch and torchvision
PINS=$("$PYTHON" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for d in deps:
    m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", d)
    if m and m.group(1) not in ("torch", "torchvision"):
        print(f"{m.group(1)}=={m.group(2)}")
PY
)
STAMP="$MIN/.installed"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  rm -rf "$MIN"
  "$PYTHON" -m venv "$MIN"
  MIN_SITE=$("$MIN/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$MAIN_SITE" > "$MIN_SITE/zz_main_venv.pth"   # torch, torchvision (and anything not pinned below)
  # shellcheck disable=SC2086
  "$MIN/bin/python" -m pip install --quiet $PINS pytest
  touch "$STAMP"
fi
"$MIN/bin/python" - <<'PY'
import importlib.metadata as md
names = ["numpy", "scipy", "nibabel", "h5py", "monai", "torchio", "segmentation-models-pytorch", "torch"]
print("minimum-version venv:", ", ".join(f"{n} {md.version(n)}" for n in names))
PY
PYTHONPATH=. "$MIN/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_config.py tests/test_faults.py tests/test_data_io.py tests/test_labels.py tests/test_postprocess.py \
  tests/test_model.py tests/test_infer.py tests/test_augment.py tests/test_interval.py "$@"
