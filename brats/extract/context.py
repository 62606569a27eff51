"""2.5D context: each axial slice stacked with its ``k`` neighbours above and below, for every modality.

The input of a 2.5D model at slice ``z`` has ``C x (2k + 1)`` channels in **modality-major** order::

    t1[z-k], ..., t1[z], ..., t1[z+k], t1ce[z-k], ..., t1ce[z+k], ..., flair[z+k]

so channel ``c * (2k + 1) + j`` is modality ``c`` at slice ``z + j - k``. Slices beyond the first or last are
**zeros** (the toolkit's "no brain" value), never copies of the edge slice. Extraction stores the stacked
patches (:func:`brats.extract.extract_case`); prediction builds the same stacks
(:func:`brats.predict.predict_probabilities`).
"""

from __future__ import annotations

import numpy as np

from brats.asymmetry import input_channels

__all__ = ["stack_context", "context_channels"]


def context_channels(n_modalities: int, context_slices: int) -> int:
    """Channels of the model input: ``n_modalities * (2 * context_slices + 1)`` (``n_modalities`` counts any
    asymmetry channels; :func:`brats.asymmetry.input_channels` counts them from the setting)."""
    return input_channels(n_modalities, False, context_slices)


def stack_context(image: np.ndarray, context_slices: int) -> np.ndarray:
    """Stack the ``k = context_slices`` neighbouring axial slices of every modality as channels.

    Args:
        image: ``(C, X, Y, Z)`` any dtype.
        context_slices: ``k >= 0``; 0 returns ``image`` itself.

    Returns:
        ``(C * (2k + 1), X, Y, Z)`` of ``image``'s dtype, modality-major (see the module doc), zeros beyond
        the first and last slice.

    Example:
        >>> v = np.arange(3, dtype=np.float32).reshape(1, 1, 1, 3)      # one modality, slices 0, 1, 2
        >>> stack_context(v, 1)[:, 0, 0, :].tolist()                    # rows: z-1, z, z+1
        [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 0.0]]
    """
    k = int(context_slices)
    if k < 0:
        raise ValueError(f"context_slices must be >= 0, got {k}")
    if k == 0:
        return image
    c, x, y, z = image.shape
    padded = np.zeros((c, x, y, z + 2 * k), dtype=image.dtype)
    padded[..., k : k + z] = image
    out = np.empty((c, 2 * k + 1, x, y, z), dtype=image.dtype)
    for j in range(2 * k + 1):
        out[:, j] = padded[..., j : j + z]
    return out.reshape(c * (2 * k + 1), x, y, z)
