"""Whole-tumour Dice by the size of the reference, per saved result and selection cohort.

A cohort's mean WT Dice mixes tumour-free cases (1 or 0 under the BraTS empty rules), lesions of a few voxels
whose Dice moves with one voxel of boundary, and large tumours. :func:`size_table` splits each cohort's cases by
the reference whole-tumour volume (``WT_ml`` of the result's ``per_case``: tumour-free, under 3 mL, 3-20 mL, 20 mL
and over) and prints the mean WT Dice of each bin with its case count, so two recipes can be compared where
they differ (``python bench/generalise.py --table A B --by-size``).
"""

from __future__ import annotations

__all__ = ["BINS", "bin_label", "size_bins", "size_table"]

#: (label, low mL inclusive, high mL exclusive); the first bin is the tumour-free cases.
BINS = (("free", 0.0, 0.0), ("< 3 mL", 0.0, 3.0), ("3-20 mL", 3.0, 20.0), (">= 20 mL", 20.0, float("inf")))
COHORTS = ("select", "select_stress")


def bin_label(ml: float) -> str:
    """The size bin of a reference whole-tumour volume in mL (``free`` for 0).

    Example:
        >>> [bin_label(v) for v in (0.0, 2.9, 3.0, 20.0)]
        ['free', '< 3 mL', '3-20 mL', '>= 20 mL']
    """
    if ml <= 0:
        return BINS[0][0]
    return next(label for label, lo, hi in BINS[1:] if lo <= ml < hi)


def size_bins(per_case: dict[str, dict]) -> dict[str, tuple[float, int]]:
    """``{bin label: (mean WT Dice, cases)}`` of one cohort's ``per_case`` scores (bins without cases left out).

    Example:
        >>> size_bins({"a": {"WT": 1.0, "WT_ml": 0.0}, "b": {"WT": 0.5, "WT_ml": 2.0}, "c": {"WT": 0.7, "WT_ml": 1.0}})
        {'free': (1.0, 1), '< 3 mL': (0.6, 2)}
    """
    groups: dict[str, list[float]] = {}
    for v in per_case.values():
        groups.setdefault(bin_label(float(v["WT_ml"])), []).append(float(v["WT"]))
    return {
        label: (sum(groups[label]) / len(groups[label]), len(groups[label]))
        for label, *_ in BINS
        if label in groups
    }


def size_table(recs: dict[str, dict]) -> str:
    """Markdown: one row per result, one column per cohort and size bin, ``mean (cases)``.

    Raises:
        ValueError: a result without per-case scores of a selection cohort.
    """
    head = [f"{cohort} {label}" for cohort in COHORTS for label, *_ in BINS]
    rows = ["| result | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for name, rec in recs.items():
        cells = []
        for cohort in COHORTS:
            per_case = rec["result"].get(cohort, {}).get("per_case")
            if not per_case:
                raise ValueError(f"{name}: no per-case scores for {cohort!r} (run with --select)")
            bins = size_bins(per_case)
            cells += [
                f"{bins[label][0]:.3f} ({bins[label][1]})" if label in bins else "-" for label, *_ in BINS
            ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
