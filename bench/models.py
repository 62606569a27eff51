#!/usr/bin/env python
"""2D vs 2.5D vs 3D at the same CPU-time budget on the same synthetic cases. Prints JSON, keeps it in
``bench/results/models.json``.

Each variant is one shipped config (``demo.yaml``, ``demo25d.yaml``, ``demo3d.yaml``) with the same data
section (cohort, split), trained from scratch with **one torch thread** until its training epochs have used
``--budget`` CPU-seconds (augmentation, data loading, forward/backward; validation and checkpoints are not
counted), then its ``best.pt`` predicts the validation cases as whole volumes (default predict settings,
post-processing on). Per variant:

* ``val_dice``: mean over validation cases of the region Dice (WT, TC, ET; BraTS empty rule) of the written
  segmentations against the references;
* ``train_patches_per_cpu_s`` (and per wall second; with one thread they agree on a quiet machine), and the
  same in voxels (a 3D patch holds many 2D patches' worth of voxels);
* ``predict_s_per_case`` (wall and CPU), one thread;
* ``peak_rss_mb`` of the training process and of the prediction process (``resource.getrusage``), each run in
  its own subprocess.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python bench/models.py --budget 120
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "2d": ("demo", ["patches.size=[64,64]", "patches.stride=[32,32]", "train.steps_per_epoch=10"]),
    "2.5d": ("demo25d", ["patches.size=[64,64]", "patches.stride=[32,32]", "train.steps_per_epoch=10"]),
    "3d": ("demo3d", ["train.steps_per_epoch=5"]),
}
COMMON = ["data.train_fraction=0.6", "data.val_fraction=0.4", "train.epochs=100000", "train.max_minutes=null",
          "train.num_threads=1", "train.val_max_batches=4", "train.num_workers=0", "train.device=cpu"]  # fmt: skip


def _config(variant: str, work: Path, cases: Path):
    from brats.config import load_config, shipped_config

    name, extra = VARIANTS[variant]
    sets = [f"output_dir={work / variant}", f"data.root={cases}", *COMMON, *extra]
    return load_config(shipped_config(name), sets)


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker_train(variant: str, work: Path, cases: Path, budget: float) -> dict:
    import torch

    from brats.extract import run_extract
    from brats.train import Trainer

    torch.set_num_threads(1)
    cfg = _config(variant, work, cases)
    t0 = time.perf_counter()
    counts = run_extract(cfg)
    extract_s = time.perf_counter() - t0
    trainer = Trainer(cfg)
    used = {"cpu": 0.0, "wall": 0.0, "patches": 0}
    inner = trainer.train_epoch

    def timed(epoch: int, deadline: float | None = None) -> tuple[float, bool]:
        c0, w0 = time.process_time(), time.perf_counter()
        loss = inner(epoch, deadline)
        used["cpu"] += time.process_time() - c0
        used["wall"] += time.perf_counter() - w0
        used["patches"] += int(cfg.train.steps_per_epoch or 0) * int(cfg.train.batch_size)
        if used["cpu"] >= budget:  # stop after this epoch
            trainer.cfg.train.epochs = epoch + 1
        return loss

    trainer.train_epoch = timed  # type: ignore[method-assign]
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    voxels = int(np.prod(cfg.patches.size))
    return {
        "config": VARIANTS[variant][0],
        "model": cfg.model.arch + (f"/{cfg.model.encoder}" if "." not in cfg.model.arch else ""),
        "patch": [trainer.in_channels, *cfg.patches.size],
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "train_patches": counts["train_patches"],
        "extract_s": round(extract_s, 1),
        "epochs": summary["epoch"],
        "patches_seen": used["patches"],
        "train_cpu_s": round(used["cpu"], 1),
        "train_wall_s": round(used["wall"], 1),
        "train_patches_per_cpu_s": round(used["patches"] / used["cpu"], 2),
        "train_patches_per_wall_s": round(used["patches"] / used["wall"], 2),
        "train_kvoxels_per_cpu_s": round(used["patches"] * voxels / used["cpu"] / 1e3, 1),
        "train_peak_rss_mb": _peak_mb(),
    }


def _region_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from brats.evaluate import region_dice
    from brats.labels import to_classes

    return region_dice(to_classes(pred, "brats2021"), to_classes(ref, "brats2021"))


def worker_predict(variant: str, work: Path, cases: Path) -> dict:
    import nibabel as nib
    import torch

    from brats.data import load_seg, resolve_cases
    from brats.predict import load_predictor, predict_case

    torch.set_num_threads(1)
    run = work / variant
    val = set(json.loads((run / "splits.json").read_text())["val"])
    model, settings = load_predictor(run / "checkpoints" / "best.pt", "cpu")
    per_case, wall, cpu = {}, [], []
    for case in [c for c in resolve_cases(cases) if c.case_id in val]:
        c0, w0 = time.process_time(), time.perf_counter()
        out = predict_case(model, case, settings, run / "predictions")
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        pred = np.asarray(nib.load(out["seg"]).dataobj)
        per_case[case.case_id] = _region_dice(pred, load_seg(case))
    mean = {r: round(float(np.mean([d[r] for d in per_case.values()])), 4) for r in ("WT", "TC", "ET")}
    return {
        "val_cases": sorted(per_case),
        "val_dice": mean,
        "val_dice_mean": round(float(np.mean(list(mean.values()))), 4),
        "val_dice_per_case": per_case,
        "predict_s_per_case_wall": round(float(np.median(wall)), 2),
        "predict_s_per_case_cpu": round(float(np.median(cpu)), 2),
        "predict_settings": {"overlap": settings.overlap, "blend": settings.blend, "tta": settings.tta},
        "predict_peak_rss_mb": _peak_mb(),
    }


def _subprocess(args: list[str]) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bench/models.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def _write(payload: dict) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_io import write_result

    return Path(write_result("models", payload))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/bench_models"))
    p.add_argument("--cases", type=Path, default=None, help="cohort (default: synthesise one under --work)")
    p.add_argument("--n-cases", type=int, default=10)
    p.add_argument("--shape", type=int, nargs=3, default=[96, 96, 64])
    p.add_argument("--budget", type=float, default=120.0, help="training CPU-seconds per variant")
    p.add_argument("--variants", default="2d,2.5d,3d")
    p.add_argument("--worker", choices=["train", "predict"], help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    cases = args.cases or args.work / "cases"
    if args.worker:
        if args.worker == "train":
            out = worker_train(args.variant, args.work, cases, args.budget)
        else:
            out = worker_predict(args.variant, args.work, cases)
        print(json.dumps(out))
        return
    if not cases.is_dir():
        from brats.synth import generate_cohort

        generate_cohort(cases, n_cases=args.n_cases, seed=0, shape=tuple(args.shape))
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict[str, dict] = {}
    common = ["--work", str(args.work), "--cases", str(cases), "--budget", str(args.budget)]
    for v in args.variants.split(","):
        results[v] = _subprocess([*common, "--worker", "train", "--variant", v])
        results[v].update(_subprocess([*common, "--worker", "predict", "--variant", v]))
        print(json.dumps({v: results[v]}), file=sys.stderr)
    payload = {
        "bench": "models",
        "date": started.isoformat(timespec="seconds"),
        "machine": {**_machine(), "torch_threads": 1},
        "cases": str(cases),
        "budget_train_cpu_s": args.budget,
        "results": results,
        "winner_on_val_dice_mean": max(results, key=lambda v: results[v]["val_dice_mean"]),
    }
    path = _write(payload)
    print(json.dumps({**payload, "written": str(path)}))


if __name__ == "__main__":
    main()
