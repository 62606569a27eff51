"""Detection metrics: is there tumour in a slice, in a patient? (binary scheme, kaggle_3m; docs/lgg.md)

A unit (an axial slice, or a whole patient) is *positive* in the reference when its mask holds at least one
tumour voxel, and *predicted positive* when the predicted mask does. From the 2x2 table of units:

==============  ==========================  =========================================
metric          formula                     undefined (NaN, JSON null) when
==============  ==========================  =========================================
sensitivity     TP / (TP + FN)              no reference-positive unit
specificity     TN / (TN + FP)              no reference-negative unit
precision       TP / (TP + FP)              no predicted-positive unit
f1              2 TP / (2 TP + FP + FN)     no positive unit at all
accuracy        (TP + TN) / n               n = 0
auc             ROC AUC of a score          only one reference class present
==============  ==========================  =========================================

The score of a unit is the largest tumour probability inside it (``<case>_prob.nii.gz`` from
``brats predict --probabilities``); without probabilities it is the predicted label (0 or 1), and the AUC is
that of the hard decision. AUC is the Mann-Whitney statistic: the probability that a random positive unit
scores higher than a random negative one, ties counting one half (equal to ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from brats.evaluate.metrics import Counts, MetricsError

__all__ = ["DETECTION_METRICS", "presence", "unit_scores", "detection_counts", "detection_scores", "roc_auc"]

DETECTION_METRICS: tuple[str, ...] = ("sensitivity", "specificity", "precision", "f1", "accuracy", "auc")


def presence(mask: np.ndarray, axis: int | None = -1) -> np.ndarray:
    """Per-slice tumour presence of a ``(X, Y, Z)`` mask (``axis=-1``: ``(Z,)`` bool), or the patient's
    (``axis=None``: a 0-d bool)."""
    mask = np.asarray(mask) > 0
    if axis is None:
        return np.asarray(mask.any())
    ax = axis % mask.ndim
    return np.asarray(mask.any(axis=tuple(i for i in range(mask.ndim) if i != ax)))


def unit_scores(score_map: np.ndarray, axis: int | None = -1) -> np.ndarray:
    """The largest value per slice (``(Z,)`` float) or per patient (``axis=None``) of a ``(X, Y, Z)`` map."""
    arr = np.asarray(score_map, dtype=np.float64)
    if axis is None:
        return np.asarray(arr.max() if arr.size else 0.0)
    ax = axis % arr.ndim
    return np.asarray(arr.max(axis=tuple(i for i in range(arr.ndim) if i != ax)))


def detection_counts(ref: Sequence[bool] | np.ndarray, pred: Sequence[bool] | np.ndarray) -> Counts:
    """``Counts(tp, fp, fn, tn)`` of units from reference and predicted presence flags (same length)."""
    r = np.asarray(ref, dtype=bool).ravel()
    p = np.asarray(pred, dtype=bool).ravel()
    if r.shape != p.shape:
        raise MetricsError(f"{r.size} reference flags but {p.size} predicted flags")
    return Counts(int((r & p).sum()), int((~r & p).sum()), int((r & ~p).sum()), int((~r & ~p).sum()))


def _div(num: float, den: float) -> float:
    return num / den if den else math.nan


def roc_auc(ref: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """ROC AUC of ``scores`` for the reference flags ``ref`` (ties count 1/2); NaN when a class is absent."""
    r = np.asarray(ref, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if r.shape != s.shape:
        raise MetricsError(f"{r.size} reference flags but {s.size} scores")
    n_pos, n_neg = int(r.sum()), int((~r).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[r].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection_scores(
    counts: Counts | Sequence[int],
    ref: Sequence[bool] | np.ndarray | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """``{tp, fp, fn, tn, n, sensitivity, specificity, precision, f1, accuracy, auc}`` (module doc).

    ``auc`` needs the per-unit reference flags ``ref`` and ``scores``; NaN without them.
    """
    tp, fp, fn, tn = (int(v) for v in counts)
    n = tp + fp + fn + tn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n": n,
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "precision": _div(tp, tp + fp),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "accuracy": _div(tp + tn, n),
        "auc": roc_auc(ref, scores) if ref is not None and scores is not None else math.nan,
    }
