"""Evaluation of binary (``tumour``) cases, kaggle_3m: overlap per patient and pooled, plus detection.

:func:`brats.evaluate.run_evaluate` hands over here when the reference cases use the binary label scheme.
Per patient (``cases.csv``): ``tumour_{dice,iou,precision,recall,specificity,hd95,vol_ref,vol_pred,vol_ref_ml,
vol_pred_ml}`` (the same counts and empty rule as BraTS structures, docs/metrics.md), then the slice table
``slices, slice_tp, slice_fp, slice_fn, slice_tn``, the patient flags ``ref_present, pred_present`` and the
patient ``score``. ``summary.json`` adds ``detection: {slice: {...}, patient: {...}, score: ...}``
(:mod:`brats.evaluate.detection`). Predictions are ``PRED/<case>.nii.gz`` on the slice grid ``(256, 256, n)``
with labels 0/1; ``PRED/<case>_prob.nii.gz`` (``brats predict --probabilities``), when present, gives the
scores. HD95 and volumes use the prediction's NIfTI voxel size (``data.slice_spacing_mm`` along ``k``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brats.data import Case, CaseError, load_label_file, load_seg
from brats.evaluate.detection import detection_counts, detection_scores, presence, unit_scores
from brats.evaluate.metrics import (
    OVERLAP_METRICS,
    Counts,
    MetricsError,
    hd95,
    overlap_scores,
    structure_counts,
)
from brats.evaluate.metrics import confusion_matrix as _cm
from brats.labels import BINARY_STRUCTURE, to_classes

__all__ = [
    "BINARY_COLUMNS",
    "evaluate_binary_case",
    "score_binary_cases",
    "summarize_binary",
    "binary_cases_csv",
    "format_binary",
]

log = logging.getLogger(__name__)

_T = BINARY_STRUCTURE
DETECTION_COLUMNS = ("slices", "slice_tp", "slice_fp", "slice_fn", "slice_tn", "ref_present", "pred_present")
BINARY_COLUMNS: tuple[str, ...] = (
    *(f"{_T}_{m}" for m in (*OVERLAP_METRICS, "hd95", "vol_ref", "vol_pred", "vol_ref_ml", "vol_pred_ml")),
    *DETECTION_COLUMNS,
    "score",
)


def evaluate_binary_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    score_map: np.ndarray | None = None,
    empty: str = "brats",
) -> tuple[dict[str, Any], Counts, dict[str, np.ndarray]]:
    """Score one patient: ``pred``, ``ref`` ``(X, Y, Z)`` classes 0/1; ``score_map`` ``(X, Y, Z)`` tumour
    probabilities (default: ``pred``).

    Returns:
        ``(row, counts, units)``: the :data:`BINARY_COLUMNS` row, the voxel :class:`Counts` and the per-slice
        ``ref``/``pred`` flags and ``score`` arrays (for pooling and the AUC).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise MetricsError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    counts = structure_counts(_cm(pred, ref, num_classes=2), {_T: (1,)})[_T]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    row: dict[str, Any] = {f"{_T}_{m}": v for m, v in overlap_scores(counts, empty).items()}
    row[f"{_T}_hd95"] = hd95(pred > 0, ref > 0, spacing, empty)
    row[f"{_T}_vol_ref"] = counts.tp + counts.fn
    row[f"{_T}_vol_pred"] = counts.tp + counts.fp
    row[f"{_T}_vol_ref_ml"] = (counts.tp + counts.fn) * voxel_ml
    row[f"{_T}_vol_pred_ml"] = (counts.tp + counts.fp) * voxel_ml
    smap = pred if score_map is None else np.asarray(score_map)
    units = {"ref": presence(ref), "pred": presence(pred), "score": unit_scores(smap)}
    sc = detection_counts(units["ref"], units["pred"])
    row.update(slices=int(ref.shape[-1]), slice_tp=sc.tp, slice_fp=sc.fp, slice_fn=sc.fn, slice_tn=sc.tn)
    row["ref_present"] = int(presence(ref, None))
    row["pred_present"] = int(presence(pred, None))
    row["score"] = float(unit_scores(smap, None))
    return row, counts, units


def _load_pred(path: Path, case: Case, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    try:
        data = load_label_file(path, check=False)
        zooms = tuple(float(z) for z in nib.load(str(path)).header.get_zooms()[:3])  # type: ignore[attr-defined]
    except CaseError as exc:
        raise MetricsError(f"case {case.case_id}: prediction {exc}") from exc
    if data.shape != shape:
        raise MetricsError(
            f"case {case.case_id}: prediction {path.name} has shape {data.shape}, the slices {shape}; "
            f"predictions must be on the slice grid"
        )
    return to_classes(data, case.label_scheme, where=f"prediction {path}"), zooms


def _load_prob(path: Path, case: Case, shape: tuple[int, ...]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        prob = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)  # type: ignore[attr-defined]
    except Exception as exc:  # nibabel raises many types for broken files
        raise MetricsError(f"case {case.case_id}: {path.name}: unreadable ({exc})") from exc
    if prob.shape[:3] != shape or prob.ndim != 4 or prob.shape[3] != 2:
        raise MetricsError(f"case {case.case_id}: {path.name} has shape {prob.shape}, expected {(*shape, 2)}")
    return prob[..., 1]


def score_binary_cases(
    cases: list[Case], preds: dict[str, Path | None], empty: str, progress: bool = False
) -> tuple[list[dict[str, Any]], list[Counts], list[dict[str, np.ndarray]], bool]:
    """Rows, counts and slice units of every case, and whether every score came from probabilities."""
    from brats.progress import track

    rows, counts, units = [], [], []
    all_prob = True
    for case in track(cases, desc="evaluate", unit="case", enabled=progress):
        ref = load_seg(case)
        path = preds[case.case_id]
        spacing: tuple[float, ...] = (1.0, 1.0, float(case.metadata.get("slice_spacing_mm", 1.0)))
        if path is None:
            pred, prob = np.zeros_like(ref), None
        else:
            pred, spacing = _load_pred(path, case, ref.shape)
            prob = _load_prob(path.parent / f"{case.case_id}_prob.nii.gz", case, ref.shape)
        all_prob &= prob is not None
        row, cnt, unit = evaluate_binary_case(pred, ref, spacing, prob, empty)
        rows.append({"case": case.case_id, **row})
        counts.append(cnt)
        units.append(unit)
    return rows, counts, units, all_prob


def summarize_binary(
    rows: list[dict[str, Any]],
    counts: list[Counts],
    units: list[dict[str, np.ndarray]],
    empty: str,
    from_prob: bool,
) -> dict[str, Any]:
    """``{scheme, n_cases, empty, per_case: {tumour: ...}, pooled: {tumour: ...}, detection: {slice, patient,
    score}}`` (aggregates as :func:`brats.evaluate.summary.summarize`)."""
    from brats.evaluate.summary import _aggregate

    metrics = (*OVERLAP_METRICS, "hd95", "vol_ref", "vol_pred", "vol_ref_ml", "vol_pred_ml")
    per_case = {_T: {m: _aggregate([r[f"{_T}_{m}"] for r in rows], ci=m == "dice") for m in metrics}}
    total = Counts(*(int(sum(c[i] for c in counts)) for i in range(4)))
    pooled = {**total._asdict(), **overlap_scores(total, empty)}
    n_all = sum(total)
    pooled["accuracy"] = (total.tp + total.tn) / n_all if n_all else math.nan
    cat = {
        k: np.concatenate([u[k] for u in units]) if units else np.zeros(0) for k in ("ref", "pred", "score")
    }
    patient_ref = np.array([r["ref_present"] for r in rows], dtype=bool)
    patient_pred = np.array([r["pred_present"] for r in rows], dtype=bool)
    patient_score = np.array([r["score"] for r in rows], dtype=np.float64)
    detection = {
        "slice": detection_scores(detection_counts(cat["ref"], cat["pred"]), cat["ref"], cat["score"]),
        "patient": detection_scores(detection_counts(patient_ref, patient_pred), patient_ref, patient_score),
        "score": "max tumour probability" if from_prob else "predicted label (no _prob.nii.gz)",
    }
    return {
        "scheme": "binary",
        "n_cases": len(rows),
        "empty": empty,
        "per_case": per_case,
        "pooled": {_T: pooled},
        "detection": detection,
    }


def binary_cases_csv(rows: list[dict[str, Any]]) -> str:
    """``cases.csv`` of binary rows: ``case`` then :data:`BINARY_COLUMNS`."""
    import csv
    import io

    from brats.evaluate.summary import _fmt_csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", *BINARY_COLUMNS])
    for r in rows:
        writer.writerow([r["case"], *(_fmt_csv(r[c]) for c in BINARY_COLUMNS)])
    return buf.getvalue()


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f"95% CI {ci[0]:.3f}-{ci[1]:.3f}, "


def format_binary(summary: dict[str, Any]) -> str:
    """The printed tables of a binary summary: overlap (per-case mean and pooled), then detection."""
    p, q = summary["per_case"][_T], summary["pooled"][_T]
    lines = [
        f"{summary['n_cases']} patient(s), empty rule '{summary['empty']}'",
        f"{'tumour':8} per-case mean: Dice {_num(p['dice']['mean'])} ({_ci(p['dice'].get('ci95'))}median "
        f"{_num(p['dice']['median'])}), "
        f"IoU {_num(p['iou']['mean'])}, precision {_num(p['precision']['mean'])}, "
        f"recall {_num(p['recall']['mean'])}, HD95 {_num(p['hd95']['mean'], 2)}",
        f"{'':8} pooled: Dice {_num(q['dice'])}, IoU {_num(q['iou'])}, precision {_num(q['precision'])}, "
        f"recall {_num(q['recall'])}",
        f"detection ({summary['detection']['score']}):",
        f"  {'unit':8} {'n':>5} {'TP':>5} {'FP':>5} {'FN':>5} {'TN':>5} {'Sens':>6} {'Spec':>6} {'Prec':>6} "
        f"{'F1':>6} {'AUC':>6}",
    ]
    for unit in ("slice", "patient"):
        d = summary["detection"][unit]
        lines.append(
            f"  {unit:8} {d['n']:>5} {d['tp']:>5} {d['fp']:>5} {d['fn']:>5} {d['tn']:>5} "
            + " ".join(f"{_num(d[m]):>6}" for m in ("sensitivity", "specificity", "precision", "f1", "auc"))
        )
    if "files" in summary:
        lines.append(f"wrote {summary['files']['cases_csv']} and {summary['files']['summary_json']}")
    return "\n".join(lines)
