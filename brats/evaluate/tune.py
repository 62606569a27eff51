"""Choose the post-processing thresholds on the validation split (``brats tune-postprocess``).

:func:`tune_postprocess` predicts every case of the run's **validation** split once (``splits.json``; no training
or test case is read), keeps the argmax class maps in memory, and scores every pair of thresholds of a small grid
(:data:`GRID_MIN_COMPONENT_ML` x :data:`GRID_ET_MIN_ML`) by :data:`OBJECTIVE`. The best pair, the objective and the
whole sweep table are stored in the checkpoint (:attr:`brats.checkpoint.Checkpoint.postprocess`, rewritten
atomically) and in ``RUN_DIR/postprocess.json``; ``brats predict`` then applies them unless told otherwise.
The config's ``predict.postprocess.core_min_ml`` (coreless components) and ``fragment_ml`` (core and ET specks) are
not tuned: the sweep applies them to every pair and stores them with them. It lives in :mod:`brats.evaluate`
because it predicts (:mod:`brats.predict`) and scores (:mod:`.metrics`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brats.checkpoint import read_checkpoint, write_checkpoint
from brats.data import load_seg
from brats.data.runs import run_split_cases
from brats.errors import BratsError
from brats.evaluate.metrics import bbox, region_dice
from brats.fs import atomic_write_text
from brats.labels import REGION_CLASSES, to_classes
from brats.outputs import decode
from brats.predict.postprocess import ml_to_voxels, postprocess
from brats.predict.predictor import load_predictor, predict_probabilities

__all__ = ["GRID_MIN_COMPONENT_ML", "GRID_ET_MIN_ML", "OBJECTIVE", "sweep_postprocess", "tune_postprocess"]

log = logging.getLogger(__name__)

#: Candidate ``min_component_ml`` values (mL; 0 = off).
GRID_MIN_COMPONENT_ML: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Candidate ``et_min_ml`` values (mL; 0 = off).
GRID_ET_MIN_ML: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0)
#: What the sweep maximises.
OBJECTIVE = (
    "mean over the validation cases of (Dice WT + Dice TC + Dice ET) / 3, BraTS empty rule (a region empty in both "
    "the prediction and the reference scores 1); ties go to the smaller et_min_ml, then the smaller "
    "min_component_ml"
)


def sweep_postprocess(
    preds: list[np.ndarray],
    refs: list[np.ndarray],
    spacings: list[tuple[float, ...]],
    min_component_ml: tuple[float, ...] = GRID_MIN_COMPONENT_ML,
    et_min_ml: tuple[float, ...] = GRID_ET_MIN_ML,
    core_min_ml: float = 0.0,
    fragment_ml: float = 0.0,
) -> list[dict[str, Any]]:
    """Score every threshold pair on the given cases.

    Args:
        preds, refs: ``(X, Y, Z)`` training-class maps (0 background, 1 NCR, 2 ED, 3 ET), before post-processing.
        spacings: voxel size (mm) of each case; thresholds are converted per case (:func:`ml_to_voxels`).
        core_min_ml: the coreless-component threshold applied with every pair (not swept; 0 = off).
        fragment_ml: the fragment threshold applied with every pair (not swept; 0 = off).

    Returns:
        One row per pair: ``min_component_ml``, ``et_min_ml``, mean ``dice_WT``, ``dice_TC``, ``dice_ET`` over the
        cases, ``objective`` (their mean) and ``changed`` (cases whose class map post-processing changed).
    """
    if not preds or not (len(preds) == len(refs) == len(spacings)):
        raise BratsError(
            "sweep_postprocess needs as many predictions, references and spacings (at least one)"
        )
    # Everything that can change lies in the box around the predicted and reference tumour.
    cropped = []
    for p, r in zip(preds, refs):
        fg = (p > 0) | (r > 0)
        box = bbox(fg) if fg.any() else tuple(slice(0, 1) for _ in p.shape)
        cropped.append((p[box], r[box]))
    rows = []
    for mc in min_component_ml:
        for et in et_min_ml:
            scores: dict[str, list[float]] = {name: [] for name in REGION_CLASSES}
            changed = 0
            for (p, r), sp in zip(cropped, spacings):
                out, _ = postprocess(
                    p, ml_to_voxels(mc, sp), ml_to_voxels(et, sp), ml_to_voxels(core_min_ml, sp),
                    ml_to_voxels(fragment_ml, sp),
                )  # fmt: skip
                changed += int(not np.array_equal(out, p))
                for name, d in region_dice(out, r).items():
                    scores[name].append(d)
            row: dict[str, Any] = {"min_component_ml": mc, "et_min_ml": et}
            row.update({f"dice_{n}": float(np.mean(v)) for n, v in scores.items()})
            row["objective"] = float(np.mean([row[f"dice_{n}"] for n in REGION_CLASSES]))
            row["changed"] = changed
            rows.append(row)
    return rows


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    top = max(r["objective"] for r in rows)
    tied = [r for r in rows if r["objective"] >= top - 1e-12]
    return min(tied, key=lambda r: (r["et_min_ml"], r["min_component_ml"]))


def _predict_val(
    checkpoint: Path, run_dir: Path, device: str, data_root: str | Path | None, progress: bool
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[tuple[float, ...]], tuple[float, float]]:
    model, settings = load_predictor(checkpoint, device)
    _, cases = run_split_cases(run_dir, "val", settings.naming, settings.pattern, data_root)
    unlabelled = [c.case_id for c in cases if c.seg is None]
    if unlabelled:
        raise BratsError(f"validation case(s) without a segmentation: {', '.join(unlabelled)}")
    from brats.progress import track

    ids, preds, refs, spacings = [], [], [], []
    for case in track(cases, desc="tune (val)", unit="case", enabled=progress):
        prob, geometry = predict_probabilities(model, case, settings)
        pred = decode(prob, settings.output)
        del prob
        ref = to_classes(load_seg(case), case.label_scheme, where=str(case.seg))
        if ref.shape != pred.shape:
            raise BratsError(f"case {case.case_id}: segmentation shape {ref.shape} differs from {pred.shape}")
        ids.append(case.case_id)
        preds.append(pred)
        refs.append(ref)
        spacings.append(geometry.spacing)
    return ids, preds, refs, spacings, (settings.core_min_ml, settings.fragment_ml)


def tune_postprocess(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    progress: bool = False,
    device: str = "auto",
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    """Choose ``min_component_ml`` and ``et_min_ml`` on the run's validation split and store them.

    Args:
        run_dir: the run folder (``splits.json``; ``checkpoints/best.pt`` by default).
        checkpoint: the checkpoint to tune and rewrite (default ``RUN_DIR/checkpoints/best.pt``).
        progress: a progress bar over the validation cases.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        data_root: the data root, when it moved since extraction.

    Returns:
        What is stored as :attr:`Checkpoint.postprocess` and in ``RUN_DIR/postprocess.json``:
        ``min_component_ml``, ``et_min_ml`` (the choice), ``core_min_ml`` and ``fragment_ml`` (the config's),
        ``source`` (``"validation"``), ``objective`` (text), ``score`` (objective of the choice), ``score_off``
        (``min_component_ml`` and ``et_min_ml`` off), ``val_cases``, ``grid``, ``sweep`` (see :func:`sweep_postprocess`), ``checkpoint`` and ``file`` (the JSON path).

    Raises:
        BratsError: no ``splits.json``, an empty validation split, a case not found, unreadable files.
    """
    run_dir = Path(run_dir)
    path = Path(checkpoint) if checkpoint is not None else run_dir / "checkpoints" / "best.pt"
    ids, preds, refs, spacings, (core_min_ml, fragment_ml) = _predict_val(
        path, run_dir, device, data_root, progress
    )
    rows = sweep_postprocess(preds, refs, spacings, core_min_ml=core_min_ml, fragment_ml=fragment_ml)
    best = _best(rows)
    off = next(r for r in rows if r["min_component_ml"] == 0 and r["et_min_ml"] == 0)
    result: dict[str, Any] = {
        "min_component_ml": best["min_component_ml"],
        "et_min_ml": best["et_min_ml"],
        "core_min_ml": core_min_ml,
        "fragment_ml": fragment_ml,
        "source": "validation",
        "objective": OBJECTIVE,
        "score": best["objective"],
        "score_off": off["objective"],
        "val_cases": ids,
        "grid": {"min_component_ml": list(GRID_MIN_COMPONENT_ML), "et_min_ml": list(GRID_ET_MIN_ML)},
        "sweep": rows,
    }
    ckpt = read_checkpoint(path)
    ckpt.postprocess = dict(result)
    write_checkpoint(ckpt, path)
    out = run_dir / "postprocess.json"
    result.update(checkpoint=str(path), file=str(out))
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    log.info(
        "post-processing chosen on %d validation case(s): min_component_ml %s, et_min_ml %s (objective %.4f, "
        "off %.4f)",
        len(ids),
        result["min_component_ml"],
        result["et_min_ml"],
        result["score"],
        result["score_off"],
    )
    return result
