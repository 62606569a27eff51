#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (docs/training.md, "Real BraTS 2021 on a GPU"): training and
# prediction speeds of the demo's 2D and the BraTS 2021 3D config per precision (bench/gpu_step.py), then the
# demo recipe trained on the GPU (train.amp auto -> float16 + GradScaler, prediction in float16) and scored by
# bench/generalise.py, at the demo's 30 epochs and at EPOCHS epochs. Results are copied to $OUT.
#
#   OUT=/tmp/gpu EPOCHS=60 bash bench/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
EPOCHS=${EPOCHS:-60}
PY=${PYTHON:-python3}
LOADERS=${LOADERS:-12}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
stage() { echo "== $(date -u +%T) $*"; }
stage gpu_step
$PY bench/gpu_step.py --config configs/demo.yaml --config configs/brats21_3d.yaml --save gpu-step >"$OUT/gpu_step.log" 2>&1
tail -3 "$OUT/gpu_step.log"; cp bench/results/gpu-step.json "$OUT/" 2>/dev/null
for e in 30 "$EPOCHS"; do
  stage "generalise gpu-e$e"
  $PY bench/generalise.py --name "gpu-e$e" --output-dir "/tmp/gx/gpu-e$e" --select 8 --workers 16 \
    --set train.num_workers="$LOADERS" --set train.epochs="$e" >"$OUT/gen-e$e.log" 2>&1
  tail -2 "$OUT/gen-e$e.log"; cp "bench/results/generalise-gpu-e$e.json" "$OUT/" 2>/dev/null
done
stage done
