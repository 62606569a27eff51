"""Bias-field correction before normalisation: ITK's N4 (through SimpleITK), per modality inside the brain.

An MRI's receive-coil sensitivity multiplies the image by a smooth field; z-scoring removes its mean but not its
shape, so faint edema can be darker than normal white matter across the brain. N4 (Tustison et al., 2010,
``N4BiasFieldCorrectionImageFilter``) estimates the field as a B-spline in log space by sharpening the intensity
histogram, and is the field's standard tool; we use the library's filter rather than a hand-written one. On
synthetic cases with a known field (``bench/bias_field.py``; ``docs/training.md``, "Sixteenth round") it halved the
error of the log field and kept the edema's contrast to white matter, where a Gaussian (homomorphic) filter
flattened it.

The field is fitted on a copy shrunk by :func:`shrink_factor` (about 8 mm voxels for a 240-voxel grid: 0.9 s a
modality on one core, against 3.5 s at the usual 4 mm, with the same error; ``bench/bias_field.py``) and evaluated
on the full grid. ITK runs on one thread, so that the result does not depend on the machine's core count.

Voxels outside the mask stay exactly as they were (0 in a skull-stripped volume); a modality with fewer than
:data:`MIN_VOXELS` positive voxels in the mask is returned unchanged.
"""

from __future__ import annotations

import numpy as np

from brats.errors import BratsError

__all__ = ["METHODS", "MIN_VOXELS", "correct_bias", "n4_field", "shrink_factor"]

METHODS = ("none", "n4")

#: A modality with fewer positive brain voxels than this is left uncorrected (no field can be fitted).
MIN_VOXELS = 1000

#: N4's fitting levels and iterations per level (ITK's default is 4 levels of 50; 3 kept the edema's contrast
#: on the synthetic cases, 4 flattened it).
ITERATIONS = (50, 50, 30)


def shrink_factor(shape: tuple[int, ...]) -> int:
    """The shrink factor for N4's fit: the largest axis over 30, rounded, at least 1 (8 for 240 voxels)."""
    return max(1, int(round(max(shape) / 30.0)))


def n4_field(
    volume: np.ndarray,
    mask: np.ndarray,
    shrink: int | None = None,
    iterations: tuple[int, ...] = ITERATIONS,
) -> np.ndarray:
    """N4's multiplicative bias field of one ``(X, Y, Z)`` volume, fitted inside ``mask`` (float32, same shape).

    ``shrink`` (default :func:`shrink_factor`) and ``iterations`` (one entry per fitting level) are the toolkit's
    choices unless given (``bench/bias_field.py`` compares others).

    Raises:
        BratsError: ``volume`` and ``mask`` differ in shape.
    """
    import SimpleITK as sitk  # imported here: only the runs that ask for N4 pay for it

    if volume.shape != mask.shape:
        raise BratsError(f"bias correction: volume {volume.shape} and mask {mask.shape} differ in shape")
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float32))
    fit_mask = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    factor = [shrink_factor(volume.shape) if shrink is None else int(shrink)] * 3
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(iterations))
    n4.SetNumberOfThreads(1)
    n4.Execute(sitk.Shrink(image, factor), sitk.Shrink(fit_mask, factor))
    log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image))
    return np.exp(log_field).astype(np.float32)


def correct_bias(image: np.ndarray, method: str = "n4", mask: np.ndarray | None = None) -> np.ndarray:
    """Divide each modality of ``image`` ``(C, X, Y, Z)`` by its bias field (``method`` ``n4``; ``none``: a copy).

    Args:
        image: intensities, one case, channel first.
        method: ``n4`` or ``none``.
        mask: ``(X, Y, Z)`` bool brain mask; default: voxels where any modality is non-zero. Each modality's
            field is fitted on the mask's voxels where that modality is positive.

    Returns:
        ``(C, X, Y, Z)`` float32; voxels outside ``mask`` unchanged.

    Raises:
        BratsError: an unknown ``method``, or an image that is not 4-D.
    """
    if method not in METHODS:
        raise BratsError(f"unknown bias_correction {method!r}; expected one of {', '.join(METHODS)}")
    image = np.asarray(image)
    if image.ndim != 4:
        raise BratsError(f"bias correction expects (C, X, Y, Z), got shape {image.shape}")
    out = image.astype(np.float32, copy=True)
    if method == "none":
        return out
    if mask is None:
        mask = np.any(image != 0, axis=0)
    for c in range(out.shape[0]):
        fit = mask & (out[c] > 0)
        if int(fit.sum()) < MIN_VOXELS:
            continue
        field = n4_field(out[c], fit)
        out[c][mask] /= field[mask]
    return out
