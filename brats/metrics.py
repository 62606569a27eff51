"""Evaluation metrics: per-class and per-region Dice, IoU, precision, recall, specificity, HD95.

The public face of two modules:

* :mod:`brats.metrics_core`: counts and scores on arrays (also used by training's validation):
  :func:`confusion_matrix`, :func:`confusion_counts`, :func:`batch_class_counts`, :func:`dice_from_counts`,
  :func:`overlap_scores`, :func:`dice_scores`, :func:`hd95`.
* :mod:`brats.metrics_eval`: a cohort of NIfTI predictions against BraTS references:
  :func:`evaluate_case` (one case), :func:`run_evaluate` (writes ``cases.csv`` and ``summary.json``),
  :func:`summarize`, :func:`format_summary`, :func:`report_rows`.

Example (training-time validation)::

    counts = np.zeros((3, 3), np.int64)
    for batch in loader:
        counts += batch_class_counts(model(batch["image"]).argmax(1), batch["label"])
    dice_scores(counts)  # {"NCR": ..., "ED": ..., "ET": ...}

Definitions, empty rules and the difference from patch-level figures: docs/metrics.md.
"""

from brats.metrics_core import (
    BRATS_HD95_MAX,
    EMPTY_RULES,
    HD95_NAMES,
    OVERLAP_METRICS,
    STRUCTURE_NAMES,
    STRUCTURES,
    Counts,
    MetricsError,
    batch_class_counts,
    check_empty_rule,
    confusion_counts,
    confusion_matrix,
    dice_from_counts,
    dice_scores,
    hd95,
    overlap_scores,
    structure_counts,
)
from brats.metrics_eval import (
    MISSING_RULES,
    case_columns,
    evaluate_case,
    find_prediction,
    format_summary,
    load_prediction,
    report_rows,
    run_evaluate,
    summarize,
)

__all__ = [
    "BRATS_HD95_MAX",
    "EMPTY_RULES",
    "HD95_NAMES",
    "MISSING_RULES",
    "OVERLAP_METRICS",
    "STRUCTURE_NAMES",
    "STRUCTURES",
    "Counts",
    "MetricsError",
    "batch_class_counts",
    "case_columns",
    "check_empty_rule",
    "confusion_counts",
    "confusion_matrix",
    "dice_from_counts",
    "dice_scores",
    "evaluate_case",
    "find_prediction",
    "format_summary",
    "hd95",
    "load_prediction",
    "overlap_scores",
    "report_rows",
    "run_evaluate",
    "structure_counts",
    "summarize",
]
