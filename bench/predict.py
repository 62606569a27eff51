#!/usr/bin/env python
"""Prediction speed against plain MONAI, NIfTI I/O included; prints one JSON object (last line).

Cases: ``--cases`` (default 3) synthetic 240x240x155 cases written by :func:`brats.synth.generate_cohort`
(``.nii.gz``, BraTS 2021 naming). Model: a brats checkpoint, by default a U-Net / ResNet-34 with random weights
(seed 0, per-window percentile rescale on, as the shipped configs train it) or ``--checkpoint`` (a trained
one: label agreement means more there). Every path runs in a fresh process (its own peak RSS, from
``resource.getrusage``), with ``--threads`` torch threads (default 2), one after the other, and is timed from
"read the checkpoint" to "every segmentation written":

* ``monai``: plain MONAI. For each case: nibabel loads the 4 modalities, the checkpoint's normalisation
  (and its asymmetry channels, :func:`brats.asymmetry.add_asymmetry`, when it has them; 2D models only),
  ``sliding_window_inference`` over every axial slice (whole 240x240 slices batched), 128x128 windows,
  overlap 0.5, Gaussian blending, 16 windows per pass; the per-window function is the toolkit's (the
  training rescale of each window, then the model, softmax), float32; argmax, source labels, nibabel writes.
* ``reference``: ``brats predict --windows patch --precision fp32`` (overlap 0.5, Gaussian, brain boxes,
  empty slices skipped): the toolkit's own float32 output that the others are checked against.
* ``patch_bf16``: the same with ``--precision bf16`` (only where the CPU has bf16 instructions).
* ``box_fp32``: ``brats predict --precision fp32`` (box windows: one window per slice's brain box).
* ``default``: ``brats predict`` defaults (box windows, ``--precision auto``). The precision probe runs once
  per machine and model and is cached; its one-off cost is reported as ``probe_seconds`` and excluded.

The toolkit paths post-process as ``brats predict`` does (the checkpoint's thresholds); ``monai`` does not.
``agreement_with_reference`` is the fraction of brain voxels (any modality non-zero) whose label equals the
``reference`` output, over all cases. ``speedup_vs_monai`` = monai seconds / path seconds.

Usage: ``python bench/predict.py [--threads 2] [--cases 3] [--checkpoint CKPT] [--paths a,b]``; raw results go
to ``bench/results/predict.json`` (:func:`results_io.write_result`).

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PATHS = ("monai", "reference", "patch_bf16", "box_fp32", "default")
TOOLKIT = {
    "reference": {"windows": "patch", "precision": "fp32"},
    "patch_bf16": {"windows": "patch", "precision": "bf16"},
    "box_fp32": {"windows": "box", "precision": "fp32"},
    "default": {},
}
PATCH = (128, 128)
BATCH = 16


def make_checkpoint(path: Path, encoder: str = "resnet34") -> Path:
    """A random-weight U-Net checkpoint (seed 0) in the training format, trained-like config otherwise."""
    import torch

    from brats.checkpoint import new_checkpoint, write_checkpoint
    from brats.config import config_from_dict
    from brats.networks import build_model

    cfg = config_from_dict({"model": {"encoder": encoder}})
    torch.manual_seed(0)
    model = build_model(cfg.model, in_channels=4, classes=4)
    return write_checkpoint(new_checkpoint(model.state_dict(), cfg, classes=4), path)


def plain_monai(checkpoint: str, cases_dir: str, out_dir: str) -> None:
    """The plain MONAI path (see the module doc) over every case under ``cases_dir``."""
    import nibabel as nib
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    from brats.asymmetry import add_asymmetry
    from brats.data import discover_cases
    from brats.labels import to_source
    from brats.networks import model_from_checkpoint
    from brats.predict.predictor import settings_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint, "cpu")
    model = model.to(memory_format=torch.channels_last)
    settings = settings_from_checkpoint(ckpt)
    if settings.normalization.downsample > 1 or ckpt.dim != 2 or ckpt.config.patches.context_slices:
        sys.exit(f"{checkpoint}: the monai path handles 2D models on the full-resolution grid only")

    def predictor(x: torch.Tensor) -> torch.Tensor:
        if settings.window_fn is not None:
            x = settings.window_fn(x)
        return torch.softmax(model(x.contiguous(memory_format=torch.channels_last)), 1)

    for case in discover_cases(cases_dir):
        imgs = [nib.load(str(case.images[m])) for m in settings.modalities]
        image = np.stack([img.get_fdata(dtype=np.float32) for img in imgs])
        image = settings.normalization.apply(image)
        norm = settings.normalization
        if norm.asymmetry:  # the checkpoint's extra input channels, by the toolkit's published function
            image = add_asymmetry(image, imgs[0].affine).astype(norm.dtype).astype(np.float32)
        with torch.inference_mode():
            slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))  # (Z, C, X, Y)
            prob = sliding_window_inference(slices, PATCH, BATCH, predictor, overlap=0.5, mode="gaussian")
        labels = to_source(prob.argmax(1).numpy().astype(np.uint8).transpose(1, 2, 0), case.label_scheme)
        out = nib.Nifti1Image(labels, imgs[0].affine, imgs[0].header)
        out.set_data_dtype(np.uint8)
        nib.save(out, str(Path(out_dir) / f"{case.case_id}.nii.gz"))


def worker(path: str, checkpoint: str, cases_dir: str, out_dir: str, threads: int) -> dict:
    """Run one path in this (fresh) process; return its seconds, CPU seconds and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    import monai.inferers  # noqa: F401 - imported before the clock, in every path

    probe = 0.0
    if path == "default":  # the once-per-machine probe, cached in BRATS_CACHE_DIR, off the clock
        from brats.predict.predictor import load_predictor

        t0 = time.perf_counter()
        load_predictor(checkpoint, "cpu")
        probe = time.perf_counter() - t0
    from brats.networks import model_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint, "cpu")
    x = torch.zeros(2, ckpt.in_channels, *PATCH).contiguous(memory_format=torch.channels_last)
    bf16 = TOOLKIT.get(path, {}).get("precision") == "bf16"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.to(memory_format=torch.channels_last)(x)  # warm-up: oneDNN builds its kernels on the first pass
    t0, c0 = time.perf_counter(), time.process_time()
    if path == "monai":
        plain_monai(checkpoint, cases_dir, out_dir)
    else:
        from brats.predict import run_predict

        run_predict(checkpoint, cases_dir, out_dir, device="cpu", **TOOLKIT[path])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": rss, "probe_seconds": probe}


def agreement(cases_dir: Path, out: Path, ref: Path) -> float:
    """Fraction of brain voxels (any modality non-zero), over all cases, where ``out`` labels == ``ref``."""
    import nibabel as nib
    import numpy as np

    from brats.data import discover_cases

    same = total = 0
    for case in discover_cases(cases_dir):
        brain = np.zeros(nib.load(str(case.images["t1"])).shape, bool)
        for f in case.images.values():
            brain |= np.asarray(nib.load(str(f)).dataobj) != 0
        a = np.asarray(nib.load(str(out / f"{case.case_id}.nii.gz")).dataobj)
        b = np.asarray(nib.load(str(ref / f"{case.case_id}.nii.gz")).dataobj)
        same += int((a == b)[brain].sum())
        total += int(brain.sum())
    return same / total


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


def run_paths(args: argparse.Namespace, paths: list[str], tmp: Path) -> dict:
    """Run every path in a fresh process, then compare their labels with ``reference``."""
    from brats.precision import cpu_has_bf16
    from brats.synth import generate_cohort

    cases = tmp / "cases"
    generate_cohort(cases, n_cases=args.cases, seed=0, workers=1)
    ckpt = Path(args.checkpoint) if args.checkpoint else make_checkpoint(tmp / "model.pt", args.encoder)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), BRATS_CACHE_DIR=str(tmp / "cache"))
    result: dict = {"runs": {}}
    for p in paths:
        if p == "patch_bf16" and not cpu_has_bf16():
            continue
        out = tmp / p
        out.mkdir()
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--worker", p, str(ckpt), str(cases)]
        info = subprocess.run(cmd + [str(out)], check=True, env=env, stdout=subprocess.PIPE, text=True)
        result["runs"][p] = json.loads(info.stdout.strip().splitlines()[-1])
    runs = result["runs"]
    if "monai" in runs:
        result["speedup_vs_monai"] = {
            p: round(runs["monai"]["seconds"] / r["seconds"], 2) for p, r in runs.items()
        }
        result["speedup_vs_monai_cpu"] = {
            p: round(runs["monai"]["cpu_seconds"] / r["cpu_seconds"], 2) for p, r in runs.items()
        }
    if "reference" in runs:
        result["agreement_with_reference"] = {
            p: round(agreement(cases, tmp / p, tmp / "reference"), 4) for p in runs
        }
    probe = (
        json.loads((tmp / "cache" / "precision.json").read_text())
        if (tmp / "cache" / "precision.json").is_file()
        else {}
    )
    result["precision_probe"] = list(probe.values())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", type=int, default=3, help="synthetic full-size cases (default 3)")
    parser.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: random weights)")
    parser.add_argument("--encoder", default="resnet34", help="encoder of the random-weight U-Net")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS)
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/<name>.json")
    parser.add_argument("--name", default="predict", help="result name: bench/results/<name>.json")
    parser.add_argument("--worker", nargs=4, metavar=("PATH", "CKPT", "CASES", "OUT"), help=argparse.SUPPRESS)
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
        print(json.dumps(worker(*args.worker, args.threads)))
        return 0
    paths = [p for p in args.paths.split(",") if p]
    bad = [p for p in paths if p not in PATHS]
    if bad:
        parser.error(f"unknown path(s) {bad}; choose from {', '.join(PATHS)}")
    from results_io import load_now, write_result

    before = load_now()
    payload: dict = {
        "cases": f"{args.cases} x brats.synth.generate_cohort(seed 0), 240x240x155 .nii.gz, I/O included",
        "model": args.checkpoint or f"smp Unet {args.encoder}, random weights (seed 0), rescale on",
        "threads": args.threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        payload |= run_paths(args, paths, Path(tmp))
    payload["seconds_per_case"] = {p: round(r["seconds"] / args.cases, 2) for p, r in payload["runs"].items()}
    if not args.no_save:
        write_result(args.name, payload, load_before=before)
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
