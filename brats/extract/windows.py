"""Window geometry of patch extraction: where windows start, which are kept, and cutting them out.

Volumes are channel-first ``(C, X, Y, Z)``, label maps ``(X, Y, Z)``. 2D windows are axial ``(H, W)`` on single
slices (``volume[:, x:x+H, y:y+W, z]``); 3D windows ``(SX, SY, SZ)`` keep the volume's axis order.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["window_starts", "window_grid", "window_sums", "select_windows", "case_rng", "cut_patches"]


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start indices of windows of ``size`` every ``stride`` along an axis of ``length``; the last window is
    flush with the border (nnU-Net style), so every index is covered. ``length <= size`` gives ``[0]``.

    Example:
        >>> window_starts(240, 128, 64)
        [0, 64, 112]
    """
    if size <= 0 or stride <= 0:
        raise ValueError(f"size and stride must be positive, got {size}, {stride}")
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def window_grid(
    shape: tuple[int, int, int], cfg_patches: Any
) -> tuple[list[np.ndarray], tuple[int, int, int]]:
    """Window starts along X, Y, Z and the window extent ``(sx, sy, sz)`` for a volume of ``shape``.

    2D: windows ``(H, W, 1)`` on every ``slice_stride``-th axial slice; 3D: windows ``patches.size``.
    """
    p = cfg_patches
    if p.dim == 2:
        ext = (int(p.size[0]), int(p.size[1]), 1)
        strides = (int(p.stride[0]), int(p.stride[1]))
        starts = [window_starts(shape[a], ext[a], strides[a]) for a in range(2)]
        starts.append(list(range(0, shape[2], max(int(p.slice_stride), 1))))
    else:
        ext = tuple(int(s) for s in p.size)  # type: ignore[assignment]
        starts = [window_starts(shape[a], ext[a], int(p.stride[a])) for a in range(3)]
    return [np.asarray(s, dtype=np.int64) for s in starts], ext  # type: ignore[return-value]


def window_sums(mask: np.ndarray, starts: list[np.ndarray], ext: tuple[int, int, int]) -> np.ndarray:
    """Number of True voxels of ``mask`` (X, Y, Z) in every window: ``(nx, ny, nz)`` int64 (summed-area table)."""
    s = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.int64)
    s[1:, 1:, 1:] = mask.astype(np.int32).cumsum(0).cumsum(1).cumsum(2)
    x0, y0, z0 = starts[0][:, None, None], starts[1][None, :, None], starts[2][None, None, :]
    x1, y1, z1 = x0 + ext[0], y0 + ext[1], z0 + ext[2]
    return (
        s[x1, y1, z1] - s[x0, y1, z1] - s[x1, y0, z1] - s[x1, y1, z0]
        + s[x0, y0, z1] + s[x0, y1, z0] + s[x1, y0, z0] - s[x0, y0, z0]
    )  # fmt: skip


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """The generator of a case's background-window draw: seeded by ``(seed, crc32(case_id))``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(case_id.encode("utf-8"))])


def select_windows(
    seg: np.ndarray,
    mask: np.ndarray,
    starts: list[np.ndarray],
    ext: tuple[int, int, int],
    min_foreground: int,
    background_fraction: float,
    rng: np.random.Generator,
    tumour_free_windows: int = 0,
) -> tuple[np.ndarray, int, int]:
    """The windows to keep.

    Args:
        seg: ``(X, Y, Z)`` source labels (tumour = any non-zero label).
        mask: ``(X, Y, Z)`` bool brain mask.
        starts, ext: from :func:`window_grid`.
        min_foreground: tumour windows hold at least this many tumour voxels (and some brain).
        background_fraction: brain-only windows (brain, no tumour) kept in addition, as a fraction of the
            number of tumour windows (rounded to the nearest integer), drawn without replacement by ``rng``.
        tumour_free_windows: a case with no tumour window (a tumour-free case) keeps this many brain-only
            windows instead (fewer if it has fewer), drawn the same way; 0: it gives none.

    Returns:
        ``(positions, n_tumour, n_background)``: ``positions`` is ``(n, 3)`` int64 ``(x, y, z)`` starts, sorted
        by ``(z, x, y)``.
    """
    fg = window_sums(seg > 0, starts, ext)
    brain = window_sums(mask, starts, ext)
    # Flatten in (z, x, y) order: slice by slice for 2D.
    fg = fg.transpose(2, 0, 1).reshape(-1)
    brain = brain.transpose(2, 0, 1).reshape(-1)
    zz, xx, yy = np.meshgrid(starts[2], starts[0], starts[1], indexing="ij")
    pos = np.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], axis=1)
    tumour = (fg >= min_foreground) & (brain > 0)
    candidates = np.flatnonzero((fg == 0) & (brain > 0) & ~tumour)
    n_tumour = int(tumour.sum())
    n_bg = int(round(background_fraction * n_tumour)) if n_tumour else int(tumour_free_windows)
    n_bg = min(n_bg, candidates.size)
    keep = tumour.copy()
    if n_bg > 0:
        keep[rng.choice(candidates, size=n_bg, replace=False)] = True
    return pos[keep], n_tumour, n_bg


def cut_patches(
    volume: np.ndarray, seg: np.ndarray, positions: np.ndarray, ext: tuple[int, int, int], dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut windows at ``positions`` from ``volume`` ``(C, X, Y, Z)`` and ``seg`` ``(X, Y, Z)``.

    Returns ``(images, labels)``: 2D ``(n, C, H, W)`` = ``volume[:, x:x+H, y:y+W, z]`` and ``(n, H, W)``;
    3D ``(n, C, SX, SY, SZ)`` and ``(n, SX, SY, SZ)``.
    """
    win = ext[:2] if dim == 2 else ext
    axes = tuple(range(len(win)))
    vview = np.lib.stride_tricks.sliding_window_view(volume, win, axis=tuple(a + 1 for a in axes))
    sview = np.lib.stride_tricks.sliding_window_view(seg, win, axis=axes)
    x, y, z = positions[:, 0], positions[:, 1], positions[:, 2]
    images = np.ascontiguousarray(np.moveaxis(vview[:, x, y, z], 0, 1))
    labels = np.ascontiguousarray(sview[x, y, z])
    return images, labels
