"""What the component rules of post-processing remove: every predicted tumour component, true or false.

    python bench/components.py --name v16-cb --run /tmp/gx/v16-cb --select-root runs/select-0-32
    python bench/components.py --table v16-cb v16-cb-s1       # saved results; run nothing

Predicts the run's ``checkpoints/best.pt`` without post-processing (once; ``raw_predictions.py``) on its
validation cases and the two selection cohorts of ``bench/generalise.py --select N``, then lists each connected
tumour component (WT, 26-connected, as :func:`brats.predict.tumour_components`) at least the run's
``min_component_ml`` in size: its volume, its tumour core (NCR + ET) and enhancing volumes, and the fraction of
its voxels inside the reference whole tumour. A component is ``true`` when at least half of it lies in the
reference tumour, ``false`` otherwise; ``coreless`` when its core is under the run's ``core_min_ml`` (the rule
would remove it). The table counts components and their mL per cohort, kind and size, so a size limit on the
coreless rule can be judged on the selection cohorts before it is built. The test split and the stress cohort
are not read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brats.config import load_config  # noqa: E402
from brats.predict import tumour_components  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_predictions import cohort_root, load_raw, raw_label, selection_cli  # noqa: E402

COHORTS = ("val", "select", "select_stress")
#: size bins of the table, mL (a component falls in [edge_i, edge_i+1))
SIZE_EDGES = (0.0, 2.0, 5.0, 10.0, 20.0, float("inf"))
NCR, ET = 1, 3


def components(pred: np.ndarray, ref: np.ndarray, spacing, min_ml: float) -> list[dict]:
    """One row per predicted tumour component of at least ``min_ml`` mL: ``ml``, ``core_ml`` (NCR + ET),
    ``et_ml`` and ``in_ref`` (fraction of its voxels in the reference WT), rounded to 1e-4.

    Example:
        >>> p = np.zeros((6, 1, 1), np.uint8); p[0:2] = 2; p[4] = 2; p[5] = 3
        >>> r = np.zeros_like(p); r[4:6] = 1
        >>> [(c["ml"], c["core_ml"], c["in_ref"]) for c in components(p, r, (10, 10, 10), 0)]
        [(2.0, 0.0, 0.0), (2.0, 1.0, 1.0)]
    """
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    labels, sizes = tumour_components(pred)
    n = len(sizes)
    flat = labels.ravel()
    core = np.bincount(flat, weights=np.isin(pred, (NCR, ET)).ravel(), minlength=n)
    et = np.bincount(flat, weights=(pred == ET).ravel(), minlength=n)
    inside = np.bincount(flat, weights=(ref > 0).ravel(), minlength=n)
    rows = []
    for i in range(1, n):
        if sizes[i] * voxel_ml < min_ml:
            continue
        rows.append(
            {
                "ml": round(float(sizes[i]) * voxel_ml, 4),
                "core_ml": round(float(core[i]) * voxel_ml, 4),
                "et_ml": round(float(et[i]) * voxel_ml, 4),
                "in_ref": round(float(inside[i] / sizes[i]), 4),
            }
        )
    return rows


def summarise(rows: list[dict], core_min_ml: float) -> dict:
    """``{kind: {"count": [...], "ml": [...]}}`` per size bin of :data:`SIZE_EDGES`, for the kinds
    ``cored_true``, ``cored_false``, ``coreless_true`` and ``coreless_false`` (see the module docstring)."""
    bins = len(SIZE_EDGES) - 1
    out = {
        f"{a}_{b}": {"count": [0] * bins, "ml": [0.0] * bins}
        for a in ("cored", "coreless")
        for b in ("true", "false")
    }
    for r in rows:
        kind = f"{'coreless' if r['core_ml'] < core_min_ml else 'cored'}_{'true' if r['in_ref'] >= 0.5 else 'false'}"
        b = next(i for i in range(bins) if SIZE_EDGES[i] <= r["ml"] < SIZE_EDGES[i + 1])
        out[kind]["count"][b] += 1
        out[kind]["ml"][b] = round(out[kind]["ml"][b] + r["ml"], 4)
    return out


def table(records: dict[str, dict]) -> str:
    """Markdown: per saved result and cohort, the coreless components (true / false) per size bin, as
    ``count (mL)``; the cored ones' totals for scale."""
    names = [
        f"{lo:g}-{hi:g} mL" if hi != float("inf") else f">= {lo:g} mL"
        for lo, hi in zip(SIZE_EDGES, SIZE_EDGES[1:])
    ]
    lines = [
        "| result | cohort | kind | " + " | ".join(names) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for name, rec in records.items():
        for cohort, summary in rec["result"]["summary"].items():
            for kind in ("coreless_true", "coreless_false", "cored_true", "cored_false"):
                s = summary[kind]
                cells = " | ".join("0" if c == 0 else f"{c} ({ml:.1f})" for c, ml in zip(s["count"], s["ml"]))
                lines.append(f"| {name} | {cohort} | {kind.replace('_', ' ')} | {cells} |")
    return "\n".join(lines)


def measure(run: Path, select_root: Path) -> dict:
    """Every predicted component of every case of the three cohorts, and their summary by kind and size."""
    pp = load_config(run / "config.yaml").predict.postprocess
    per_case: dict = {}
    summary: dict = {}
    for cohort in COHORTS:
        root = cohort_root(run, select_root, cohort)
        ids, preds, refs, spacings = load_raw(run, root, raw_label(select_root, cohort))
        per_case[cohort] = {
            cid: {
                "ref_wt_ml": round(float((r > 0).sum()) * float(np.prod(sp)) / 1000.0, 4),
                "components": components(p, r, sp, pp.min_component_ml),
            }
            for cid, p, r, sp in zip(ids, preds, refs, spacings)
        }
        rows = [c for case in per_case[cohort].values() for c in case["components"]]
        summary[cohort] = summarise(rows, pp.core_min_ml)
    return {
        "run": str(run),
        "select_root": str(select_root),
        "min_component_ml": pp.min_component_ml,
        "core_min_ml": pp.core_min_ml,
        "size_edges_ml": [e if e != float("inf") else None for e in SIZE_EDGES],
        "summary": summary,
        "per_case": per_case,
    }


def main(argv: list[str] | None = None) -> int:
    return selection_cli(argv, __doc__, "components", measure, table)


if __name__ == "__main__":
    raise SystemExit(main())
