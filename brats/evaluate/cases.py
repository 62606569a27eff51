"""One case: predictions matched to references, read on the reference grid, scored per class and region."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brats.data import Case, CaseError, geometry_mismatch, load_geometry, load_label_file
from brats.evaluate.lesionwise import LESION_COLUMNS, lesion_metrics
from brats.evaluate.metrics import (
    HD95_NAMES,
    OVERLAP_METRICS,
    STRUCTURE_NAMES,
    STRUCTURES,
    MetricsError,
    bbox,
    check_empty_rule,
    confusion_matrix,
    hd95,
    overlap_scores,
    structure_counts,
)
from brats.labels import to_classes

__all__ = ["PRED_PATTERNS", "case_columns", "evaluate_case", "find_prediction", "load_prediction"]

#: File names tried for case ``ID`` in the prediction folder, in this order.
PRED_PATTERNS: tuple[str, ...] = ("{}.nii.gz", "{}.nii", "{}_seg.nii.gz", "{}_seg.nii")


def case_columns(ml: bool = True, lesions: bool = True) -> list[str]:
    """The metric columns of a case row (``cases.csv`` after ``case``): ``<NAME>_<metric>``.

    Per structure NCR, ED, ET, TC, WT: dice, iou, precision, recall, specificity, hd95 (ET, TC, WT only),
    vol_ref, vol_pred (voxels) and, with ``ml``, vol_ref_ml, vol_pred_ml (millilitres). Then, with ``lesions``,
    the lesion-wise columns ``<R>_lesion_<m>`` for R in ET, TC, WT and m in dice, hd95, tp, fp, fn, precision,
    recall, f1 (:data:`brats.evaluate.lesionwise.LESION_COLUMNS`).
    """
    cols = []
    for name in STRUCTURE_NAMES:
        cols += [f"{name}_{m}" for m in OVERLAP_METRICS]
        if name in HD95_NAMES:
            cols.append(f"{name}_hd95")
        cols += [f"{name}_vol_ref", f"{name}_vol_pred"]
        if ml:
            cols += [f"{name}_vol_ref_ml", f"{name}_vol_pred_ml"]
    return cols + (list(LESION_COLUMNS) if lesions else [])


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    empty: str = "brats",
    lesion_variant: str | None = "official",
) -> tuple[dict[str, float], np.ndarray]:
    """Score one case.

    Args:
        pred, ref: ``(X, Y, Z)`` training-class maps (0 background, 1 NCR, 2 ED, 3 ET), same shape.
        spacing: voxel size in mm (from the NIfTI header), used by HD95, the ``_ml`` volumes and the lesion-wise
            metrics.
        empty: empty rule of the legacy metrics, ``brats`` or ``nan`` (the lesion-wise rules have their own).
        lesion_variant: ``official`` or ``2023`` lesion-wise rules (:func:`brats.evaluate.lesionwise.lesion_metrics`),
            or None for no lesion-wise columns.

    Returns:
        ``(row, cm)``: ``row`` maps every name of :func:`case_columns` to a number (volumes in voxels are
        ints); ``cm`` is the case's ``(4, 4)`` voxel confusion matrix of training classes (rows reference,
        columns prediction; :func:`brats.evaluate.metrics.confusion_matrix`), for pooling: the counts of every
        structure follow from it (:func:`brats.evaluate.metrics.structure_counts`) and it adds up over cases.
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
    if lesion_variant is not None:
        row.update(lesion_metrics(pred, ref, spacing, lesion_variant))
    return {k: row[k] for k in case_columns(lesions=lesion_variant is not None)}, cm


def find_prediction(pred_dir: Path, case_id: str) -> Path | None:
    """The prediction file of ``case_id`` in ``pred_dir`` (``<case_id>.nii.gz`` first), or None."""
    for pattern in PRED_PATTERNS:
        path = pred_dir / pattern.format(case_id)
        if path.is_file():
            return path
    return None


def load_prediction(path: Path, case: Case) -> np.ndarray:
    """Read a prediction in the reference case's label convention and return training classes (uint8).

    The file is read by the same I/O layer as every segmentation (:func:`brats.data.load_label_file`).

    Raises:
        MetricsError: the prediction is unreadable, holds non-integer values or values outside 0..255, or its
            grid (shape or affine) differs from the reference segmentation's; the message names the case.
        brats.labels.LabelError: a value outside the case's label scheme (e.g. 4 in a BraTS 2023 case).
    """
    try:
        why = geometry_mismatch(load_geometry(case.seg), load_geometry(path))  # type: ignore[arg-type]
        if why:
            raise MetricsError(
                f"case {case.case_id}: prediction {path.name}: {why}; predictions must be on the reference grid"
            )
        data = load_label_file(path, check=False)
    except CaseError as exc:
        raise MetricsError(f"case {case.case_id}: prediction {exc}") from exc
    return to_classes(data, case.label_scheme, where=f"prediction {path}")
