"""Segmentation metrics from counts: confusion counts, Dice/IoU/precision/recall/specificity, HD95.

Everything starts from counts (TP/FP/FN/TN per tumour class or BraTS region); every ratio is derived from
them, so per-case scores, pooled ("micro") scores and training-time validation share one code path.

Inputs are **training-class maps**: integer arrays, any shape (``(X, Y, Z)`` for a case, ``(B, H, W)`` for a
batch of 2D patches), values ``0 background, 1 NCR, 2 ED, 3 ET`` (see :mod:`brats.labels`; convert source
labels first with :func:`brats.labels.to_classes`). The structures scored are

======  ==================  ===========================================
name    training classes    meaning
======  ==================  ===========================================
NCR     1                   necrotic / non-enhancing tumour core
ED      2                   peritumoural edema
ET      3                   enhancing tumour (a class *and* a region)
TC      1, 3                tumour core
WT      1, 2, 3             whole tumour
======  ==================  ===========================================

Empty rules (the ``empty`` argument; docs/metrics.md has the full table):

* ``"brats"`` (default): a ratio whose formula is 0/0 is 1 when prediction and reference agree on the
  structure (``FP + FN == 0``; e.g. both empty -> Dice 1) and 0 otherwise; HD95 is 0 when both masks are
  empty and :data:`BRATS_HD95_MAX` (373.13 mm) when exactly one is.
* ``"nan"``: such values are NaN (left out of means; the summary counts them).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from brats.errors import BratsError
from brats.labels import BINARY_STRUCTURE, CLASS_NAMES, REGION_CLASSES

__all__ = [
    "STRUCTURES",
    "STRUCTURE_NAMES",
    "HD95_NAMES",
    "OVERLAP_METRICS",
    "EMPTY_RULES",
    "BRATS_HD95_MAX",
    "MetricsError",
    "Counts",
    "check_empty_rule",
    "confusion_matrix",
    "structure_counts",
    "confusion_counts",
    "batch_class_counts",
    "dice_from_counts",
    "overlap_scores",
    "dice_scores",
    "region_dice",
    "pooled_dice",
    "hd95",
    "bbox",
]

#: Structure name -> training classes, in the order of the report rows (classes, then regions).
STRUCTURES: dict[str, tuple[int, ...]] = {
    **{name: (c,) for c, name in enumerate(CLASS_NAMES, start=1)},
    "TC": REGION_CLASSES["TC"],
    "WT": REGION_CLASSES["WT"],
}
STRUCTURE_NAMES: tuple[str, ...] = tuple(STRUCTURES)  # NCR, ED, ET, TC, WT
#: Structures that get an HD95: the BraTS regions (ET is the same mask as the ET class).
HD95_NAMES: tuple[str, ...] = ("ET", "TC", "WT")
OVERLAP_METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall", "specificity")
EMPTY_RULES: tuple[str, ...] = ("brats", "nan")
#: HD95 (mm) for exactly one empty mask under the ``brats`` rule: the diagonal of the 240x240x155 1 mm SRI
#: atlas grid, sqrt(240**2 + 240**2 + 155**2) = 373.129 mm.
BRATS_HD95_MAX = 373.13


class MetricsError(BratsError, ValueError):
    """Bad input to a metric (shapes, values, options) or to an evaluation (missing or mismatched files)."""


class Counts(NamedTuple):
    """Confusion counts of one binary structure (voxels): true/false positives, false/true negatives."""

    tp: int
    fp: int
    fn: int
    tn: int


def check_empty_rule(empty: str) -> str:
    """Return ``empty`` if it is a known empty rule; otherwise raise naming the rules (and the closest one)."""
    if empty in EMPTY_RULES:
        return empty
    close = difflib.get_close_matches(str(empty), EMPTY_RULES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise MetricsError(f"unknown empty rule {empty!r}; expected one of {', '.join(EMPTY_RULES)}{hint}")


# ----------------------------------------------------------------------------------------------------------------
# Counts
# ----------------------------------------------------------------------------------------------------------------


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "device")


def confusion_matrix(pred: Any, ref: Any, num_classes: int = 4) -> np.ndarray:
    """Voxel confusion matrix of two class maps.

    Args:
        pred: predicted classes, integer array (NumPy, or a torch tensor on any device), any shape.
        ref: reference classes, same shape.
        num_classes: number of classes including background (values must lie in ``0..num_classes-1``).

    Returns:
        ``(num_classes, num_classes)`` int64, ``cm[r, p]`` = number of voxels of reference class ``r``
        predicted as ``p``.

    Raises:
        MetricsError: shapes differ or a value lies outside ``0..num_classes-1``.
    """
    if _is_tensor(pred) and _is_tensor(ref):  # stay on the tensors' device: no large host copy
        if tuple(pred.shape) != tuple(ref.shape):
            raise MetricsError(
                f"prediction shape {tuple(pred.shape)} differs from reference {tuple(ref.shape)}"
            )
        p, r = pred.reshape(-1).long(), ref.reshape(-1).to(pred.device).long()
        if p.numel() and (
            min(p.min().item(), r.min().item()) < 0 or max(p.max().item(), r.max().item()) >= num_classes
        ):
            raise MetricsError(f"class values must lie in 0..{num_classes - 1}")
        hist = (r * num_classes + p).bincount(minlength=num_classes**2)
        return hist.cpu().numpy().astype(np.int64).reshape(num_classes, num_classes)
    p = pred.detach().cpu().numpy() if _is_tensor(pred) else np.asarray(pred)
    r = ref.detach().cpu().numpy() if _is_tensor(ref) else np.asarray(ref)
    if p.shape != r.shape:
        raise MetricsError(f"prediction shape {p.shape} differs from reference {r.shape}")
    for what, a in (("prediction", p), ("reference", r)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = sorted(int(v) for v in np.unique(a) if not 0 <= v < num_classes)
            raise MetricsError(f"{what} holds value(s) {bad[:10]}; classes must lie in 0..{num_classes - 1}")
    idx = r.astype(np.intp).ravel() * num_classes + p.astype(np.intp).ravel()
    return np.bincount(idx, minlength=num_classes**2).astype(np.int64).reshape(num_classes, num_classes)


def _structure_counts(cm: np.ndarray, classes: Sequence[int]) -> Counts:
    sel = np.zeros(cm.shape[0], dtype=bool)
    sel[list(classes)] = True
    return Counts(
        tp=int(cm[np.ix_(sel, sel)].sum()),
        fp=int(cm[np.ix_(~sel, sel)].sum()),
        fn=int(cm[np.ix_(sel, ~sel)].sum()),
        tn=int(cm[np.ix_(~sel, ~sel)].sum()),
    )


def structure_counts(
    cm: np.ndarray,
    labels_or_regions: Mapping[Any, int | Sequence[int]] | Sequence[int | Sequence[int]] = STRUCTURES,
) -> dict[Any, Counts]:
    """Counts of classes or regions (unions of classes) from a confusion matrix (see :func:`confusion_matrix`).

    ``labels_or_regions`` is a mapping ``name -> class or tuple of classes`` (keys of the result), or a
    sequence of classes / tuples of classes (each item is its own key). Confusion matrices add up, so the
    counts of a whole cohort or validation set come from the sum of the per-case (per-batch) matrices.
    """
    cm = np.asarray(cm)
    items = (
        labels_or_regions.items()
        if isinstance(labels_or_regions, Mapping)
        else [(k, k) for k in labels_or_regions]
    )
    out: dict[Any, Counts] = {}
    for key, cls in items:
        classes = (cls,) if isinstance(cls, (int, np.integer)) else tuple(cls)
        bad = [c for c in classes if not 0 <= int(c) < cm.shape[0]]
        if bad:
            raise MetricsError(f"{key!r}: class(es) {bad} outside 0..{cm.shape[0] - 1}")
        out[key] = _structure_counts(cm, classes)
    return out


def confusion_counts(
    pred: Any,
    ref: Any,
    labels_or_regions: Mapping[Any, int | Sequence[int]] | Sequence[int | Sequence[int]] = STRUCTURES,
    num_classes: int = 4,
) -> dict[Any, Counts]:
    """TP/FP/FN/TN (voxels) of each class or region between two class maps.

    Example:
        >>> ref = np.array([0, 1, 1, 2, 3, 3]); pred = np.array([0, 1, 2, 2, 3, 0])
        >>> confusion_counts(pred, ref)["TC"]  # TC = classes 1 and 3
        Counts(tp=2, fp=0, fn=2, tn=2)
        >>> confusion_counts(pred, ref, [1, (1, 2, 3)])[1]
        Counts(tp=1, fp=0, fn=1, tn=4)

    Args:
        pred, ref: training-class maps of the same shape (NumPy or torch), values ``0..num_classes-1``.
        labels_or_regions: see :func:`structure_counts`; default NCR, ED, ET, TC, WT.
        num_classes: number of classes including background.
    """
    return structure_counts(confusion_matrix(pred, ref, num_classes), labels_or_regions)


def batch_class_counts(pred_classes: Any, ref_classes: Any, num_classes: int = 4) -> np.ndarray:
    """Per-class ``[tp, fp, fn]`` summed over a whole batch (for training-time validation).

    Args:
        pred_classes: predicted classes, ``(B, H, W)`` or ``(B, X, Y, Z)`` integer (NumPy or torch; e.g.
            ``logits.argmax(1)``).
        ref_classes: reference classes, same shape.
        num_classes: number of classes including background.

    Returns:
        ``(num_classes - 1, 3)`` int64: row ``c - 1`` is ``[tp, fp, fn]`` of class ``c`` (NCR, ED, ET for
        BraTS). Add the arrays of successive batches, then call :func:`dice_scores`.
    """
    cm = confusion_matrix(pred_classes, ref_classes, num_classes)
    tp = np.diag(cm)
    out = np.stack([tp, cm.sum(0) - tp, cm.sum(1) - tp], axis=1)
    return out[1:].astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Ratios
# ----------------------------------------------------------------------------------------------------------------


def _ratio(num: float, den: float, agree: bool, empty: str) -> float:
    if den > 0:
        return float(num) / float(den)
    if empty == "nan":
        return math.nan
    return 1.0 if agree else 0.0


def dice_from_counts(tp: float, fp: float, fn: float, empty: str = "brats") -> float:
    """Dice ``2 TP / (2 TP + FP + FN)``; both masks empty -> 1 (``brats``) or NaN (``nan``)."""
    check_empty_rule(empty)
    return _ratio(2 * tp, 2 * tp + fp + fn, fp + fn == 0, empty)


def overlap_scores(counts: Counts | Sequence[float], empty: str = "brats") -> dict[str, float]:
    """Dice, IoU, precision, recall and specificity from ``(tp, fp, fn, tn)``.

    =========== =======================  ==============================
    metric      formula                  0/0 happens when
    =========== =======================  ==============================
    dice        2TP / (2TP + FP + FN)    both masks empty
    iou         TP / (TP + FP + FN)      both masks empty
    precision   TP / (TP + FP)           prediction empty
    recall      TP / (TP + FN)           reference empty
    specificity TN / (TN + FP)           reference covers every voxel
    =========== =======================  ==============================

    A 0/0 is 1 under ``brats`` when the masks agree (``FP + FN == 0``), else 0; NaN under ``nan``.
    """
    check_empty_rule(empty)
    tp, fp, fn, tn = (float(v) for v in counts)
    agree = fp + fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, agree, empty),
        "iou": _ratio(tp, tp + fp + fn, agree, empty),
        "precision": _ratio(tp, tp + fp, agree, empty),
        "recall": _ratio(tp, tp + fn, agree, empty),
        "specificity": _ratio(tn, tn + fp, agree, empty),
    }


def dice_scores(
    counts: np.ndarray | Mapping[str, Counts | Sequence[float]],
    empty: str = "brats",
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Dice of each class (or structure) from counts.

    Args:
        counts: ``(K, 3)`` ``[tp, fp, fn]`` rows (as from :func:`batch_class_counts`, or ``(K, 4)`` with tn),
            or a mapping ``name -> Counts`` (as from :func:`confusion_counts`).
        empty: empty rule (``brats``: 0/0 -> 1; ``nan``: 0/0 -> NaN).
        names: row names for an array; default NCR, ED, ET when ``K == 3``, else ``"1"``..``"K"``.

    Returns:
        ``name -> Dice`` (float).
    """
    check_empty_rule(empty)
    if isinstance(counts, Mapping):
        return {str(k): dice_from_counts(v[0], v[1], v[2], empty) for k, v in counts.items()}
    arr = np.asarray(counts)
    if arr.ndim != 2 or arr.shape[1] not in (3, 4):
        raise MetricsError(f"counts must be (K, 3) [tp, fp, fn] or (K, 4), got shape {arr.shape}")
    if names is None:
        names = CLASS_NAMES if arr.shape[0] == len(CLASS_NAMES) else [str(i + 1) for i in range(arr.shape[0])]
    if len(names) != arr.shape[0]:
        raise MetricsError(f"{len(names)} names for {arr.shape[0]} rows of counts")
    return {n: dice_from_counts(row[0], row[1], row[2], empty) for n, row in zip(names, arr)}


def region_dice(pred: Any, ref: Any, empty: str = "brats") -> dict[str, float]:
    """Dice of the BraTS regions WT, TC and ET of one case, from training-class maps (0-3) of the same shape.

    Example:
        >>> p = np.array([0, 2, 2, 3]); r = np.array([0, 2, 1, 1])
        >>> {k: round(v, 3) for k, v in region_dice(p, r).items()}  # TC: 1 of 1 predicted, 2 reference
        {'WT': 1.0, 'TC': 0.667, 'ET': 0.0}
    """
    return dice_scores(structure_counts(confusion_matrix(pred, ref, 4), REGION_CLASSES), empty)


def pooled_dice(cm: Any, binary: bool = False, empty: str = "brats") -> dict[str, float]:
    """Training-time validation Dice from one confusion matrix pooled over all validation patches.

    Args:
        cm: ``(K, K)`` confusion matrix (rows reference, columns prediction; see :func:`confusion_matrix`),
            summed over batches (and ranks).
        binary: the binary (LGG) scheme: one structure, ``tumour``.
        empty: empty rule for a structure absent from both.

    Returns:
        ``name -> Dice``: each tumour class (NCR, ED, ET; or ``tumour``), ``mean`` (their mean) and, for BraTS
        schemes, the regions ``WT`` and ``TC`` (the ``ET`` region is the ET class).
    """
    cm = np.asarray(cm).round().astype(np.int64)
    if binary:
        out = dice_scores(structure_counts(cm, {BINARY_STRUCTURE: (1,)}), empty)
        return {**out, "mean": out[BINARY_STRUCTURE]}
    out = dice_scores(structure_counts(cm, STRUCTURES), empty)  # NCR, ED, ET, TC, WT
    out["mean"] = float(sum(out[name] for name in CLASS_NAMES) / len(CLASS_NAMES))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Surface distance
# ----------------------------------------------------------------------------------------------------------------


def bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the True voxels of a non-empty mask."""
    box = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(i for i in range(mask.ndim) if i != ax)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def hd95(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    empty: str = "brats",
    percentile: float = 95.0,
) -> float:
    """The 95th-percentile symmetric Hausdorff distance between two masks, in mm.

    Surfaces are the mask voxels with a background face-neighbour (``mask & ~erode(mask)``, outside the
    array counts as background). For every surface voxel of one mask the Euclidean distance (scaled by
    ``spacing``) to the nearest surface voxel of the other is taken; the result is the larger of the two
    directed 95th percentiles (linear interpolation). This is MONAI's
    ``compute_hausdorff_distance(percentile=95)``; the masks are cropped to the bounding box of their union
    first, which leaves the value unchanged.

    Args:
        pred, ref: boolean masks of the same shape (``(X, Y, Z)``, or 2D).
        spacing: voxel size per axis in mm (default 1).
        empty: ``brats``: both empty -> 0, one empty -> :data:`BRATS_HD95_MAX`; ``nan``: NaN for either.
        percentile: 95 for HD95, 100 for the (maximum) Hausdorff distance.
    """
    check_empty_rule(empty)
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise MetricsError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    sp = (1.0,) * pred.ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(sp) != pred.ndim:
        raise MetricsError(f"spacing {sp} has {len(sp)} values for {pred.ndim}-D masks")
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not (has_p and has_r):
        if empty == "nan":
            return math.nan
        return 0.0 if has_p == has_r else BRATS_HD95_MAX
    box = bbox(pred | ref)
    pred, ref = pred[box], ref[box]
    edge_p = pred & ~ndimage.binary_erosion(pred, border_value=0)
    edge_r = ref & ~ndimage.binary_erosion(ref, border_value=0)
    d_pr = ndimage.distance_transform_edt(~edge_r, sampling=sp)[edge_p]
    d_rp = ndimage.distance_transform_edt(~edge_p, sampling=sp)[edge_r]
    return float(max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile)))
