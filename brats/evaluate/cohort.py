"""Cohort evaluation: match predictions to reference cases, score each case, aggregate, write CSV/JSON.

``brats evaluate --pred DIR --ref ROOT`` (or ``--run RUN_DIR --split test``: exactly the cases of that split of
``splits.json``) calls :func:`run_evaluate` and prints :func:`brats.evaluate.summary.format_summary`. References are
found by the same I/O layer as every other command (:func:`brats.data.discover_cases`), in any naming the toolkit
reads, ``custom`` included. Each case gets the legacy voxel metrics and the lesion-wise ones
(:mod:`brats.evaluate.lesionwise`).
Definitions of every number: docs/metrics.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brats import __version__
from brats.data import Case, discover_cases, load_geometry, load_seg
from brats.data.runs import run_split_cases
from brats.evaluate.cases import evaluate_case, find_prediction, load_prediction
from brats.evaluate.lesionwise import VARIANTS
from brats.evaluate.metrics import BRATS_HD95_MAX, MetricsError, check_empty_rule
from brats.evaluate.summary import cases_csv, json_safe, summarize
from brats.fs import atomic_write_text
from brats.labels import to_classes

log = logging.getLogger(__name__)

__all__ = ["MISSING_RULES", "run_evaluate"]

MISSING_RULES: tuple[str, ...] = ("error", "zero")


def _shown(items: list[str], limit: int = 20) -> str:
    return ", ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def _reference_cases(all_cases: list[Case], ref_root: Path) -> tuple[list[Case], list[str]]:
    """The reference cases with a segmentation, and the ids of those without (skipped with a warning)."""
    no_ref = [c.case_id for c in all_cases if c.seg is None]
    cases = [c for c in all_cases if c.seg is not None]
    if no_ref:
        log.warning("%d reference case(s) without segmentation skipped: %s", len(no_ref), _shown(no_ref, 10))
    if not cases:
        raise MetricsError(
            f"{ref_root}: no reference case has a segmentation file (*_seg.nii.gz / *-seg.nii.gz)"
        )
    return cases, no_ref


def _match_predictions(
    pred_dir: Path, cases: list[Case], missing: str
) -> tuple[dict[str, Path | None], list[str], list[str]]:
    """``(case id -> prediction file or None, ids lacking one, prediction files matching no case)``."""
    preds = {c.case_id: find_prediction(pred_dir, c.case_id) for c in cases}
    lacking = [cid for cid, p in preds.items() if p is None]
    if lacking and missing == "error":
        raise MetricsError(
            f"{len(lacking)} of {len(cases)} case(s) have no prediction in {pred_dir}: {_shown(lacking)}; "
            f"expected <case_id>.nii.gz (use --missing zero to score them as empty predictions)"
        )
    if lacking:
        log.warning("%d case(s) without prediction scored as empty: %s", len(lacking), _shown(lacking, 10))
    known = {p.name for p in preds.values() if p is not None}
    unmatched = sorted(
        p.name
        for p in pred_dir.iterdir()
        if p.name.endswith((".nii.gz", ".nii"))
        and not p.name.endswith("_prob.nii.gz")  # probabilities written by predict --probabilities
        and p.name not in known
    )
    if unmatched:
        log.warning(
            "%d prediction file(s) match no reference case: %s", len(unmatched), _shown(unmatched, 10)
        )
    return preds, lacking, unmatched


def _score_cases(
    cases: list[Case], preds: dict[str, Path | None], empty: str, lesion_variant: str | None, progress: bool
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    from brats.progress import track

    rows: list[dict[str, Any]] = []
    confusions: list[np.ndarray] = []
    for case in track(cases, desc="evaluate", unit="case", enabled=progress):
        ref = to_classes(load_seg(case), case.label_scheme, where=str(case.seg))
        spacing = load_geometry(case.seg).spacing  # type: ignore[arg-type]
        path = preds[case.case_id]
        pred = np.zeros_like(ref) if path is None else load_prediction(path, case)
        row, cm = evaluate_case(pred, ref, spacing=spacing, empty=empty, lesion_variant=lesion_variant)
        rows.append({"case": case.case_id, **row})
        confusions.append(cm)
    return rows, confusions


def _run_naming(run_dir: str | Path) -> tuple[str, str | None]:
    """``(data.naming, data.pattern)`` of a run, from ``config_extract.yaml`` or ``config.yaml`` in the run folder
    (``("auto", None)`` when neither exists)."""
    from brats.config import load_config

    for name in ("config_extract.yaml", "config.yaml"):
        path = Path(run_dir) / name
        if path.is_file():
            cfg = load_config(path)
            return cfg.data.naming, cfg.data.pattern
    return "auto", None


def _references(
    ref_root: str | Path | None,
    naming: str,
    pattern: str | None,
    run_dir: str | Path | None,
    split: str | None,
    data_root: str | Path | None,
) -> tuple[Path, list[Case]]:
    """``(root, cases)``: every case under ``ref_root``, or exactly the cases of ``split`` of ``run_dir``."""
    if ref_root is not None:
        return Path(ref_root), discover_cases(ref_root, naming, pattern)
    assert run_dir is not None and split is not None  # checked by the caller
    run_nm, run_pat = _run_naming(run_dir)
    return run_split_cases(run_dir, split, run_nm, run_pat, data_root)


def _score(
    cases: list[Case],
    preds: dict[str, Path | None],
    ref_root: Path,
    empty: str,
    lesion_variant: str | None,
    progress: bool,
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """``(summary, cases.csv text, rows)``: BraTS regions + lesion-wise, or binary overlap + detection."""
    binary = [c.label_scheme.is_binary for c in cases]
    if any(binary):  # kaggle_3m: tumour overlap + detection (brats.evaluate.binary, docs/lgg.md)
        if not all(binary):
            raise MetricsError(
                f"{ref_root}: binary (kaggle_3m) and BraTS reference cases mixed; evaluate them apart"
            )
        from brats.evaluate.binary import binary_cases_csv, score_binary_cases, summarize_binary

        rows, bcounts, units, from_prob = score_binary_cases(cases, preds, empty, progress)
        return summarize_binary(rows, bcounts, units, empty, from_prob), binary_cases_csv(rows), rows
    rows, confusions = _score_cases(cases, preds, empty, lesion_variant, progress)
    return summarize(rows, confusions, empty, lesion_variant), cases_csv(rows), rows


def run_evaluate(
    pred_dir: str | Path,
    ref_root: str | Path | None,
    out_dir: str | Path | None = None,
    empty: str = "brats",
    missing: str = "error",
    progress: bool = False,
    naming: str = "auto",
    pattern: str | None = None,
    run_dir: str | Path | None = None,
    split: str | None = None,
    data_root: str | Path | None = None,
    lesion_variant: str | None = "official",
) -> dict[str, Any]:
    """Score the predictions in ``pred_dir`` against the reference cases under ``ref_root``.

    Args:
        pred_dir: folder of ``<case_id>.nii.gz`` predictions (also ``.nii``, ``<case_id>_seg.nii.gz``), in
            the same label convention as the reference case (ET = 4 for 2020/2021 naming, 3 for 2023).
        ref_root: folder of reference cases (see :func:`brats.data.discover_cases`); cases without a
            segmentation are skipped with a warning.
        out_dir: where ``cases.csv`` and ``summary.json`` go (default ``pred_dir``), written atomically.
        empty: empty rule, ``brats`` or ``nan`` (docs/metrics.md).
        missing: a reference case without prediction: ``error`` (raise, listing them) or ``zero`` (scored as
            an empty prediction).
        progress: show a progress bar.
        naming, pattern: how the reference cases are named (``auto``, ``2020``, ``2021``, ``2023`` or
            ``custom`` with a ``pattern``), as ``data.naming`` / ``data.pattern``.
        run_dir, split: instead of ``ref_root``: exactly the cases of ``split`` in ``run_dir/splits.json``, from
            its data root (or ``data_root``), named as the run's config says.
        lesion_variant: lesion-wise rules, ``official`` (default) or ``2023`` (docs/metrics-lesionwise.md);
            None leaves the lesion-wise columns out.

    Returns:
        The summary (see :func:`brats.evaluate.summary.summarize`) plus ``pred_dir``, ``ref_root``, ``split``,
        ``missing``, ``cases``, ``missing_predictions``, ``unmatched_predictions``, ``no_reference``,
        ``hd95_max_mm`` and ``files``.

    Raises:
        MetricsError: bad option, missing predictions (with ``missing="error"``), a prediction on another grid
            (the message names the case), unreadable files.
    """
    check_empty_rule(empty)
    if missing not in MISSING_RULES:
        raise MetricsError(f"unknown missing rule {missing!r}; expected one of {', '.join(MISSING_RULES)}")
    if lesion_variant is not None and lesion_variant not in VARIANTS:
        raise MetricsError(
            f"unknown lesion-wise variant {lesion_variant!r}; choose one of {', '.join(VARIANTS)}"
        )
    if (ref_root is None) == (run_dir is None or split is None):
        raise MetricsError(
            "give either a reference folder or a run folder and a split (--run RUN_DIR --split test)"
        )
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise MetricsError(f"{pred_dir}: prediction folder not found")
    out = Path(out_dir) if out_dir is not None else pred_dir
    ref_root, all_cases = _references(ref_root, naming, pattern, run_dir, split, data_root)
    cases, no_ref = _reference_cases(all_cases, ref_root)
    preds, lacking, unmatched = _match_predictions(pred_dir, cases, missing)
    summary, csv_text, rows = _score(cases, preds, ref_root, empty, lesion_variant, progress)
    files = {"cases_csv": str(out / "cases.csv"), "summary_json": str(out / "summary.json")}
    summary.update(
        pred_dir=str(pred_dir),
        ref_root=str(ref_root),
        split=split,
        missing=missing,
        cases=[r["case"] for r in rows],
        missing_predictions=lacking,
        unmatched_predictions=unmatched,
        no_reference=no_ref,
        hd95_max_mm=BRATS_HD95_MAX,
        version=__version__,
        files=files,
    )
    atomic_write_text(files["cases_csv"], csv_text)
    atomic_write_text(files["summary_json"], json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    log.info("wrote %s and %s", files["cases_csv"], files["summary_json"])
    return summary
