"""``brats evaluate``: per-class and per-region Dice, IoU, precision, recall, specificity, HD95 and the lesion-wise
BraTS metrics over a cohort.

Modules: :mod:`~brats.evaluate.metrics` (counts and scores on arrays; also used by training's validation),
:mod:`~brats.evaluate.cases` (one case), :mod:`~brats.evaluate.summary` (aggregation, files, tables),
:mod:`~brats.evaluate.cohort` (:func:`run_evaluate`), :mod:`~brats.evaluate.lesionwise` (lesion-wise rules),
:mod:`~brats.evaluate.tune` (post-processing thresholds chosen on the validation split), :mod:`~brats.evaluate.binary`
and :mod:`~brats.evaluate.detection` (binary kaggle_3m cases: tumour overlap, slice/patient detection; docs/lgg.md).
Definitions: docs/metrics.md.
"""

from brats.evaluate.cases import (
    PRED_PATTERNS,
    case_columns,
    evaluate_case,
    find_prediction,
    load_prediction,
)
from brats.evaluate.cohort import (
    MISSING_RULES,
    run_evaluate,
)
from brats.evaluate.metrics import (
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
    pooled_dice,
    region_dice,
    structure_counts,
)
from brats.evaluate.summary import (
    AGG_METRICS,
    format_summary,
    lesion_rows,
    report_rows,
    summarize,
)
from brats.evaluate.tune import (
    GRID_ET_MIN_ML,
    GRID_MIN_COMPONENT_ML,
    OBJECTIVE,
    sweep_postprocess,
    tune_postprocess,
)

__all__ = [
    "AGG_METRICS",
    "BRATS_HD95_MAX",
    "Counts",
    "EMPTY_RULES",
    "GRID_ET_MIN_ML",
    "GRID_MIN_COMPONENT_ML",
    "OBJECTIVE",
    "HD95_NAMES",
    "MISSING_RULES",
    "MetricsError",
    "OVERLAP_METRICS",
    "PRED_PATTERNS",
    "STRUCTURES",
    "STRUCTURE_NAMES",
    "batch_class_counts",
    "pooled_dice",
    "case_columns",
    "check_empty_rule",
    "confusion_counts",
    "confusion_matrix",
    "dice_from_counts",
    "dice_scores",
    "region_dice",
    "evaluate_case",
    "find_prediction",
    "format_summary",
    "hd95",
    "lesion_rows",
    "load_prediction",
    "overlap_scores",
    "report_rows",
    "run_evaluate",
    "structure_counts",
    "summarize",
    "sweep_postprocess",
    "tune_postprocess",
]
