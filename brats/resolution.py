"""A coarser in-plane grid for the model: block means of the images, block majorities of the labels, and
probabilities brought back to the case's own grid.

``preprocess.downsample: f`` (1 = off) makes extraction and prediction work on ``f x f`` blocks of each axial
slice (X and Y; Z is kept): a 240 x 240 slice at 1 mm becomes 120 x 120 at 2 mm for ``f = 2``, so a training
patch covers ``f**2`` times the brain for the same cost. Prediction upsamples the probabilities to the input's
exact grid before decoding and post-processing, so the written segmentation, its affine and the mL thresholds
are those of the input.

* :func:`pool_image`: the mean of each block over its **brain** voxels (any channel non-zero), so the brain's
  edge is not darkened by the zeros around it; a block without brain stays 0.
* :func:`pool_labels`: the most frequent label of each block; a tie goes to the label of the block's first voxel
  (``[0, 0]`` of the block) when it is among the tied, else to the smallest tied label.
* :func:`upsample_probabilities`: bilinear (``align_corners=False``, the geometry of block means: a coarse
  voxel's centre is its block's centre), cropped to the case's X and Y; linear, so probabilities that sum to 1
  still do.

Axes past the image's X and Y are never touched; an X or Y that is not a multiple of ``f`` is padded with
background at its end before pooling and cropped away after upsampling.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["pool_image", "pool_labels", "pool_mask", "upsample_probabilities"]


def _blocks(array: np.ndarray, factor: int, value: float = 0) -> np.ndarray:
    """``(..., X, Y, Z)`` -> ``(..., X/f, Y/f, Z, f*f)``: the voxels of each block on the last axis."""
    *lead, X, Y, Z = array.shape
    px, py = -X % factor, -Y % factor
    if px or py:
        pad = [(0, 0)] * len(lead) + [(0, px), (0, py), (0, 0)]
        array = np.pad(array, pad, constant_values=value)
    x, y = (X + px) // factor, (Y + py) // factor
    b = array.reshape(*lead, x, factor, y, factor, Z)
    n = len(lead)
    order = (*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return b.transpose(order).reshape(*lead, x, y, Z, factor * factor)


def _check(factor: int) -> int:
    if int(factor) != factor or factor < 1:
        raise ValueError(f"downsample factor must be a positive integer, got {factor!r}")
    return int(factor)


def pool_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """``(X, Y, Z)`` bool -> coarse bool: True where the block holds any True voxel."""
    factor = _check(factor)
    mask = np.asarray(mask, dtype=bool)
    return mask if factor == 1 else np.asarray(_blocks(mask, factor).any(axis=-1))


def pool_image(image: np.ndarray, factor: int) -> np.ndarray:
    """``(C, X, Y, Z)`` -> ``(C, X', Y', Z)`` float32: each block's mean over its brain voxels (module doc).

    Example:
        >>> img = np.zeros((1, 2, 2, 1), np.float32); img[0, :, 0, 0] = [2, 4]
        >>> pool_image(img, 2)[0, :, :, 0].tolist()
        [[3.0]]
    """
    factor = _check(factor)
    image = np.asarray(image)
    if factor == 1:
        return image.astype(np.float32, copy=False)
    brain = _blocks(np.any(image != 0, axis=0), factor)
    count = brain.sum(axis=-1)
    total = _blocks(image.astype(np.float32, copy=False), factor).sum(axis=-1, dtype=np.float64)
    out = total / np.maximum(count, 1)
    return out.astype(np.float32)


def pool_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """``(X, Y, Z)`` integer labels -> ``(X', Y', Z)`` of the same dtype: each block's majority (module doc).

    Example:
        >>> seg = np.array([[[0], [2]], [[2], [0]]], np.uint8)  # a 2-2 tie, first voxel 0
        >>> pool_labels(seg, 2)[:, :, 0].tolist()
        [[0]]
    """
    factor = _check(factor)
    labels = np.asarray(labels)
    if factor == 1:
        return labels
    blocks = _blocks(labels, factor)
    values = np.unique(labels)
    first = blocks[..., 0]
    counts = np.stack([(blocks == v).sum(axis=-1) + 0.5 * (first == v) for v in values])
    return values[np.argmax(counts, axis=0)].astype(labels.dtype)


def upsample_probabilities(prob: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    """``(K, X', Y', Z)`` -> ``(K, X, Y, Z)`` float32 on the case's grid (``shape`` = its ``(X, Y)``).

    Example:
        >>> p = np.zeros((2, 1, 1, 1), np.float32); p[1] = 1
        >>> upsample_probabilities(p, (2, 1), 2)[:, :, 0, 0].tolist()
        [[0.0, 0.0], [1.0, 1.0]]
    """
    factor = _check(factor)
    prob = np.asarray(prob, dtype=np.float32)
    if factor == 1:
        return prob
    X, Y = (int(s) for s in shape)
    t = torch.from_numpy(np.ascontiguousarray(prob)).permute(3, 0, 1, 2)  # (Z, K, X', Y')
    up = F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)
    return np.ascontiguousarray(up[:, :, :X, :Y].permute(1, 2, 3, 0).numpy())
