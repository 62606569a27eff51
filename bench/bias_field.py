"""How well a bias-field correction removes a known field: generator twins, no model.

    python bench/bias_field.py                 # 4 stress-profile + 4 train-profile cases of seed 5000
    python bench/bias_field.py --table         # Markdown table of the saved result

Each case is drawn twice by the generator (``brats.synth.simulate_case``): with its profile's bias field and with
``bias_std`` 0; every other draw, noise included, is the same. For each method and modality it measures

* ``field_error``: std over the brain of ``log(corrected / field-free)``, the field left (its scale ignored);
* ``contrast_error``: ``|c(corrected) - c(field-free)|`` on T2 and FLAIR, where ``c`` is the mean log intensity
  of the edema minus that of normal white matter (cases with at least 100 edema voxels): how far the correction
  moved the tumour's contrast (a filter that flattens the tumour scores badly here);
* ``seconds``: per modality, one thread.

Methods: ``none``; ``n4`` (``brats.bias.correct_bias``, the toolkit's: 3 levels, ~8 mm fit grid); ``n4-4mm``
(the same on a 4 mm grid, ITK's usual shrink); ``n4-4levels`` (4 fitting levels); ``gauss15`` and ``gauss20``
(a homomorphic filter: the log image's brain-masked Gaussian smoothing, sigma 15 or 20 mm, with two rounds of
outlier rejection, on a 4 mm grid). Seed 5000 is no cohort of ``bench/generalise.py`` (demo 0, stress 1000,
selection 2000 and 3000). Prints one JSON object, also ``bench/results/bias-field.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import load_now, read_result, write_result  # noqa: E402

from brats import bias  # noqa: E402
from brats.synth import simulate_case, with_settings  # noqa: E402

MODALITIES = ("t1", "t1ce", "t2", "flair")


def n4_with(
    volume: np.ndarray, mask: np.ndarray, shrink: int | None, iterations: tuple[int, ...]
) -> np.ndarray:
    """``brats.bias``'s N4 with another shrink factor or level list, applied as ``correct_bias`` does."""
    fit = mask & (volume > 0)
    out = volume.astype(np.float32, copy=True)
    out[mask] /= bias.n4_field(out, fit, shrink, iterations)[mask]
    return out


def gaussian_field(volume: np.ndarray, mask: np.ndarray, sigma_mm: float, factor: int = 4) -> np.ndarray:
    """Homomorphic correction: brain-masked Gaussian smoothing of the log image on a ``factor`` mm grid, two
    rounds of rejecting voxels more than 2 robust SDs from the smooth, then divided out."""
    log = np.zeros(volume.shape, np.float32)
    log[mask] = np.log(np.maximum(volume[mask], 1.0))
    crop = tuple(slice(0, n // factor * factor) for n in volume.shape)

    def coarse(a: np.ndarray) -> np.ndarray:
        a = a[crop]
        s = [n // factor for n in a.shape]
        return a.reshape(s[0], factor, s[1], factor, s[2], factor).mean((1, 3, 5))

    share = coarse(mask.astype(np.float32))
    good = share > 0.5
    values = np.where(good, coarse(log) / np.maximum(share, 1e-6), 0.0)
    weight = good.astype(np.float32)
    sigma = sigma_mm / factor
    for _ in range(3):
        smooth = ndimage.gaussian_filter(values * weight, sigma) / np.maximum(
            ndimage.gaussian_filter(weight, sigma), 1e-3
        )
        res = (values - smooth)[good]
        mad = 1.4826 * float(np.median(np.abs(res - np.median(res))))
        weight = (good & (np.abs(values - smooth) < 2.0 * mad)).astype(np.float32)
    smooth -= smooth[good].mean()
    full = ndimage.zoom(smooth, [n / c for n, c in zip(log[crop].shape, smooth.shape)], order=1)
    field = np.zeros(volume.shape, np.float32)
    field[crop] = full
    out = volume.astype(np.float32, copy=True)
    out[mask] /= np.exp(field[mask])
    return out


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "none": lambda v, m: v.astype(np.float32),
    "n4": lambda v, m: bias.correct_bias(v[None], "n4", m)[0],
    "n4-4mm": lambda v, m: n4_with(v, m, 4, bias.ITERATIONS),
    "n4-4levels": lambda v, m: n4_with(v, m, None, (50, 50, 50, 50)),
    "gauss15": lambda v, m: gaussian_field(v, m, 15.0),
    "gauss20": lambda v, m: gaussian_field(v, m, 20.0),
}


def measure(seed: int, profile: str, cases: int) -> dict[str, dict[str, float]]:
    """Mean field error, contrast error and seconds per method over ``cases`` twins of ``profile``."""
    flat = with_settings(profile, {"bias_std": "0,0"})
    acc: dict[str, dict[str, list[float]]] = {k: {"field": [], "contrast": [], "s": []} for k in METHODS}
    for index in range(cases):
        case = simulate_case(seed, index, profile=profile)
        twin = simulate_case(seed, index, profile=flat, with_tissues=False)
        mask = case.brain
        assert mask is not None
        edema = case.seg == 2
        wm = (case.tissues["wm"] > 0.9) & (case.seg == 0)
        for mod in MODALITIES:
            ref_log = np.log(np.maximum(twin.images[mod], 1.0))
            ref_c = ref_log[edema].mean() - ref_log[wm].mean() if edema.sum() >= 100 else None
            for name, fn in METHODS.items():
                t0 = time.perf_counter()
                out = fn(case.images[mod], mask)
                acc[name]["s"].append(time.perf_counter() - t0)
                got = np.log(np.maximum(out, 1.0))
                acc[name]["field"].append(float((got - ref_log)[mask].std()))
                if ref_c is not None and mod in ("t2", "flair"):
                    acc[name]["contrast"].append(abs(float(got[edema].mean() - got[wm].mean() - ref_c)))
        print(f"{profile} case {index + 1}/{cases} done", file=sys.stderr, flush=True)
    return {
        k: {
            "field_error": round(float(np.mean(v["field"])), 4),
            "contrast_error": round(float(np.mean(v["contrast"])), 4) if v["contrast"] else float("nan"),
            "seconds": round(float(np.mean(v["s"])), 3),
        }
        for k, v in acc.items()
    }


def table(result: dict) -> str:
    rows = [
        "| method | stress: field error | stress: edema contrast error | train: field error "
        "| train: edema contrast error | seconds a modality (stress) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    s, t = result["stress"], result["train"]
    for k in s:
        rows.append(
            f"| {k} | {s[k]['field_error']:.3f} | {s[k]['contrast_error']:.3f} | {t[k]['field_error']:.3f} "
            f"| {t[k]['contrast_error']:.3f} | {s[k]['seconds']:.2f} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--cases", type=int, default=4, help="cases per profile")
    ap.add_argument("--table", action="store_true", help="print the saved result as a Markdown table")
    args = ap.parse_args()
    if args.table:
        rec = read_result("bias-field")
        if rec is None:
            print("no saved result: run python bench/bias_field.py first", file=sys.stderr)
            return 1
        print(table(rec["result"]))
        return 0
    before = load_now()
    result = {"seed": args.seed, "cases": args.cases}
    for profile in ("stress", "train"):
        result[profile] = measure(args.seed, profile, args.cases)
    write_result("bias-field", result, before)
    print(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
