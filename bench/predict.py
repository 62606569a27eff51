#!/usr/bin/env python
"""Prediction speed of one 240x240x155 case on the CPU; prints one JSON object (last line).

A resnet34 2D U-Net (smp, random weights, seed 0, fp32, channels_last) predicts one synthetic case
(``brats.synth.generate_case(0, 0)``, z-score normalised) by four paths, each in a fresh process (so each peak
memory is its own) after one warm-up forward (and the MONAI import, ~1-4 s, outside the clock):

* ``lower_bound`` (L): one forward pass over each non-empty slice's brain bounding box padded to a multiple of
  32 (slices of equal padded size batched, 16 per pass), no overlap, no blending;
* ``default``: :func:`brats.predict.predict_volume` as ``brats predict`` runs it (overlap 0.5, Gaussian);
* ``overlap0``: the same with ``--overlap 0``;
* ``monai``: plain MONAI ``sliding_window_inference`` over whole 240x240 slices (all slices batched), 128x128
  windows, overlap 0.5, Gaussian, 16 windows per pass.

Targets (issue 6): default <= 2.5 L, overlap0 <= 1.3 L, monai / default >= 2.

Usage: ``python bench/predict.py [--threads N] [--repeats R] [--paths lower_bound,default,overlap0,monai]``
(``--threads`` defaults to ``OMP_NUM_THREADS`` or 1). ``seconds`` are wall-clock medians over the repeats;
``cpu_seconds`` (process CPU time) are steadier when other jobs share the machine.

``python bench/predict.py --sweep-postprocess CKPT CASES`` instead scores the post-processing thresholds of a
trained checkpoint on labelled cases (see :func:`sweep_postprocess`); choose them on validation cases.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = ("lower_bound", "default", "overlap0", "monai")
PATCH = (128, 128)
BATCH = 16


def make_case(path: Path) -> dict:
    """Write the normalised synthetic case ``(C, X, Y, Z)`` float32 to ``path`` (.npy); return its facts."""
    import numpy as np

    from brats.preprocess import normalize
    from brats.synth import generate_case

    images, seg, _ = generate_case(0, 0)
    image = np.stack([images[m] for m in ("t1", "t1ce", "t2", "flair")]).astype(np.float32)
    image = normalize(image, "zscore")
    image = image.astype(np.float16).astype(np.float32)  # the storage dtype of training patches
    np.save(path, image)
    mask = np.any(image != 0, axis=0)
    return {
        "shape": list(image.shape),
        "brain_voxels": int(mask.sum()),
        "nonempty_slices": int(mask.any(axis=(0, 1)).sum()),
        "tumour_voxels": int((seg > 0).sum()),
    }


def build_model(threads: int):
    import torch

    from brats.config import ModelConfig
    from brats.networks import build_model as build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(ModelConfig(encoder="resnet34"), in_channels=4, classes=4).eval()
    return model.to(memory_format=torch.channels_last)


def lower_bound(model, image):
    """One forward over each non-empty slice's brain box (padded to 32), slices of one size batched."""
    import numpy as np
    import torch

    from brats.predict.sliding import _slice_boxes

    X, Y, Z = image.shape[1:]
    out = np.zeros((4, X, Y, Z), np.float32)
    src = torch.from_numpy(image)
    with torch.inference_mode():
        for (sx, sy), items in _slice_boxes(np.any(image != 0, axis=0), True, 32).items():
            for k in range(0, len(items), BATCH):
                chunk = items[k : k + BATCH]
                batch = torch.zeros((len(chunk), 4, sx, sy))
                for i, (z, x0, y0) in enumerate(chunk):
                    part = src[:, x0 : x0 + sx, y0 : y0 + sy, z]
                    batch[i, :, : part.shape[1], : part.shape[2]] = part
                prob = torch.softmax(model(batch.contiguous(memory_format=torch.channels_last)), 1).numpy()
                for i, (z, x0, y0) in enumerate(chunk):
                    wx, wy = min(sx, X - x0), min(sy, Y - y0)
                    out[:, x0 : x0 + wx, y0 : y0 + wy, z] = prob[i, :, :wx, :wy]
    return out


def plain_monai(model, image):
    """MONAI sliding_window_inference over whole axial slices (all slices as one batch)."""
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    def predictor(x):
        return torch.softmax(model(x.contiguous(memory_format=torch.channels_last)), 1)

    with torch.inference_mode():
        slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))  # (Z, C, X, Y)
        prob = sliding_window_inference(slices, PATCH, BATCH, predictor, overlap=0.5, mode="gaussian")
    return np.moveaxis(prob.numpy(), 0, -1)  # (4, X, Y, Z)


def worker(path: str, data: str, threads: int, out: str) -> None:
    """Time one path in this (fresh) process; write ``{"seconds", "maxrss_mb", "tracemalloc_peak_mb"}``."""
    import numpy as np
    import torch

    from brats.predict.sliding import predict_volume

    model = build_model(threads)
    image = np.load(data)
    import monai.inferers  # noqa: F401 - imported before the clock starts, like the model's first pass

    with torch.inference_mode():  # warm-up: oneDNN builds its kernels on the first pass
        model(torch.zeros(2, 4, 128, 128).contiguous(memory_format=torch.channels_last))
    run = {
        "lower_bound": lambda: lower_bound(model, image),
        "default": lambda: predict_volume(model, image, PATCH, 0.5, "gaussian", BATCH),
        "overlap0": lambda: predict_volume(model, image, PATCH, 0.0, "gaussian", BATCH),
        "monai": lambda: plain_monai(model, image),
    }[path]
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    prob = run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.save(out, prob.argmax(0).astype(np.uint8))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).with_suffix(".json").write_text(
        json.dumps(
            {"seconds": seconds, "cpu_seconds": cpu, "maxrss_mb": rss, "tracemalloc_peak_mb": peak / 2**20}
        )
    )


def sweep_postprocess(
    checkpoint: str, cases_path: str, min_components: list[int], et_thresholds: list[int]
) -> dict:
    """Dice of WT/TC/ET (BraTS empty rule) and spurious tumour blobs for every pair of post-processing thresholds.

    Every labelled case under ``cases_path`` is predicted once (the checkpoint's predict settings, no
    post-processing); the thresholds are then applied to the stored class maps. A spurious blob is a predicted
    tumour component (26-connectivity) that touches no reference tumour voxel.
    """
    import numpy as np

    from brats.data import load_seg, resolve_cases
    from brats.evaluate.metrics import confusion_counts, dice_from_counts
    from brats.labels import to_classes
    from brats.predict.postprocess import postprocess, tumour_components
    from brats.predict.predictor import load_predictor, predict_probabilities

    model, settings = load_predictor(checkpoint, "cpu", postprocess=False)
    cases = [c for c in resolve_cases(cases_path) if c.seg is not None]
    preds, refs = [], []
    for case in cases:
        prob, _ = predict_probabilities(model, case, settings)
        preds.append(prob.argmax(0).astype(np.uint8))
        refs.append(to_classes(load_seg(case), case.label_scheme))

    def blobs(pred, ref):
        labels, sizes = tumour_components(pred)
        hit = np.unique(labels[(ref > 0) & (labels > 0)])
        return len(sizes) - 1, len(sizes) - 1 - len(hit)

    detail = []
    for case, pred, ref in zip(cases, preds, refs):
        b, sp = blobs(pred, ref)
        detail.append(
            {
                "case": case.case_id,
                "ref_et_voxels": int((ref == 3).sum()),
                "pred_et_voxels": int((pred == 3).sum()),
                "blobs": b,
                "spurious_blobs": sp,
            }
        )
    rows = []
    for mc in min_components:
        for et in et_thresholds:
            dice = {"WT": [], "TC": [], "ET": []}
            n_blobs, n_spurious = [], []
            for pred, ref in zip(preds, refs):
                out, _ = postprocess(pred, mc, et)
                counts = confusion_counts(out, ref)
                for r in dice:
                    c = counts[r]
                    dice[r].append(dice_from_counts(c.tp, c.fp, c.fn, "brats"))
                b, sp = blobs(out, ref)
                n_blobs.append(b)
                n_spurious.append(sp)
            row = {"min_component": mc, "et_min_voxels": et}
            row |= {f"dice_{r}": round(float(np.mean(v)), 4) for r, v in dice.items()}
            row["dice_mean"] = round(float(np.mean([row[f"dice_{r}"] for r in dice])), 4)
            row["blobs_per_case"] = round(float(np.mean(n_blobs)), 1)
            row["spurious_blobs_per_case"] = round(float(np.mean(n_spurious)), 1)
            rows.append(row)
    best = max(rows, key=lambda r: (r["dice_mean"], -r["min_component"], -r["et_min_voxels"]))
    return {"checkpoint": str(checkpoint), "cases": detail, "rows": rows, "best": best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    parser.add_argument("--repeats", type=int, default=1, help="runs per path (median reported)")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS)
    )
    parser.add_argument("--worker", nargs=3, metavar=("PATH", "DATA", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--sweep-postprocess",
        nargs=2,
        metavar=("CKPT", "CASES"),
        help="instead of timing: Dice and spurious blobs of a trained checkpoint on labelled CASES (a folder or a "
        "list file) for every pair of --min-components x --et-thresholds",
    )
    parser.add_argument("--min-components", default="0,50,100,200,500,1000,2000")
    parser.add_argument("--et-thresholds", default="0,50,100,200,500")
    args = parser.parse_args()
    if args.sweep_postprocess:
        import torch

        torch.set_num_threads(args.threads)
        mcs = [int(v) for v in args.min_components.split(",")]
        ets = [int(v) for v in args.et_thresholds.split(",")]
        print(json.dumps(sweep_postprocess(*args.sweep_postprocess, mcs, ets)))
        return 0
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads, args.worker[2])
        return 0
    import numpy as np

    paths = [p for p in args.paths.split(",") if p]
    bad = [p for p in paths if p not in PATHS]
    if bad:
        parser.error(f"unknown path(s) {bad}; choose from {', '.join(PATHS)}")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    result: dict = {
        "case": "brats.synth.generate_case(0, 0), 240x240x155, z-score",
        "model": "smp Unet resnet34, random weights, fp32, channels_last",
        "threads": args.threads,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "image.npy"
        result["data"] = make_case(data)
        times: dict[str, list[float]] = {p: [] for p in paths}
        cpu: dict[str, list[float]] = {p: [] for p in paths}
        for _ in range(args.repeats):
            for p in paths:
                out = Path(tmp) / f"{p}.npy"
                cmd = [
                    sys.executable,
                    __file__,
                    "--threads",
                    str(args.threads),
                    "--worker",
                    p,
                    str(data),
                    str(out),
                ]
                subprocess.run(cmd, check=True, env=env)
                info = json.loads(out.with_suffix(".json").read_text())
                times[p].append(info["seconds"])
                cpu[p].append(info["cpu_seconds"])
                result.setdefault("peak_rss_mb", {})[p] = round(info["maxrss_mb"], 0)
                result.setdefault("tracemalloc_peak_mb", {})[p] = round(info["tracemalloc_peak_mb"], 0)
        result["seconds"] = {p: round(float(np.median(t)), 2) for p, t in times.items()}
        result["runs"] = {p: [round(v, 2) for v in t] for p, t in times.items()}
        result["cpu_seconds"] = {p: round(float(np.median(t)), 2) for p, t in cpu.items()}
        s = result["seconds"]
        if "lower_bound" in s:
            for key in ("seconds", "cpu_seconds"):
                lb = result[key]["lower_bound"]
                result[f"ratio_to_lower_bound_{key}"] = {p: round(v / lb, 2) for p, v in result[key].items()}
        if "monai" in s and "default" in s:
            result["monai_over_default"] = round(s["monai"] / s["default"], 2)
            ref = np.load(Path(tmp) / "monai.npy")
            mask = np.any(np.load(data) != 0, axis=0)
            agree = {}
            for p in paths:
                if p != "monai":
                    agree[p] = round(float((np.load(Path(tmp) / f"{p}.npy") == ref)[mask].mean()), 4)
            result["argmax_agreement_with_monai_in_brain"] = agree
        if {"lower_bound", "default", "overlap0", "monai"} <= set(s):
            for key in ("seconds", "cpu_seconds"):
                t = result[key]
                result[f"targets_met_{key}"] = {
                    "default_le_2.5L": t["default"] <= 2.5 * t["lower_bound"],
                    "overlap0_le_1.3L": t["overlap0"] <= 1.3 * t["lower_bound"],
                    "monai_ge_2x_default": t["monai"] >= 2 * t["default"],
                }
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
