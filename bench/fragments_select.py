"""The fragment rule (``predict.postprocess.fragment_ml``) scored on the selection cohorts: region Dice and the
official lesion-wise F1 of WT, TC and ET.

    python bench/fragments_select.py --name v31-asymre --run /tmp/gx/v31-asymre --select-root runs/select-0-32
    python bench/fragments_select.py --table v31-asymre v31-asymre-s1 v31-asymre-s2   # saved; run nothing

A 2D model leaves specks of core and enhancing tumour in its edema. Region Dice hardly sees them; the lesion-wise
metrics BraTS ranks by count each 26-connected piece as a lesion, so every speck is a false positive. This bench
reads the predictions ``bench/generalise.py --select N`` wrote for a run (``RUN/bench_val``, ``RUN/bench_select``,
``RUN/bench_select_stress``: already post-processed with the run's thresholds; the fragment rule runs after the
other rules, so applying it to them is the same as applying the whole chain to the raw prediction), applies
:func:`brats.predict.remove_fragments` for each ``fragment_ml`` of :data:`GRID_FRAGMENT_ML`, and scores every case:
the region objective of ``tune-postprocess`` ((WT + TC + ET Dice) / 3, BraTS empty rule) and the lesion detection
counts of :func:`brats.evaluate.lesion_metrics` (official rules), pooled over the cohort into F1 per region. The
test split and the stress cohort are not read. ``--table`` prints, per threshold, the mean over the saved results
(several trained models) of the selection cohorts' region objective and lesion-wise F1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brats.data import discover_cases, load_seg  # noqa: E402
from brats.data.nifti import load_geometry, load_label_file  # noqa: E402
from brats.evaluate.lesionwise import lesion_metrics  # noqa: E402
from brats.evaluate.metrics import (
    bbox,  # noqa: E402
    region_dice,  # noqa: E402
)
from brats.labels import get_scheme, to_classes  # noqa: E402
from brats.predict import ml_to_voxels, remove_fragments  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_predictions import cohort_root, selection_cli  # noqa: E402

GRID_FRAGMENT_ML = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
COHORTS = ("val", "select", "select_stress")
REGIONS = ("WT", "TC", "ET")


def load_cohort(run: Path, select_root: Path, cohort: str) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """``(prediction, reference, spacing)`` per case of a cohort (training classes), cropped to the box around the
    predicted and reference tumour (nothing outside it can change or score)."""
    scheme = get_scheme("brats2021")
    out = []
    for case in discover_cases(cohort_root(run, select_root, cohort)):
        path = run / f"bench_{cohort}" / "predictions" / f"{case.case_id}.nii.gz"
        pred = to_classes(load_label_file(path, scheme, True), scheme, where=str(path))
        ref = to_classes(load_seg(case), case.label_scheme, where=str(case.seg))
        fg = (pred > 0) | (ref > 0)
        box = bbox(fg) if fg.any() else tuple(slice(0, 1) for _ in pred.shape)
        out.append((pred[box], ref[box], load_geometry(path).spacing))
    return out


def score(cases: list[tuple[np.ndarray, np.ndarray, tuple]], fragment_ml: float) -> dict:
    """Mean region Dice and objective over the cases, and pooled lesion TP / FP / FN and F1 per region."""
    dice: dict[str, list[float]] = {r: [] for r in REGIONS}
    counts = {f"{r}_{k}": 0 for r in REGIONS for k in ("tp", "fp", "fn")}
    for pred, ref, spacing in cases:
        out = remove_fragments(pred, ml_to_voxels(fragment_ml, spacing))[0]
        for r, d in region_dice(out, ref).items():
            dice[r].append(d)
        lesions = lesion_metrics(out, ref, spacing)
        for key in counts:
            region, kind = key.split("_")
            counts[key] += int(lesions[f"{region}_lesion_{kind}"])
    row: dict = {f"dice_{r}": round(float(np.mean(v)), 4) for r, v in dice.items()}
    row["objective"] = round(float(np.mean([np.mean(v) for v in dice.values()])), 4)
    row.update(counts)
    for r in REGIONS:
        tp, fp, fn = (counts[f"{r}_{k}"] for k in ("tp", "fp", "fn"))
        row[f"{r}_f1"] = round(tp / (tp + (fp + fn) / 2), 4) if tp + fp + fn else float("nan")
    return row


def measure(run: Path, select_root: Path) -> dict:
    """Every threshold of the grid on the three cohorts of one run."""
    rows = {str(ml): {} for ml in GRID_FRAGMENT_ML}
    for cohort in COHORTS:
        cases = load_cohort(run, select_root, cohort)
        for ml in GRID_FRAGMENT_ML:
            rows[str(ml)][cohort] = score(cases, ml)
            print(f"{cohort} fragment_ml {ml:g}: {rows[str(ml)][cohort]}", file=sys.stderr, flush=True)
    return {"run": str(run), "select_root": str(select_root), "grid": list(GRID_FRAGMENT_ML), "rows": rows}


def _means(results: list[dict], ml: str) -> dict[tuple[str, str], float]:
    """``{(cohort, key): mean over the results}`` of one threshold's row."""
    keys = ("objective", "TC_f1", "ET_f1", "WT_f1")
    return {
        (co, k): float(np.mean([res["rows"][ml][co][k] for res in results])) for co in COHORTS for k in keys
    }


def table(records: dict[str, dict]) -> str:
    """Markdown: per threshold, the mean over the saved results of the ``select`` and ``select_stress`` region
    objectives, their mean (the selection mean), lesion-wise TC / ET / WT F1 per cohort, and the lesion objective
    (the mean over both cohorts of (TC F1 + ET F1) / 2); then the ``val`` columns, printed only."""
    results = [rec["result"] for rec in records.values()]
    lines = [
        f"({len(results)} model(s): {', '.join(records)})",
        "| fragment_ml | select / select_stress objective | selection mean | select TC / ET / WT F1 | "
        "select_stress TC / ET / WT F1 | lesion objective | val objective, TC / ET F1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for ml in results[0]["rows"]:
        c = _means(results, ml)
        sel = ("select", "select_stress")
        lesion = np.mean([(c[(co, "TC_f1")] + c[(co, "ET_f1")]) / 2 for co in sel])
        f1 = [" / ".join(f"{c[(co, k)]:.3f}" for k in ("TC_f1", "ET_f1", "WT_f1")) for co in sel]
        lines.append(
            f"| {float(ml):g} | {c[('select', 'objective')]:.4f} / {c[('select_stress', 'objective')]:.4f} | "
            f"{np.mean([c[(co, 'objective')] for co in sel]):.4f} | {f1[0]} | {f1[1]} | {lesion:.4f} | "
            f"{c[('val', 'objective')]:.4f}, {c[('val', 'TC_f1')]:.3f} / {c[('val', 'ET_f1')]:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return selection_cli(argv, __doc__, "fragments-select", measure, table)


if __name__ == "__main__":
    raise SystemExit(main())
