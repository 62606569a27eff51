"""Two-stage LGG benchmark: the segmenter alone vs gated by a slice classifier (prints one JSON object).

    python bench/lgg.py [--cases 16] [--shape 64 64 48] [--seg-steps 60] [--cls-steps 60] [--out DIR]

1. A synthetic kaggle_3m cohort (``brats synth --naming kaggle_3m``; every sixth patient tumour-free), split by
   patient with ``configs/lgg.yaml`` (train 50 %, val 12.5 %, test the rest), whole 256x256 slices as patches.
2. The segmenter (smp U-Net resnet18, focal + Dice, ``--seg-steps`` steps of batch 4) is trained by
   ``brats.train.run_training``; the slice classifier (resnet18 encoder + linear, BCE, ``--cls-steps`` steps
   of batch 8) by ``brats.train.classifier.train_slice_classifier`` on the same store.
3. Every test patient is predicted twice, post-processing as configured: the segmenter alone, and gated
   (slices with classifier probability < 0.5 cleared; 0.5 fixed in advance, nothing tuned on the test split).
   Reported per arm: slice-level TP/FP/FN/TN, sensitivity, specificity, AUC (max tumour probability), the
   patient Dice (mean over test patients, ``brats`` empty rule), pooled Dice and seconds per patient
   (wall time on this machine, CPU, one thread; ``uptime`` load recorded beside it).

Raw results: ``bench/results/lgg.json``. docs/lgg.md reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from brats.config import load_config  # noqa: E402
from brats.data import discover_cases, load_seg  # noqa: E402
from brats.evaluate.binary import evaluate_binary_case, summarize_binary  # noqa: E402
from brats.evaluate.summary import json_safe  # noqa: E402
from brats.extract import run_extract  # noqa: E402
from brats.predict.gate import predict_gated  # noqa: E402
from brats.predict.predictor import load_predictor  # noqa: E402
from brats.synth.kaggle import generate_kaggle_cohort  # noqa: E402
from brats.train import run_training  # noqa: E402
from brats.train.classifier import train_slice_classifier  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _config(work: Path, cases: Path, seg_steps: int):
    sets = [
        f"output_dir={work / 'run'}",
        f"data.root={cases}",
        "data.train_fraction=0.5",
        "data.val_fraction=0.125",
        "model.encoder=resnet18",
        "model.decoder_channels=[64,32,16,16,8]",
        "train.epochs=1",
        f"train.steps_per_epoch={seg_steps}",
        "train.batch_size=4",
        "train.val_max_batches=4",
        "train.num_threads=1",
        "train.lr=0.001",
        "train.device=cpu",
        "train.best_metric=val_loss",
    ]
    return load_config(REPO / "configs" / "lgg.yaml", sets)


def _arm(model, classifier, cases, settings) -> dict:
    rows, counts, units, seconds = [], [], [], []
    for case in cases:
        t0 = time.perf_counter()
        classes, tumour, _ = predict_gated(model, classifier, case, settings)
        seconds.append(time.perf_counter() - t0)
        row, cnt, unit = evaluate_binary_case(classes, load_seg(case), (1.0, 1.0, 1.0), tumour)
        rows.append({"case": case.case_id, **row})
        counts.append(cnt)
        units.append(unit)
    s = summarize_binary(rows, counts, units, "brats", from_prob=True)
    sl = s["detection"]["slice"]
    return {
        "slice_tp": sl["tp"],
        "slice_fp": sl["fp"],
        "slice_fn": sl["fn"],
        "slice_tn": sl["tn"],
        "slice_sensitivity": sl["sensitivity"],
        "slice_specificity": sl["specificity"],
        "slice_auc": sl["auc"],
        "patient_dice_mean": s["per_case"]["tumour"]["dice"]["mean"],
        "pooled_dice": s["pooled"]["tumour"]["dice"],
        "seconds_per_patient": float(np.mean(seconds)),
        "per_patient_dice": {r["case"]: r["tumour_dice"] for r in rows},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 64, 48])
    ap.add_argument("--seg-steps", type=int, default=60)
    ap.add_argument("--cls-steps", type=int, default=60)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "lgg.json"))
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="brats-bench-lgg-"))
    cases_dir = work / "kaggle_3m"
    t0 = time.perf_counter()
    generate_kaggle_cohort(cases_dir, args.cases, seed=0, shape=tuple(args.shape))
    cfg = _config(work, cases_dir, args.seg_steps)
    ext = run_extract(cfg)
    t1 = time.perf_counter()
    train = run_training(cfg)
    t2 = time.perf_counter()
    classifier, cls_info = train_slice_classifier(cfg, steps=args.cls_steps)
    t3 = time.perf_counter()
    model, settings = load_predictor(train["last"], device="cpu")
    splits = json.loads((work / "run" / "splits.json").read_text())
    by_id = {c.case_id: c for c in discover_cases(cases_dir)}
    test = [by_id[cid] for cid in splits["test"]]
    result = {
        "cohort": {"patients": args.cases, "shape": args.shape, "test_patients": len(test)},
        "store": {"train_patches": ext["train_patches"], "val_patches": ext["val_patches"]},
        "segmenter": {"steps": args.seg_steps, "batch_size": 4, "train_seconds": round(t2 - t1, 1)},
        "classifier": {**cls_info, "batch_size": 8, "threshold": 0.5},
        "segmenter_alone": _arm(model, None, test, settings),
        "gated": _arm(model, classifier, test, settings),
        "setup_seconds": round(t1 - t0, 1),
        "classifier_seconds": round(t3 - t2, 1),
        "device": "cpu, 1 thread",
    }
    from results_io import write_result  # bench/ is on sys.path when a bench script runs

    path = write_result(Path(args.results).stem, json_safe(result), folder=Path(args.results).parent)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
