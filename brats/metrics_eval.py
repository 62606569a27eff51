"""Cohort evaluation: match predictions to reference cases, score each case, aggregate, write CSV/JSON.

``brats evaluate --pred DIR --ref ROOT`` calls :func:`run_evaluate` and prints :func:`format_summary`.
Definitions of every number: docs/metrics.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brats import __version__
from brats.io import AFFINE_TOL, Case, atomic_write_text, discover_cases, load_geometry, load_seg
from brats.labels import to_classes
from brats.metrics_core import (
    BRATS_HD95_MAX,
    HD95_NAMES,
    OVERLAP_METRICS,
    STRUCTURE_NAMES,
    STRUCTURES,
    Counts,
    MetricsError,
    bbox,
    check_empty_rule,
    confusion_matrix,
    hd95,
    overlap_scores,
    structure_counts,
)

log = logging.getLogger(__name__)

__all__ = [
    "MISSING_RULES",
    "find_prediction",
    "load_prediction",
    "summarize",
    "run_evaluate",
    "format_summary",
    "report_rows",
]

MISSING_RULES: tuple[str, ...] = ("error", "zero")
#: File names tried for case ``ID`` in the prediction folder, in this order.
PRED_PATTERNS: tuple[str, ...] = ("{}.nii.gz", "{}.nii", "{}_seg.nii.gz", "{}_seg.nii")
#: Metrics aggregated over cases for each structure (hd95 for the regions only), then the volumes.
AGG_METRICS: tuple[str, ...] = (*OVERLAP_METRICS, "hd95", "vol_ref", "vol_pred", "vol_ref_ml", "vol_pred_ml")


# ----------------------------------------------------------------------------------------------------------------
# One case
# ----------------------------------------------------------------------------------------------------------------


def case_columns(ml: bool = True) -> list[str]:
    """The metric columns of a case row (``cases.csv`` after ``case``): ``<NAME>_<metric>``.

    Per structure NCR, ED, ET, TC, WT: dice, iou, precision, recall, specificity, hd95 (ET, TC, WT only),
    vol_ref, vol_pred (voxels) and, with ``ml``, vol_ref_ml, vol_pred_ml (millilitres).
    """
    cols = []
    for name in STRUCTURE_NAMES:
        cols += [f"{name}_{m}" for m in OVERLAP_METRICS]
        if name in HD95_NAMES:
            cols.append(f"{name}_hd95")
        cols += [f"{name}_vol_ref", f"{name}_vol_pred"]
        if ml:
            cols += [f"{name}_vol_ref_ml", f"{name}_vol_pred_ml"]
    return cols


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    empty: str = "brats",
) -> tuple[dict[str, float], dict[str, Counts]]:
    """Score one case.

    Args:
        pred, ref: ``(X, Y, Z)`` training-class maps (0 background, 1 NCR, 2 ED, 3 ET), same shape.
        spacing: voxel size in mm (from the NIfTI header), used by HD95 and the ``_ml`` volumes.
        empty: empty rule, ``brats`` or ``nan``.

    Returns:
        ``(row, counts)``: ``row`` maps every name of :func:`case_columns` to a number (volumes in voxels are
        ints); ``counts`` maps NCR, ED, ET, TC, WT to their :class:`Counts` (for pooling).
    """
    check_empty_rule(empty)
    pred, ref = np.asarray(pred), np.asarray(ref)
    cm = confusion_matrix(pred, ref, num_classes=4)
    counts = structure_counts(cm, STRUCTURES)
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    # every region lies inside the union of the tumour labels: crop once for all surface distances
    fg = (pred > 0) | (ref > 0)
    box = bbox(fg) if fg.any() else tuple(slice(0, 0) for _ in pred.shape)
    pred_c, ref_c = pred[box], ref[box]
    row: dict[str, float] = {}
    for name, classes in STRUCTURES.items():
        c = counts[name]
        for metric, value in overlap_scores(c, empty).items():
            row[f"{name}_{metric}"] = value
        if name in HD95_NAMES:
            row[f"{name}_hd95"] = hd95(np.isin(pred_c, classes), np.isin(ref_c, classes), spacing, empty)
        row[f"{name}_vol_ref"] = c.tp + c.fn
        row[f"{name}_vol_pred"] = c.tp + c.fp
        row[f"{name}_vol_ref_ml"] = (c.tp + c.fn) * voxel_ml
        row[f"{name}_vol_pred_ml"] = (c.tp + c.fp) * voxel_ml
    return {k: row[k] for k in case_columns()}, counts


def find_prediction(pred_dir: Path, case_id: str) -> Path | None:
    """The prediction file of ``case_id`` in ``pred_dir`` (``<case_id>.nii.gz`` first), or None."""
    for pattern in PRED_PATTERNS:
        path = pred_dir / pattern.format(case_id)
        if path.is_file():
            return path
    return None


def load_prediction(path: Path, case: Case) -> np.ndarray:
    """Read a prediction in the reference case's label convention and return training classes (uint8).

    Raises:
        MetricsError: the prediction's grid (shape or affine) differs from the reference segmentation's, or
            it holds non-integer values.
        brats.labels.LabelError: a value outside the case's label scheme (e.g. 4 in a BraTS 2023 case).
    """
    ref_geom = load_geometry(case.seg)  # type: ignore[arg-type]
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel and gzip raise many types
        raise MetricsError(
            f"case {case.case_id}: cannot read prediction {path} ({type(exc).__name__}: {exc})"
        ) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if tuple(data.shape) != tuple(ref_geom.shape):
        raise MetricsError(
            f"case {case.case_id}: prediction {path.name} has shape {tuple(data.shape)} but the reference "
            f"{case.seg.name} has {ref_geom.shape}; predictions must be on the reference grid"  # type: ignore[union-attr]
        )
    if not np.allclose(img.affine, ref_geom.affine, atol=AFFINE_TOL, rtol=0):
        diff = float(np.abs(img.affine - ref_geom.affine).max())
        raise MetricsError(
            f"case {case.case_id}: prediction {path.name} affine differs from the reference "
            f"{case.seg.name} by up to {diff:.4g} (tolerance {AFFINE_TOL}); predictions must be on the "  # type: ignore[union-attr]
            f"reference grid"
        )
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.mod(data, 1) == 0):
            raise MetricsError(f"case {case.case_id}: prediction {path} holds non-integer values")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise MetricsError(f"case {case.case_id}: prediction {path} holds values outside 0..255")
    return to_classes(data.astype(np.uint8), case.label_scheme, where=f"prediction {path}")


def _aggregate(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    ok = arr[~np.isnan(arr)]
    n = int(ok.size)
    return {
        "mean": float(ok.mean()) if n else None,
        "median": float(np.median(ok)) if n else None,
        "std": float(ok.std(ddof=1)) if n > 1 else None,
        "count": n,
        "n_nan": int(arr.size - n),
    }


def summarize(
    rows: list[dict[str, Any]], counts: list[dict[str, Counts]], empty: str = "brats"
) -> dict[str, Any]:
    """Aggregate case rows (from :func:`brats.metrics_core.evaluate_case`).

    Returns:
        ``{"n_cases", "empty", "per_case": {NAME: {metric: {mean, median, std, count, n_nan}}},
        "pooled": {NAME: {tp, fp, fn, tn, dice, iou, precision, recall, specificity, accuracy}}}``.
        ``std`` is the sample standard deviation (ddof 1; None below 2 values); NaN values are left out of
        mean/median/std and counted in ``n_nan``. Pooled ratios come from counts summed over all cases.
    """
    check_empty_rule(empty)
    per_case: dict[str, dict[str, Any]] = {}
    pooled: dict[str, dict[str, Any]] = {}
    for name in STRUCTURE_NAMES:
        metrics = [m for m in AGG_METRICS if m != "hd95" or name in HD95_NAMES]
        per_case[name] = {m: _aggregate([r[f"{name}_{m}"] for r in rows]) for m in metrics}
        total = Counts(*(int(sum(c[name][i] for c in counts)) for i in range(4)))
        scores = overlap_scores(total, empty)
        n_all = sum(total)
        scores["accuracy"] = (total.tp + total.tn) / n_all if n_all else math.nan
        pooled[name] = {**total._asdict(), **scores}
    return {"n_cases": len(rows), "empty": empty, "per_case": per_case, "pooled": pooled}


def _fmt_csv(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.8g}"


def _cases_csv(rows: list[dict[str, Any]]) -> str:
    cols = ["case", *case_columns()]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([r["case"], *(_fmt_csv(r[c]) for c in cols[1:])])
    return buf.getvalue()


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def run_evaluate(
    pred_dir: str | Path,
    ref_root: str | Path,
    out_dir: str | Path | None = None,
    empty: str = "brats",
    missing: str = "error",
    progress: bool = True,
) -> dict[str, Any]:
    """Score the predictions in ``pred_dir`` against the reference cases under ``ref_root``.

    Args:
        pred_dir: folder of ``<case_id>.nii.gz`` predictions (also ``.nii``, ``<case_id>_seg.nii.gz``), in
            the same label convention as the reference case (ET = 4 for 2020/2021 naming, 3 for 2023).
        ref_root: folder of reference cases in any BraTS naming (see :func:`brats.io.discover_cases`);
            cases without a segmentation are skipped with a warning.
        out_dir: where ``cases.csv`` and ``summary.json`` go (default ``pred_dir``), written atomically.
        empty: empty rule, ``brats`` or ``nan`` (docs/metrics.md).
        missing: a reference case without prediction: ``error`` (raise, listing them) or ``zero`` (scored as
            an empty prediction).
        progress: show a progress bar.

    Returns:
        The summary (see :func:`summarize`) plus ``pred_dir``, ``ref_root``, ``missing``, ``cases``,
        ``missing_predictions``, ``unmatched_predictions``, ``no_reference``, ``hd95_max_mm`` and ``files``.

    Raises:
        MetricsError: bad option, missing predictions (with ``missing="error"``), a prediction on another grid
            (the message names the case), unreadable files.
    """
    check_empty_rule(empty)
    if missing not in MISSING_RULES:
        raise MetricsError(f"unknown missing rule {missing!r}; expected one of {', '.join(MISSING_RULES)}")
    pred_dir, ref_root = Path(pred_dir), Path(ref_root)
    if not pred_dir.is_dir():
        raise MetricsError(f"{pred_dir}: prediction folder not found")
    out = Path(out_dir) if out_dir is not None else pred_dir
    all_cases = discover_cases(ref_root)
    no_ref = [c.case_id for c in all_cases if c.seg is None]
    cases = [c for c in all_cases if c.seg is not None]
    if no_ref:
        log.warning(
            "%d reference case(s) without segmentation skipped: %s", len(no_ref), ", ".join(no_ref[:10])
        )
    if not cases:
        raise MetricsError(
            f"{ref_root}: no reference case has a segmentation file (*_seg.nii.gz / *-seg.nii.gz)"
        )
    preds = {c.case_id: find_prediction(pred_dir, c.case_id) for c in cases}
    lacking = [cid for cid, p in preds.items() if p is None]
    if lacking and missing == "error":
        shown = ", ".join(lacking[:20]) + (f" ... ({len(lacking)} in all)" if len(lacking) > 20 else "")
        raise MetricsError(
            f"{len(lacking)} of {len(cases)} case(s) have no prediction in {pred_dir}: {shown}; expected "
            f"<case_id>.nii.gz (use --missing zero to score them as empty predictions)"
        )
    if lacking:
        log.warning(
            "%d case(s) without prediction scored as empty: %s", len(lacking), ", ".join(lacking[:10])
        )
    known = {p.name for p in preds.values() if p is not None}
    unmatched = sorted(
        p.name for p in pred_dir.iterdir() if p.name.endswith((".nii.gz", ".nii")) and p.name not in known
    )
    if unmatched:
        log.warning(
            "%d prediction file(s) match no reference case: %s", len(unmatched), ", ".join(unmatched[:10])
        )

    iterator: Any = cases
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cases, desc="evaluate", unit="case")
    rows: list[dict[str, Any]] = []
    counts: list[dict[str, Counts]] = []
    for case in iterator:
        ref = to_classes(load_seg(case), case.label_scheme, where=str(case.seg))
        spacing = load_geometry(case.seg).spacing  # type: ignore[arg-type]
        path = preds[case.case_id]
        pred = np.zeros_like(ref) if path is None else load_prediction(path, case)
        row, cnt = evaluate_case(pred, ref, spacing=spacing, empty=empty)
        rows.append({"case": case.case_id, **row})
        counts.append(cnt)

    summary = summarize(rows, counts, empty)
    files = {"cases_csv": str(out / "cases.csv"), "summary_json": str(out / "summary.json")}
    summary.update(
        pred_dir=str(pred_dir),
        ref_root=str(ref_root),
        missing=missing,
        cases=[r["case"] for r in rows],
        missing_predictions=lacking,
        unmatched_predictions=unmatched,
        no_reference=no_ref,
        hd95_max_mm=BRATS_HD95_MAX,
        version=__version__,
        files=files,
    )
    atomic_write_text(files["cases_csv"], _cases_csv(rows))
    atomic_write_text(
        files["summary_json"], json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n"
    )
    log.info("wrote %s and %s", files["cases_csv"], files["summary_json"])
    return summary


def report_rows(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Table rows of a summary (from :func:`run_evaluate` or ``summary.json``), for reports.

    Returns:
        ``(mean_rows, pooled_rows)``, one dict per structure NCR, ED, ET, TC, WT: ``mean_rows`` hold ``name``,
        ``n`` (cases with a Dice value) and the per-case means ``dice``, ``iou``, ``precision``, ``recall``,
        ``specificity``, ``hd95`` (None for NCR and ED); ``pooled_rows`` hold ``name`` and the pooled ``dice``,
        ``iou``, ``precision``, ``recall``, ``specificity``, ``accuracy``. Undefined values are None.
    """
    mean_rows, pooled_rows = [], []
    for name in STRUCTURE_NAMES:
        per, pooled = summary["per_case"][name], summary["pooled"][name]
        row: dict[str, Any] = {"name": name, "n": per["dice"]["count"]}
        row.update({m: per[m]["mean"] if m in per else None for m in (*OVERLAP_METRICS, "hd95")})
        mean_rows.append(row)
        pooled_rows.append({"name": name, **{m: pooled[m] for m in (*OVERLAP_METRICS, "accuracy")}})
    return _json_safe(mean_rows), _json_safe(pooled_rows)


def _num(value: float | None, width: int, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def format_summary(summary: dict[str, Any]) -> str:
    """A printed table: one row per structure (NCR, ED, ET, TC, WT).

    Columns: ``n`` (cases with a Dice value), per-case mean Dice and its std, median Dice, mean IoU,
    precision, recall, specificity and HD95 (mm), then the pooled Dice, IoU, precision and recall.
    """
    per, pooled = summary["per_case"], summary["pooled"]
    head = (
        f"{'':5}{'':>4} | {'per-case mean over cases':^58} | {'pooled counts':^27}\n"
        f"{'':5}{'n':>4} | {'Dice':>6} {'±std':>6} {'median':>6} {'IoU':>6} {'Prec':>6} {'Recall':>6} "
        f"{'Spec':>6} {'HD95mm':>7} | {'Dice':>6} {'IoU':>6} {'Prec':>6} {'Recall':>6}"
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
            f"{_num(p['dice']['median'], 6)} {_num(p['iou']['mean'], 6)} {_num(p['precision']['mean'], 6)} "
            f"{_num(p['recall']['mean'], 6)} {_num(p['specificity']['mean'], 6, 4)} {_num(hd, 7, 2)} | "
            f"{_num(q['dice'], 6)} {_num(q['iou'], 6)} {_num(q['precision'], 6)} {_num(q['recall'], 6)}"
        )
    nan_notes = [
        f"{name} {m} {v['n_nan']}" for name in STRUCTURE_NAMES for m, v in per[name].items() if v["n_nan"]
    ]
    if nan_notes:
        lines.append("left out as NaN (empty masks): " + ", ".join(nan_notes))
    if "files" in summary:
        lines.append(f"wrote {summary['files']['cases_csv']} and {summary['files']['summary_json']}")
    return "\n".join(line.rstrip() for line in "\n".join(lines).splitlines())
