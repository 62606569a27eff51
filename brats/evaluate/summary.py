"""Aggregating case rows: per-case means, pooled counts, the CSV/JSON files and the printed tables."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np

from brats.evaluate.cases import case_columns
from brats.evaluate.interval import bootstrap_ci
from brats.evaluate.lesionwise import METRICS as LESION_METRICS
from brats.evaluate.lesionwise import REGIONS as LESION_REGIONS
from brats.evaluate.metrics import (
    HD95_NAMES,
    OVERLAP_METRICS,
    STRUCTURE_NAMES,
    STRUCTURES,
    check_empty_rule,
    overlap_scores,
    structure_counts,
)

__all__ = [
    "AGG_METRICS",
    "summarize",
    "cases_csv",
    "json_safe",
    "report_rows",
    "lesion_rows",
    "format_summary",
]

#: Names of the training classes, the rows and columns of the pooled confusion matrix.
CLASS_NAMES: tuple[str, ...] = ("background", "NCR", "ED", "ET")

#: Metrics aggregated over cases for each structure (hd95 for the regions only), then the volumes.
AGG_METRICS: tuple[str, ...] = (*OVERLAP_METRICS, "hd95", "vol_ref", "vol_pred", "vol_ref_ml", "vol_pred_ml")


def _aggregate(values: list[float], ci: bool = False) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    ok = arr[~np.isnan(arr)]
    n = int(ok.size)
    out: dict[str, Any] = {
        "mean": float(ok.mean()) if n else None,
        "median": float(np.median(ok)) if n else None,
        "std": float(ok.std(ddof=1)) if n > 1 else None,
        "count": n,
        "n_nan": int(arr.size - n),
    }
    if ci:
        interval = bootstrap_ci(ok)
        out["ci95"] = None if interval is None else list(interval)
    return out


def summarize(
    rows: list[dict[str, Any]],
    confusions: list[np.ndarray],
    empty: str = "brats",
    lesion_variant: str | None = None,
) -> dict[str, Any]:
    """Aggregate case rows and confusion matrices (both from :func:`brats.evaluate.cases.evaluate_case`).

    Returns:
        ``{"n_cases", "empty", "per_case": {NAME: {metric: {mean, median, std, count, n_nan}}} (dice also
        ci95),
        "pooled": {NAME: {tp, fp, fn, tn, dice, iou, precision, recall, specificity, accuracy}},
        "confusion": {"classes", "voxels", "row_fraction"}}``.
        ``std`` is the sample standard deviation (ddof 1; None below 2 values); NaN values are left out of
        mean/median/std and counted in ``n_nan``. ``ci95``: the 95 % percentile bootstrap interval of the mean
        Dice ``[low, high]`` (:func:`brats.evaluate.interval.bootstrap_ci`; None below 2 values). Pooled ratios
        come from counts summed over all cases.
        ``confusion`` is the sum of the cases' matrices over the training classes :data:`CLASS_NAMES`:
        ``voxels[r][p]`` voxels of reference class ``r`` were predicted as ``p``; ``row_fraction`` divides each
        row by its total (None for a class absent from every reference), so it says where each reference class
        went, e.g. whether missed NCR was called edema or background.
        With ``lesion_variant`` (the rows hold lesion-wise columns), also ``"lesionwise": {"variant",
        REGION: {metric: {mean, median, std, count, n_nan} (+ "sum" for tp, fp, fn)}}`` for ET, TC, WT.
    """
    check_empty_rule(empty)
    per_case: dict[str, dict[str, Any]] = {}
    pooled: dict[str, dict[str, Any]] = {}
    cm = np.zeros((len(CLASS_NAMES),) * 2, np.int64)
    for case_cm in confusions:
        cm += np.asarray(case_cm, np.int64)
    totals = structure_counts(cm, STRUCTURES)
    for name in STRUCTURE_NAMES:
        metrics = [m for m in AGG_METRICS if m != "hd95" or name in HD95_NAMES]
        per_case[name] = {m: _aggregate([r[f"{name}_{m}"] for r in rows], ci=m == "dice") for m in metrics}
        total = totals[name]
        scores = overlap_scores(total, empty)
        n_all = sum(total)
        scores["accuracy"] = (total.tp + total.tn) / n_all if n_all else math.nan
        pooled[name] = {**total._asdict(), **scores}
    out = {
        "n_cases": len(rows),
        "empty": empty,
        "per_case": per_case,
        "pooled": pooled,
        "confusion": _confusion(cm),
    }
    if lesion_variant is not None:
        out["lesionwise"] = _lesion_summary(rows, lesion_variant)
    return out


def _confusion(cm: np.ndarray) -> dict[str, Any]:
    row_sums = cm.sum(axis=1)
    return {
        "classes": list(CLASS_NAMES),
        "voxels": cm.tolist(),
        "row_fraction": [
            [float(v) / float(n) for v in row] if n else None
            for row, n in zip(cm.tolist(), row_sums.tolist())
        ],
    }


def _lesion_summary(rows: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    out: dict[str, Any] = {"variant": variant}
    for region in LESION_REGIONS:
        stats: dict[str, Any] = {}
        for m in LESION_METRICS:
            values = [r[f"{region}_lesion_{m}"] for r in rows]
            stats[m] = _aggregate(values)
            if m in ("tp", "fp", "fn"):
                stats[m]["sum"] = int(sum(values))
        out[region] = stats
    return out


def _fmt_csv(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.8g}"


def cases_csv(rows: list[dict[str, Any]]) -> str:
    cols = ["case", *case_columns(lesions=bool(rows) and "ET_lesion_dice" in rows[0])]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([r["case"], *(_fmt_csv(r[c]) for c in cols[1:])])
    return buf.getvalue()


def json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def report_rows(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Table rows of a summary (from :func:`run_evaluate` or ``summary.json``), for reports.

    Returns:
        ``(mean_rows, pooled_rows)``, one dict per structure NCR, ED, ET, TC, WT: ``mean_rows`` hold ``name``,
        ``n`` (cases with a Dice value) and the per-case means ``dice``, ``iou``, ``precision``, ``recall``,
        ``specificity``, ``hd95`` (None for NCR and ED), and ``dice_ci95``, the 95 % bootstrap interval of the
        mean Dice (``[low, high]``, None below 2 cases or in a summary written before it existed);
        ``pooled_rows`` hold ``name`` and the pooled ``dice``,
        ``iou``, ``precision``, ``recall``, ``specificity``, ``accuracy``. Undefined values are None.
    """
    mean_rows, pooled_rows = [], []
    for name in STRUCTURE_NAMES:
        per, pooled = summary["per_case"][name], summary["pooled"][name]
        row: dict[str, Any] = {"name": name, "n": per["dice"]["count"]}
        row.update({m: per[m]["mean"] if m in per else None for m in (*OVERLAP_METRICS, "hd95")})
        row["dice_ci95"] = per["dice"].get("ci95")
        mean_rows.append(row)
        pooled_rows.append({"name": name, **{m: pooled[m] for m in (*OVERLAP_METRICS, "accuracy")}})
    return json_safe(mean_rows), json_safe(pooled_rows)


def lesion_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Lesion-wise table rows of a summary (from :func:`run_evaluate` or ``summary.json``), for reports.

    Returns:
        One dict per region ET, TC, WT: ``name``, ``variant`` (``official`` or ``2023``), ``n`` (cases with a
        lesion-wise Dice), the per-case means ``dice``, ``hd95`` (mm), ``precision``, ``recall``, ``f1``, and the
        lesion counts summed over cases ``tp``, ``fp``, ``fn``. Undefined values are None; ``[]`` for a summary
        without lesion-wise metrics.
    """
    lw = summary.get("lesionwise")
    if not lw:
        return []
    rows = []
    for region in LESION_REGIONS:
        st = lw[region]
        row: dict[str, Any] = {"name": region, "variant": lw["variant"], "n": st["dice"]["count"]}
        row.update({m: st[m]["mean"] for m in ("dice", "hd95", "precision", "recall", "f1")})
        row.update({m: st[m]["sum"] for m in ("tp", "fp", "fn")})
        rows.append(row)
    return json_safe(rows)


def _lesion_lines(summary: dict[str, Any]) -> list[str]:
    rows = lesion_rows(summary)
    if not rows:
        return []
    head = (
        f"{'':5}{'n':>4} | {'Dice':>6} {'HD95mm':>7} {'Prec':>6} {'Recall':>6} {'F1':>6} | "
        f"{'TP':>5} {'FP':>5} {'FN':>5}"
    )
    lines = [
        f"lesion-wise ({rows[0]['variant']} rules; per-case means, lesion counts summed over cases)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        lines.append(
            f"{r['name']:5}{r['n']:>4} | {_num(r['dice'], 6)} {_num(r['hd95'], 7, 2)} {_num(r['precision'], 6)} "
            f"{_num(r['recall'], 6)} {_num(r['f1'], 6)} | {r['tp']:>5} {r['fp']:>5} {r['fn']:>5}"
        )
    return lines


def _confusion_lines(summary: dict[str, Any]) -> list[str]:
    conf = summary.get("confusion")
    if not conf:
        return []
    names = conf["classes"]
    head = f"{'':10} {'voxels':>11} | " + " ".join(f"{n:>10}" for n in names)
    lines = [
        "pooled confusion (rows: reference class; columns: % of its voxels predicted as each class)",
        head,
    ]
    lines.append("-" * len(head))
    for name, row, frac in zip(names, conf["voxels"], conf["row_fraction"]):
        cells = " ".join(
            _num(None if frac is None else 100.0 * f, 10, 2) for f in (frac or [None] * len(row))
        )
        lines.append(f"{name:10} {sum(row):>11} | {cells}")
    return lines


def _num(value: float | None, width: int, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def _interval(ci: list[float] | None) -> str:
    return "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    """A printed table: one row per structure (NCR, ED, ET, TC, WT).

    Columns: ``n`` (cases with a Dice value), per-case mean Dice, its std and 95 % bootstrap interval (``ci95``),
    median Dice, mean IoU, precision, recall, specificity and HD95 (mm), then the pooled Dice, IoU, precision
    and recall. With
    lesion-wise metrics, a second block (:func:`lesion_rows`): one row per region ET, TC, WT. Last, the pooled
    confusion matrix: per reference class, its voxels and the percentage of them predicted as each class.
    """
    if summary.get("scheme") == "binary":  # kaggle_3m: tumour + detection tables
        from brats.evaluate.binary import format_binary

        return format_binary(summary)
    per, pooled = summary["per_case"], summary["pooled"]
    head = (
        f"{'':5}{'':>4} | {'per-case mean over cases':^70} | {'pooled counts':^27}\n"
        f"{'':5}{'n':>4} | {'Dice':>6} {'±std':>6} {'95% CI':>11} {'median':>6} {'IoU':>6} {'Prec':>6} "
        f"{'Recall':>6} {'Spec':>6} {'HD95mm':>7} | {'Dice':>6} {'IoU':>6} {'Prec':>6} {'Recall':>6}"
    )
    lines = [
        f"{summary['n_cases']} case(s), empty rule '{summary['empty']}'"
        + (
            f", {len(summary.get('missing_predictions', []))} missing scored as empty"
            if summary.get("missing_predictions")
            else ""
        ),
        head,
        "-" * len(head.splitlines()[1]),
    ]
    for name in STRUCTURE_NAMES:
        p, q = per[name], pooled[name]
        hd = p["hd95"]["mean"] if "hd95" in p else None
        lines.append(
            f"{name:5}{p['dice']['count']:>4} | {_num(p['dice']['mean'], 6)} {_num(p['dice']['std'], 6)} "
            f"{_interval(p['dice'].get('ci95')):>11} {_num(p['dice']['median'], 6)} {_num(p['iou']['mean'], 6)} "
            f"{_num(p['precision']['mean'], 6)} {_num(p['recall']['mean'], 6)} "
            f"{_num(p['specificity']['mean'], 6, 4)} {_num(hd, 7, 2)} | "
            f"{_num(q['dice'], 6)} {_num(q['iou'], 6)} {_num(q['precision'], 6)} {_num(q['recall'], 6)}"
        )
    nan_notes = [
        f"{name} {m} {v['n_nan']}" for name in STRUCTURE_NAMES for m, v in per[name].items() if v["n_nan"]
    ]
    if nan_notes:
        lines.append("left out as NaN (empty masks): " + ", ".join(nan_notes))
    lines += _lesion_lines(summary)
    lines += _confusion_lines(summary)
    if "files" in summary:
        lines.append(f"wrote {summary['files']['cases_csv']} and {summary['files']['summary_json']}")
    return "\n".join(line.rstrip() for line in "\n".join(lines).splitlines())
