"""Lesion-wise BraTS metrics (lesion-wise Dice, lesion-wise HD95, lesion detection counts).

Since 2023 BraTS ranks by *lesion-wise* scores: each tumour region is split into connected lesions, predicted
lesions are matched to reference lesions, and Dice / HD95 are scored per lesion instead of over the whole
volume. Two rule sets exist and give different numbers; :func:`lesion_metrics` computes either:

``variant="official"`` (default)
    What the official ``BraTS-evaluation`` package (PyPI ``brats-evaluation`` 0.0.10, bundled config
    ``gli``, computed by ``panoptica`` 2.1.7) reports as ``lesionwise_dsc_mean`` / ``lesionwise_hd95_mean``
    and ``all_instance_{tp,fp,fn,prec,rec,f1}``:

    * lesions = 26-connected components of each region mask (ET = {3}, TC = {1, 3}, WT = {1, 2, 3});
    * one-to-one matching that maximises the summed Dice of matched pairs (Hungarian assignment on
      ``1 - Dice``); only pairs that overlap (Dice >= 1e-6) can match;
    * TP = matched pairs, FP = unmatched predicted lesions, FN = unmatched reference lesions;
    * lesion-wise Dice / HD95 = mean over the TP pairs only (FP and FN lesions do not enter the means;
      they are counted in precision, recall and F1 = TP / (TP + (FP + FN) / 2));
    * HD95 of a pair = 95th percentile (linear interpolation) of the pooled, both-way distances between the
      two lesions' surface voxels (voxels removed by one 6-connected erosion), in mm;
    * no TP: Dice 0 and HD95 infinite (reported here as :data:`OFFICIAL_HD95_INF` = 373 mm, the constant the
      package uses in place of an infinite HD95), except when both region masks are empty: then Dice,
      HD95, precision, recall and F1 are NaN. Precision is NaN without predicted lesions, recall NaN
      without reference lesions.

``variant="2023"``
    The rules of the BraTS 2023 lesion-wise evaluation (``BraTS-2023-Metrics``, challenge ``BraTS-GLI``)
    behind the published 2023 results:

    * reference lesions = 26-connected components after merging lesions whose 3-voxel dilations touch
      (dilation: 3 iterations of the 18-connected structuring element);
    * a predicted lesion (26-connected component) is matched to every reference lesion whose 3-voxel
      dilation it touches, so matching is many-to-many; a reference lesion's Dice and HD95 are computed
      against the union of its matched predicted lesions;
    * reference lesions of at most :data:`BRATS2023_MIN_VOLUME` = 50 mm^3 are dropped from the scores and
      the TP/FN counts (they still absorb the predicted lesions that touch them);
    * unmatched reference lesions (FN) score Dice 0 and HD95 374; each FP (predicted lesion touching no
      dilated reference lesion, whatever its size) adds a Dice 0 / HD95 374 term;
    * lesion-wise score = sum of the per-lesion terms / (kept reference lesions + FP); with neither,
      Dice = 1 and HD95 = 0.
    * difference from the 2023 code: its per-lesion HD95 came from the ``surface-distance`` package
      (surface-area-weighted, directed 95th percentiles on a corner grid); here it is the same surface-voxel
      HD95 as in the official variant, which agrees to within about a voxel.

Region masks are built from training-class maps (0 background, 1 NCR, 2 ED, 3 ET). The official package
reads label 4 as resection cavity, so BraTS 2020/2021 files (ET = 4) must be converted (ET 4 -> 3) before
they are passed here or to that package; this module refuses any label outside 0..3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from brats.errors import BratsError

REGIONS: Final[dict[str, tuple[int, ...]]] = {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}
"""Tumour regions scored, as the training classes each one unites."""

VARIANTS: Final[tuple[str, ...]] = ("official", "2023")
"""Accepted ``variant`` values of :func:`lesion_metrics`; the first is the default."""

METRICS: Final[tuple[str, ...]] = ("dice", "hd95", "tp", "fp", "fn", "precision", "recall", "f1")
"""Per-region metric names, in column order."""

LESION_COLUMNS: Final[list[str]] = [f"{r}_lesion_{m}" for r in REGIONS for m in METRICS]
"""Keys of the dict :func:`lesion_metrics` returns, in order (ET, TC, WT; then :data:`METRICS`)."""

OFFICIAL_HD95_INF: Final[float] = 373.0
"""HD95 reported when the official rules give an infinite HD95 (no TP lesion): the package's stand-in
("diameter of the cube in SRI space") for an infinite distance."""

BRATS2023_HD95_PENALTY: Final[float] = 374.0
"""HD95 of an unmatched (FN or FP) lesion under the 2023 rules."""

BRATS2023_DILATION: Final[int] = 3
"""Dilation iterations (18-connected structuring element) used by the 2023 rules for merging and matching."""

BRATS2023_MIN_VOLUME: Final[float] = 50.0
"""Reference lesions with volume <= this many mm^3 are ignored by the 2023 rules."""

_MATCH_THRESHOLD: Final[float] = 1e-6  # official config: MaxBipartiteMatching matching_threshold
_CC26: Final[np.ndarray] = ndimage.generate_binary_structure(3, 3)
_DIL18: Final[np.ndarray] = ndimage.generate_binary_structure(3, 2)
_ERODE6: Final[np.ndarray] = ndimage.generate_binary_structure(3, 1)


def lesion_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    variant: str = "official",
) -> dict[str, float | int]:
    """Lesion-wise Dice, HD95 and lesion detection counts for ET, TC and WT of one case.

    Args:
        pred: Predicted training-class map, shape (X, Y, Z), any integer (or integral float) dtype, values in
            {0 background, 1 NCR, 2 ED, 3 ET}. BraTS 2020/2021 maps (ET = 4) must be converted first.
        ref: Reference training-class map, same shape and label meaning as ``pred``.
        spacing: Voxel size in mm along X, Y, Z (three positive numbers); HD95 is in mm and the 2023
            volume threshold in mm^3.
        variant: ``"official"`` (default): the official ``BraTS-evaluation`` package's rules;
            ``"2023"``: the BraTS 2023 lesion-wise rules. See the module docstring.

    Returns:
        A dict with the keys of :data:`LESION_COLUMNS`, in that order: for each region R in ET, TC, WT,
        ``R_lesion_dice`` and ``R_lesion_hd95`` (float, mm; NaN under the official rules when both
        region masks are empty), ``R_lesion_tp``, ``R_lesion_fp``, ``R_lesion_fn`` (int) and
        ``R_lesion_precision``, ``R_lesion_recall``, ``R_lesion_f1`` (float; NaN when undefined).

    Raises:
        BratsError: On a shape mismatch, a non-3D input, a label outside 0..3, a bad spacing or an unknown
            variant.
    """
    if variant not in VARIANTS:
        raise BratsError(f"unknown lesion-wise variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise BratsError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if ref.ndim != 3:
        raise BratsError(f"lesion-wise metrics need 3D label maps (X, Y, Z), got shape {ref.shape}")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise BratsError(f"spacing must be three positive numbers (mm), got {tuple(spacing)}")
    _check_labels(pred, "prediction")
    _check_labels(ref, "reference")

    out: dict[str, float | int] = {}
    scorer = _official_region if variant == "official" else _brats2023_region
    for region, classes in REGIONS.items():
        p, r = np.isin(pred, classes), np.isin(ref, classes)
        box = _bbox(p | r, pad=BRATS2023_DILATION + 1)
        if box is None:  # both masks empty
            scores = scorer(np.zeros((1, 1, 1), bool), np.zeros((1, 1, 1), bool), sp)
        else:
            scores = scorer(p[box], r[box], sp)
        for name in METRICS:
            out[f"{region}_lesion_{name}"] = scores[name]
    return out


# --------------------------------------------------------------------------------------------------------
# Rule sets
# --------------------------------------------------------------------------------------------------------


def _official_region(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...]) -> dict[str, float | int]:
    """Official (panoptica ``gli`` config) lesion-wise scores of one region's binary masks."""
    rl, nr = _components(r)
    pl, npred = _components(p)
    dices: list[float] = []
    hds: list[float] = []
    if nr and npred:
        both = (rl > 0) & (pl > 0)
        inter = np.bincount(
            rl[both].astype(np.int64) * (npred + 1) + pl[both], minlength=(nr + 1) * (npred + 1)
        ).reshape(nr + 1, npred + 1)[1:, 1:]
        rsize = np.bincount(rl.ravel(), minlength=nr + 1)[1:].astype(np.float64)
        psize = np.bincount(pl.ravel(), minlength=npred + 1)[1:].astype(np.float64)
        dsc = 2.0 * inter / (rsize[:, None] + psize[None, :])
        cost = np.full((nr, npred), 1.0 + 1e-6)
        ok = (inter > 0) & (dsc >= _MATCH_THRESHOLD)
        cost[ok] = 1.0 - dsc[ok]
        rows, cols = linear_sum_assignment(cost)
        robj, pobj = ndimage.find_objects(rl), ndimage.find_objects(pl)
        for i, j in zip(rows, cols):
            if cost[i, j] >= 1.0:
                continue
            dices.append(float(dsc[i, j]))
            box = _union_box(robj[i], pobj[j], rl.shape)
            hds.append(_hd95(rl[box] == i + 1, pl[box] == j + 1, sp))
    tp = len(dices)
    fp, fn = npred - tp, nr - tp
    if tp:
        dice, hd95 = float(np.mean(dices)), float(np.mean(hds))
    elif nr + npred == 0:
        dice = hd95 = math.nan
    else:
        dice, hd95 = 0.0, OFFICIAL_HD95_INF
    return _with_counts(dice, hd95, tp, fp, fn)


def _brats2023_region(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...]) -> dict[str, float | int]:
    """BraTS 2023 (``BraTS-GLI``) lesion-wise scores of one region's binary masks."""
    dilated = ndimage.binary_dilation(r, structure=_DIL18, iterations=BRATS2023_DILATION)
    dl, _ = _components(dilated)
    gl = np.where(r, dl, 0)  # reference lesions, merged where their dilations touch
    pl, npred = _components(p)
    psize = np.bincount(pl.ravel(), minlength=npred + 1)
    gobj, pobj = ndimage.find_objects(gl), ndimage.find_objects(pl)
    voxel_mm3 = sp[0] * sp[1] * sp[2]
    touched = np.zeros(npred + 1, bool)
    dice_sum = hd_sum = 0.0
    tp = fn = kept = 0
    for g, obj in enumerate(gobj, start=1):
        if obj is None:
            continue
        box = _pad_box(obj, BRATS2023_DILATION + 1, gl.shape)
        lesion = gl[box] == g
        reach = ndimage.binary_dilation(lesion, structure=_DIL18, iterations=BRATS2023_DILATION)
        hits = np.unique(pl[box][reach])
        hits = hits[hits > 0]
        touched[hits] = True
        size = int(lesion.sum())
        if size * voxel_mm3 <= BRATS2023_MIN_VOLUME:
            continue
        kept += 1
        if hits.size == 0:
            fn += 1
            hd_sum += BRATS2023_HD95_PENALTY
            continue
        tp += 1
        inter = int(np.isin(pl[box][lesion], hits).sum())
        dice_sum += 2.0 * inter / (size + float(psize[hits].sum()))
        hbox = obj
        for h in hits:
            hbox = _union_box(hbox, pobj[h - 1], gl.shape)
        hd_sum += _hd95(gl[hbox] == g, np.isin(pl[hbox], hits), sp)
    fp = int(npred - touched[1:].sum())
    n = kept + fp
    if n == 0:
        dice, hd95 = 1.0, 0.0
    else:
        dice = dice_sum / n
        hd95 = (hd_sum + fp * BRATS2023_HD95_PENALTY) / n
    return _with_counts(dice, hd95, tp, fp, fn)


def _with_counts(dice: float, hd95: float, tp: int, fp: int, fn: int) -> dict[str, float | int]:
    """Assemble one region's result; precision/recall/F1 follow panoptica's ``prec``/``rec``/``rq``."""
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    if tp:
        f1 = tp / (tp + 0.5 * fp + 0.5 * fn)
    else:
        f1 = 0.0 if fp + fn else math.nan
    return {
        "dice": float(dice),
        "hd95": float(hd95),
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _check_labels(arr: np.ndarray, what: str) -> None:
    """Raise :class:`BratsError` unless ``arr`` holds only the training classes 0..3."""
    if arr.dtype == bool:
        raise BratsError(f"{what}: expected a class map (0..3), got a boolean mask")
    if not np.issubdtype(arr.dtype, np.number):
        raise BratsError(f"{what}: expected a numeric class map, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr > 3)
    if np.issubdtype(arr.dtype, np.floating):
        bad |= arr != np.round(arr)
    if bad.any():
        values = np.unique(arr[bad])[:5].tolist()
        hint = " (BraTS 2020/2021 ET = 4 must be mapped to 3 first)" if 4 in values else ""
        raise BratsError(f"{what}: labels must be 0..3 (0 bg, 1 NCR, 2 ED, 3 ET), found {values}{hint}")


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a boolean mask: (int32 label map, count)."""
    labels, n = ndimage.label(mask, structure=_CC26)
    return labels.astype(np.int32, copy=False), int(n)


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...] | None:
    """Bounding box of ``mask``'s True voxels grown by ``pad`` (clipped to the array), or None if empty."""
    objs = ndimage.find_objects(mask.astype(np.uint8))
    if not objs or objs[0] is None:
        return None
    return _pad_box(objs[0], pad, mask.shape)


def _pad_box(box: tuple[slice, ...], pad: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Grow a slice box by ``pad`` voxels per side, clipped to ``shape``."""
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape))


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Smallest box holding boxes ``a`` and ``b``, grown by one voxel (clipped to ``shape``)."""
    joined = tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))
    return _pad_box(joined, 1, shape)


def _hd95(a: np.ndarray, b: np.ndarray, sp: tuple[float, ...]) -> float:
    """95th-percentile Hausdorff distance (mm) between two non-empty boolean masks of one crop.

    Surface voxels are the voxels an erosion with the 6-connected structure removes; the distances from each
    mask's surface voxels to the other mask's nearest surface voxel, both ways, are pooled and their 95th
    percentile (linear interpolation) is returned, as panoptica's HD95 does.
    """
    border_a = a & ~ndimage.binary_erosion(a, structure=_ERODE6)
    border_b = b & ~ndimage.binary_erosion(b, structure=_ERODE6)
    d_ab = ndimage.distance_transform_edt(~border_b, sampling=sp)[border_a]
    d_ba = ndimage.distance_transform_edt(~border_a, sampling=sp)[border_b]
    return float(np.percentile(np.concatenate((d_ab, d_ba)), 95))
