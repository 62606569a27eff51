"""Benchmark and figure for the synthetic cohort generator.

    python bench/synth.py                       # seconds per full-size case, 1 and 2 workers (JSON)
    python bench/synth.py --montage docs/images/synth_montage.png   # the figure of docs/synthetic.md

Timing: generating and writing ``--cases`` 240x240x155 cases with ``brats.synth.generate_cohort`` into a temporary
folder, once per worker count (1 and 2), **each in a fresh Python process**, so every run starts cold: loading the
MNI template (cached per process) is counted in every run, as a user running ``brats synth`` sees it. (An earlier
version timed the 2-worker run in the process that had just loaded the template for the 1-worker run; its forked
workers started warm, which flattered 2 workers.) Writes ``bench/results/synth.json`` (:mod:`results_io`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

#: The environment a user's ``brats synth`` runs in: the timed child processes get it, not this process's
#: OMP_NUM_THREADS=1 (OpenBLAS reads it too, and pinning BLAS to one thread hid the cost of two workers each
#: running two BLAS threads on two cores before the generator pinned one itself).
USER_ENV = dict(os.environ)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from results_io import load_now, write_result  # noqa: E402

from brats.synth import simulate_case  # noqa: E402

_ONE = """
import sys, tempfile, time
sys.path.insert(0, {repo!r})
t0 = time.perf_counter()
from brats.synth import generate_cohort
t_import = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    generate_cohort(tmp, n_cases={n}, seed={seed}, workers={w}, progress=False)
    print(time.perf_counter() - t0, t_import)
"""


def time_cold(n_cases: int, seed: int, workers: int) -> tuple[float, float]:
    """``(seconds of generate_cohort, seconds of importing brats.synth)`` in a fresh process (cold template)."""
    code = _ONE.format(repo=str(HERE.parent), n=n_cases, seed=seed, w=workers)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=USER_ENV
    )
    seconds, t_import = (float(v) for v in proc.stdout.split()[-2:])
    return seconds, t_import


def bench(n_cases: int, seed: int, workers: list[int]) -> dict:
    out: dict = {
        "what": "brats.synth.generate_cohort, 240x240x155, write included; each worker count in a fresh "
        "process (cold: template loading counted in every run)",
        "cases": n_cases,
        "results": [],
    }
    for w in workers:
        seconds, t_import = time_cold(n_cases, seed, w)
        out["results"].append(
            {
                "workers": w,
                "seconds": round(seconds, 2),
                "seconds_per_case": round(seconds / n_cases, 2),
                "import_seconds": round(t_import, 2),
            }
        )
    return out


def montage(path: Path, seed: int, index: int | None, shape=None) -> dict:
    """Axial slice through the largest tumour area: T1, T1ce, T2, FLAIR and the seg overlaid on FLAIR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    indices = [index] if index is not None else range(50)
    for i in indices:
        case = simulate_case(seed, i, shape)
        cm3 = np.prod(np.abs(np.diag(case.affine)[:3])) / 1000.0
        ncr, ed, et = ((case.seg == lab).sum() * cm3 for lab in (1, 2, 4))
        if index is not None or (ncr >= 8 and et >= 4 and ed >= 20):
            break
    seg = case.seg
    z = int(np.argmax((seg > 0).sum(axis=(0, 1))))
    names = [("t1", "T1"), ("t1ce", "T1ce"), ("t2", "T2"), ("flair", "FLAIR")]
    fig, axes = plt.subplots(1, 5, figsize=(12.5, 3.0), dpi=80)

    def show(ax, img):
        # Radiological display: patient's right on the left, anterior up (voxel axes: X to the left, Y to posterior, so the transposed slice is already in that view).
        ax.imshow(img.T, cmap="gray", interpolation="nearest")
        ax.set_axis_off()

    for ax, (key, title) in zip(axes, names):
        sl = case.images[key][:, :, z]
        show(ax, sl / max(float(np.percentile(sl[sl > 0], 99.5)), 1.0))
        ax.set_title(title)
    flair = case.images["flair"][:, :, z]
    show(axes[4], flair / max(float(np.percentile(flair[flair > 0], 99.5)), 1.0))
    lab = np.where(seg[:, :, z] == 4, 3, seg[:, :, z]).astype(float)
    lab[lab == 0] = np.nan
    cmap = ListedColormap(["#ff3030", "#30d030", "#ffd700"])
    axes[4].imshow(lab.T, cmap=cmap, vmin=1, vmax=3, alpha=0.55, interpolation="nearest")
    axes[4].set_title("seg: NCR red, ED green, ET yellow", fontsize=9)
    fig.suptitle(f"{case.case_id} (seed {seed}), axial slice z={z}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return {"montage": str(path), "case": case.case_id, "slice": z, "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=4, help="cases per timing (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)"
    )
    p.add_argument("--montage", type=Path, help="write the montage PNG here instead of timing")
    p.add_argument(
        "--index",
        type=int,
        help="case shown by --montage (default: the first with >= 8 cm3 NCR, 4 cm3 ET, 20 cm3 edema)",
    )
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="grid of the montage case")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/synth.json")
    args = p.parse_args(argv)
    if args.montage:
        result = montage(args.montage, args.seed, args.index, tuple(args.shape) if args.shape else None)
    else:
        before = load_now()
        result = bench(args.cases, args.seed, args.workers)
        if not args.no_save:
            write_result("synth", result, before)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
