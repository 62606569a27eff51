"""Post-processing of predicted label maps (training classes ``0 background, 1 NCR, 2 ED, 3 ET``).

Three rules, all pure functions of a ``(X, Y, Z)`` integer class map that return a new array. The functions below
count voxels; configs, checkpoints and the command line give the thresholds in millilitres
(``predict.postprocess.min_component_ml``, ``core_min_ml``, ``et_min_ml``), converted per case with :func:`ml_to_voxels` and the
case's voxel size (:func:`postprocess_ml`), so a threshold means the same volume on a 1 mm and a 3.75 mm grid:

* :func:`remove_small_components`: connected components of the whole tumour (WT = classes 1, 2, 3;
  26-connectivity) smaller than ``min_voxels`` become background. A 2D model trained on tumour-rich patches
  sprinkles small false positives over healthy brain; real tumours are thousands of voxels.
* :func:`remove_coreless_components`: connected components of the whole tumour whose tumour core (NCR + ET) is
  smaller than ``core_min_voxels`` become background. A glioma's edema surrounds a core; a FLAIR-bright blob with
  no core is usually a white-matter hyperintensity, or bias-brightened white matter, that a 2D model calls edema.
  It is a rule for gliomas: real satellite edema without its own core would be removed too, so it is off unless
  a config sets it (the demo's value was chosen on the selection cohorts of ``bench/generalise.py``).
* :func:`suppress_small_et`: nnU-Net's BraTS rule (Isensee et al., BraTS 2020): when the predicted enhancing
  tumour has fewer than ``et_min_voxels`` voxels, it is relabelled as necrosis (NCR). A case without ET scores
  Dice 1 for an empty ET prediction and 0 for any false positive, so a few stray ET voxels cost a whole case.
* :func:`remove_fragments`: inside each tumour component, every enhancing (ET) piece other than the
  component's largest one that is smaller than ``fragment_voxels`` becomes NCR, and then every tumour core
  (NCR + ET) piece other than the largest one that is smaller than ``fragment_voxels`` becomes edema (ED). A 2D
  model leaves specks of core and ET in the edema; region Dice hardly sees them, but the lesion-wise BraTS
  metrics count every 26-connected piece as a lesion, so each speck is one more false positive. The largest piece
  of each component is kept whatever its size, so a small tumour keeps its core; the whole tumour is unchanged.

:func:`postprocess` applies them in this order and reports what it changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "NCR",
    "ET",
    "tumour_components",
    "remove_small_components",
    "remove_coreless_components",
    "suppress_small_et",
    "remove_fragments",
    "postprocess",
    "ml_to_voxels",
    "postprocess_ml",
]

NCR = 1
ET = 3
#: 26-connectivity in 3D (faces, edges and corners).
STRUCTURE_26 = ndimage.generate_binary_structure(3, 3)


def _classes(classes: np.ndarray) -> np.ndarray:
    classes = np.asarray(classes)
    if classes.ndim != 3:
        raise ValueError(f"expected a (X, Y, Z) class map, got shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"expected an integer class map, got dtype {classes.dtype}")
    return classes


def tumour_components(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the whole tumour (classes > 0), 26-connectivity.

    Returns:
        ``(labels, sizes)``: ``labels`` is ``(X, Y, Z)`` int32 (0 = no tumour, 1..n = component);
        ``sizes[i]`` is the voxel count of component ``i`` (``sizes[0]`` counts the non-tumour voxels).

    Example:
        >>> c = np.zeros((5, 5, 1), np.uint8); c[0, 0] = 2; c[1, 1] = 3; c[4, 4] = 1
        >>> tumour_components(c)[1].tolist()  # (0,0) and (1,1) touch diagonally
        [22, 2, 1]
    """
    classes = _classes(classes)
    labels, _ = ndimage.label(classes > 0, structure=STRUCTURE_26)
    return labels, np.bincount(labels.ravel())


def _drop_components(
    classes: np.ndarray, min_voxels: int, core_min_voxels: int = 0
) -> tuple[np.ndarray, int, tuple[int, int], tuple[int, int]]:
    """Both component rules from one labelling (removing a component never changes another one).

    Returns:
        ``(new classes, components, (small removed, their voxels), (coreless removed, their voxels))``; a
        component that is both small and coreless counts as small.
    """
    out = classes.copy()
    if not out.any():
        return out, 0, (0, 0), (0, 0)
    labels, sizes = tumour_components(classes)
    small = sizes < min_voxels if min_voxels > 1 else np.zeros(sizes.shape, bool)
    small[0] = False
    coreless = np.zeros(sizes.shape, bool)
    if core_min_voxels > 0:
        core = np.bincount(labels.ravel(), weights=np.isin(classes, (NCR, ET)).ravel(), minlength=len(sizes))
        coreless = (core < core_min_voxels) & ~small
        coreless[0] = False
    drop = small | coreless
    if drop.any():
        out[drop[labels]] = 0
    counts = [(int(m.sum()), int(sizes[m].sum())) for m in (small, coreless)]
    return out, len(sizes) - 1, counts[0], counts[1]


def remove_small_components(classes: np.ndarray, min_voxels: int) -> np.ndarray:
    """Set every tumour component (WT, 26-connected) with fewer than ``min_voxels`` voxels to background.

    Args:
        classes: ``(X, Y, Z)`` integer training classes.
        min_voxels: size threshold in voxels; 0 or 1 keeps everything.

    Returns:
        A new array of the same shape and dtype.
    """
    return _drop_components(_classes(classes), min_voxels)[0]


def remove_coreless_components(classes: np.ndarray, core_min_voxels: int) -> tuple[np.ndarray, int, int]:
    """Set every tumour component (WT, 26-connected) holding fewer than ``core_min_voxels`` NCR + ET voxels to
    background (0 keeps everything).

    Returns:
        ``(new classes, components removed, voxels removed)``; the array is new, of the same shape and dtype.

    Example:
        >>> c = np.zeros((6, 1, 1), np.uint8); c[0:2] = 2; c[4] = 2; c[5] = 3
        >>> remove_coreless_components(c, 1)[0].ravel().tolist()  # the first component has no core
        [0, 0, 0, 0, 2, 3]
    """
    out, _, _, (removed, voxels) = _drop_components(_classes(classes), 0, core_min_voxels)
    return out, removed, voxels


def suppress_small_et(classes: np.ndarray, et_min_voxels: int, et: int = ET, ncr: int = NCR) -> np.ndarray:
    """nnU-Net's BraTS rule: when ``0 < count(classes == et) < et_min_voxels``, relabel ET as NCR.

    Returns:
        A new array of the same shape and dtype.
    """
    classes = _classes(classes)
    out = classes.copy()
    if et_min_voxels <= 0:
        return out
    is_et = out == et
    n = int(is_et.sum())
    if 0 < n < et_min_voxels:
        out[is_et] = ncr
    return out


def _small_pieces(mask: np.ndarray, owner: np.ndarray, min_voxels: int) -> np.ndarray:
    """Boolean mask of the 26-connected pieces of ``mask`` smaller than ``min_voxels`` that are not the largest
    piece of their tumour component (``owner``: the component labels; ties keep the first piece)."""
    labels, n = ndimage.label(mask, structure=STRUCTURE_26)
    if n < 2:
        return np.zeros(mask.shape, bool)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n + 1)
    first = np.full(n + 1, flat.size)
    np.minimum.at(first, flat, np.arange(flat.size))
    comp = owner.ravel()[first[1:]]  # a piece lies inside one tumour component
    order = np.lexsort((np.arange(n), -sizes[1:], comp))  # by component, largest first
    largest = np.zeros(n + 1, bool)
    largest[1 + order[np.r_[True, comp[order][1:] != comp[order][:-1]]]] = True
    drop = (sizes < min_voxels) & ~largest
    drop[0] = False
    return drop[labels]


def remove_fragments(
    classes: np.ndarray, fragment_voxels: int, et: int = ET, ncr: int = NCR
) -> tuple[np.ndarray, int, int]:
    """Relabel the small core and ET pieces that are not their tumour component's largest (0 keeps everything).

    Inside each tumour component (WT, 26-connected), ET pieces (26-connected) smaller than ``fragment_voxels``
    other than the component's largest ET piece become ``ncr``; then tumour core pieces (NCR + ET) smaller than
    ``fragment_voxels`` other than the component's largest core piece become edema (2).

    Returns:
        ``(new classes, ET voxels relabelled NCR, core voxels relabelled ED)``; the array is new, of the same shape
        and dtype.

    Example:
        >>> c = np.full((7, 1, 1), 2, np.uint8); c[0:3] = 1; c[1] = 3; c[4] = 3; c[6] = 1
        >>> out, n_et, n_core = remove_fragments(c, 2)
        >>> out.ravel().tolist(), n_et, n_core  # the ET speck at 4 and the NCR speck at 6 are fragments
        ([1, 3, 1, 2, 2, 2, 2], 1, 2)
    """
    out = _classes(classes).copy()
    if fragment_voxels <= 1 or not out.any():
        return out, 0, 0
    owner, _ = tumour_components(out)
    et_drop = _small_pieces(out == et, owner, fragment_voxels)
    out[et_drop] = ncr
    core_drop = _small_pieces(np.isin(out, (ncr, et)), owner, fragment_voxels)
    out[core_drop] = 2
    return out, int(et_drop.sum()), int(core_drop.sum())


def postprocess(
    classes: np.ndarray,
    min_component: int = 0,
    et_min_voxels: int = 0,
    core_min_voxels: int = 0,
    fragment_voxels: int = 0,
) -> tuple[np.ndarray, dict]:
    """Small-component removal, then coreless-component removal, then the ET rule, then core and ET fragments.

    Args:
        classes: ``(X, Y, Z)`` integer training classes (0 background, 1 NCR, 2 ED, 3 ET).
        min_component: see :func:`remove_small_components` (0 = off).
        et_min_voxels: see :func:`suppress_small_et` (0 = off).
        core_min_voxels: see :func:`remove_coreless_components` (0 = off).
        fragment_voxels: see :func:`remove_fragments` (0 = off).

    Returns:
        ``(classes, stats)``: the new class map (same dtype) and ``{"components": n before,
        "components_removed": n (small), "voxels_removed": n (small), "coreless_removed": n components,
        "coreless_voxels_removed": n, "et_voxels": n before the ET rule, "et_relabelled": bool,
        "et_fragment_voxels": n ET relabelled NCR, "core_fragment_voxels": n core relabelled ED}``.
    """
    out, n_comp, (n_removed, voxels), (n_coreless, coreless_voxels) = _drop_components(
        _classes(classes), min_component, core_min_voxels
    )
    et_voxels = int((out == ET).sum())
    stats = {
        "components": n_comp,
        "components_removed": n_removed,
        "voxels_removed": voxels,
        "coreless_removed": n_coreless,
        "coreless_voxels_removed": coreless_voxels,
        "et_voxels": et_voxels,
        "et_relabelled": bool(0 < et_voxels < et_min_voxels),
    }
    out, stats["et_fragment_voxels"], stats["core_fragment_voxels"] = remove_fragments(
        suppress_small_et(out, et_min_voxels), fragment_voxels
    )
    return out, stats


def ml_to_voxels(ml: float, spacing: Sequence[float]) -> int:
    """The voxel threshold equivalent to ``ml`` millilitres on a grid of ``spacing`` mm.

    "Smaller than ``ml``" means ``n * voxel_ml < ml``, i.e. ``n < ml / voxel_ml``, so the threshold is
    ``ceil(ml / voxel_ml)`` (rounded to 1e-6 first, so 0.2 mL on a 1 mm grid is 200 voxels, not 201).

    Example:
        >>> ml_to_voxels(0.2, (1, 1, 1)), ml_to_voxels(0.5, (3.75, 3.75, 3.75)), ml_to_voxels(0, (1, 1, 1))
        (200, 10, 0)
    """
    if not ml >= 0:
        raise ValueError(f"threshold must be >= 0 mL, got {ml}")
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    if not voxel_ml > 0:
        raise ValueError(f"voxel size must be positive, got spacing {tuple(spacing)}")
    return int(math.ceil(round(ml / voxel_ml, 6)))


def postprocess_ml(
    classes: np.ndarray,
    spacing: Sequence[float],
    min_component_ml: float = 0.0,
    et_min_ml: float = 0.0,
    core_min_ml: float = 0.0,
    fragment_ml: float = 0.0,
) -> tuple[np.ndarray, dict]:
    """:func:`postprocess` with thresholds in mL, converted with the voxel size ``spacing`` (mm).

    Returns:
        ``(classes, stats)`` as :func:`postprocess`, the stats with ``min_component_voxels``,
        ``et_min_voxels``, ``core_min_voxels`` and ``fragment_voxels`` (the converted thresholds) added.
    """
    min_voxels = ml_to_voxels(min_component_ml, spacing)
    et_voxels = ml_to_voxels(et_min_ml, spacing)
    core_voxels = ml_to_voxels(core_min_ml, spacing)
    fragment_voxels = ml_to_voxels(fragment_ml, spacing)
    out, stats = postprocess(classes, min_voxels, et_voxels, core_voxels, fragment_voxels)
    stats.update(
        min_component_voxels=min_voxels,
        et_min_voxels=et_voxels,
        core_min_voxels=core_voxels,
        fragment_voxels=fragment_voxels,
    )
    return out, stats
