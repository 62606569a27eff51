"""Left-right asymmetry channels: each modality minus its mirror image about the brain's mid-sagittal plane.

A brain is close to symmetric about its mid-sagittal plane and a glioma almost never is, so a lesion that is
only faintly brighter than the white matter around it (edema at 1.2x on FLAIR, say) still stands out against
the same tissue on the other side. With ``preprocess.asymmetry: true`` extraction and prediction append, after
normalisation and before any pooling (:mod:`brats.resolution`), one channel per modality::

    asym_c(v) = image_c(v) - image_c(mirror(v))    where v and mirror(v) are both brain, else 0

so a model of ``C`` modalities sees ``2C`` channels: the ``C`` modalities, then their ``C`` asymmetries in the
same order.

* The **left-right voxel axis** is the one the affine maps closest to world x (:func:`lr_axis`, by nibabel's
  ``io_orientation``): axis 0 for BraTS volumes, axis 1 for kaggle_3m slices.
* The **mid-sagittal plane** is a plane of that axis through the brain mask's centre of mass
  (:func:`midline`), one per case. Our cases (and BraTS's) are registered to an atlas, so the head is not
  tilted; a tilted head would need a fitted plane, which this module does not do.
* The **mirror** of voxel index ``i`` is ``s - i`` with ``s = round(2 * centre)`` (:func:`mirror`); indices
  outside the volume mirror to 0, which is outside the brain.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

__all__ = ["lr_axis", "midline", "mirror", "add_asymmetry", "input_channels", "rescaled_channels"]


def lr_axis(affine: np.ndarray) -> int:
    """The voxel axis (0, 1 or 2) that the 4x4 ``affine`` maps closest to world x (left-right).

    Example:
        >>> lr_axis(np.diag([1.0, 1.0, 1.0, 1.0])), lr_axis(np.array([[0, -1, 0, 0], [1, 0, 0, 0],
        ...                                                          [0, 0, 1, 0], [0, 0, 0, 1.0]]))
        (0, 1)
    """
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    axes = [j for j in range(3) if ornt[j, 0] == 0]
    if not axes:  # a degenerate affine (a zero column); fall back to the first voxel axis
        return 0
    return int(axes[0])


def midline(mask: np.ndarray, axis: int) -> float:
    """The centre of mass of ``mask`` (``(X, Y, Z)`` bool) along ``axis``, in voxels; the volume's centre if
    the mask is empty.

    Example:
        >>> m = np.zeros((6, 1, 1), bool); m[1:4] = True
        >>> midline(m, 0)
        2.0
    """
    n = mask.shape[axis]
    counts = mask.sum(axis=tuple(a for a in range(mask.ndim) if a != axis)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return (n - 1) / 2.0
    return float((counts * np.arange(n)).sum() / total)


def mirror(image: np.ndarray, axis: int, centre: float) -> np.ndarray:
    """``image`` reflected along ``axis`` about ``centre``: ``out[i] = image[s - i]``, ``s = round(2 * centre)``,
    0 where ``s - i`` falls outside the array (``round`` is numpy's, half to even).

    Example:
        >>> mirror(np.array([1, 2, 3, 4]), 0, 1.0).tolist()      # s = 2: out[i] = image[2 - i]
        [3, 2, 1, 0]
    """
    n = image.shape[axis]
    s = int(np.round(2.0 * float(centre)))
    out = np.zeros_like(image)
    lo, hi = max(0, s - n + 1), min(n, s + 1)  # the i with 0 <= s - i < n
    if lo >= hi:
        return out
    dst = [slice(None)] * image.ndim
    src = [slice(None)] * image.ndim
    dst[axis] = slice(lo, hi)
    src[axis] = slice(s - hi + 1, s - lo + 1)
    out[tuple(dst)] = np.flip(image[tuple(src)], axis=axis)
    return out


def add_asymmetry(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(C, X, Y, Z)`` normalised image -> ``(2C, X, Y, Z)``: the modalities, then their asymmetries (module
    doc). The brain is every voxel where any modality is non-zero; the output has ``image``'s dtype.

    Example:
        >>> img = np.array([0, 1, 3, 2, 0], np.float32).reshape(1, 5, 1, 1)     # brain 1..3, centre 2
        >>> add_asymmetry(img, np.eye(4))[:, :, 0, 0].tolist()
        [[0.0, 1.0, 3.0, 2.0, 0.0], [0.0, -1.0, 0.0, 1.0, 0.0]]
    """
    if image.ndim != 4:
        raise ValueError(f"add_asymmetry expects (C, X, Y, Z), got shape {image.shape}")
    axis = lr_axis(affine)
    brain = np.any(image != 0, axis=0)
    centre = midline(brain, axis)
    both = brain & mirror(brain, axis, centre)
    diff = image.astype(np.float32) - mirror(image, axis + 1, centre).astype(np.float32)
    diff *= both[None]
    return np.concatenate([image, diff.astype(image.dtype)], axis=0)


def input_channels(n_modalities: int, asymmetry: bool, context_slices: int = 0) -> int:
    """Channels of the model input: the modalities, then their asymmetries when ``asymmetry``, each stacked
    with ``k = context_slices`` neighbouring slices either side in 2.5D (:mod:`brats.extract.context`).

    Example:
        >>> input_channels(4, False), input_channels(4, True), input_channels(4, True, context_slices=1)
        (4, 8, 24)
    """
    return int(n_modalities) * (2 if asymmetry else 1) * (2 * int(context_slices) + 1)


def rescaled_channels(n_modalities: int, asymmetry: bool, context_slices: int = 0) -> int | None:
    """The leading input channels a per-window intensity rescaling may stretch: the modalities (x (2k + 1))
    when asymmetry channels follow them (their magnitude is the signal), else None (every channel).

    Example:
        >>> rescaled_channels(4, False), rescaled_channels(4, True), rescaled_channels(4, True, context_slices=1)
        (None, 4, 12)
    """
    return input_channels(n_modalities, False, context_slices) if asymmetry else None
