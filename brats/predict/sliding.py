"""Sliding-window inference over whole volumes, with flip test-time augmentation.

:func:`predict_volume` turns a normalised case ``(C, X, Y, Z)`` into class probabilities ``(K, X, Y, Z)`` with
MONAI's :func:`~monai.inferers.sliding_window_inference`:

* **2D models** (``len(patch_size) == 2``): windows over the axial slices, batched across slices. Slices with no
  brain (every modality 0) are skipped. Each remaining slice is cropped to its own brain bounding box, rounded up
  to a multiple of ``multiple`` (32 for a depth-5 encoder); slices whose rounded boxes have the same size form one
  batch ``(N, C, Sx, Sy)`` that MONAI slides over, so windows of many slices share each forward pass.
* **3D models** (``len(patch_size) == 3``): 3D windows over the brain's 3D bounding box.
* **Window size** (``fit_windows=True``): per axis, MONAI would need ``n`` windows of the patch size to cover the
  box with the requested overlap; the window is then shrunk to the smallest multiple of ``multiple`` that still
  covers the box with at most ``n`` windows (and at least the requested overlap). Windows are never larger than
  the training patch. At overlap 0 this removes most of the wasted area (a 145-voxel box takes two 96-voxel
  windows instead of two 128-voxel ones); at overlap 0.5 it rarely changes anything. ``fit_windows=False``
  keeps MONAI's exact patch-size windows.
* **Box windows** (``windows="box"``, 2D): each slice's brain box is a single window (no sliding, no blending).
* Precision: ``amp_dtype`` runs the model under autocast (bf16 on CPUs with bf16 instructions).
* Blending: ``gaussian`` (MONAI's importance map, sigma = 0.125 x window, no zero weights) or ``constant``.
  Probabilities (softmax of each window's logits; for ``model.output: regions`` the sigmoids laid out as
  ``(1 - WT, WT, TC, ET)``, :mod:`brats.outputs`) are blended, not logits.
* TTA: the mean of the probabilities over every combination of flips of the in-plane axes (2D: 4 passes; 3D: 8),
  each flipped back before averaging.
* Outside the brain crops, and at every voxel where all modalities are 0, the result is background
  (probability 1 for class 0).

Case-level prediction and NIfTI export: :mod:`brats.infer` (which re-exports :func:`predict_volume`).
"""

from __future__ import annotations

import difflib
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from brats.errors import BratsError
from brats.outputs import probabilities

__all__ = [
    "BLEND_MODES",
    "WINDOW_MODES",
    "InferenceError",
    "num_windows",
    "fit_window",
    "window_layout",
    "flip_combinations",
    "make_predictor",
    "predict_volume",
]

log = logging.getLogger(__name__)

BLEND_MODES = ("gaussian", "constant")
#: ``patch``: windows of (at most) the training patch; ``box``: one window per slice's brain box (2D).
WINDOW_MODES = ("box", "patch")
#: Slices per call of MONAI's sliding window (bounds the memory of one call; windows are batched inside).
SLICES_PER_CALL = 64


class InferenceError(BratsError, ValueError):
    """Invalid inference settings (overlap, blending, patch size, image shape); the message names the value."""


# --------------------------------------------------------------------------------------------------------------
# Window geometry
# --------------------------------------------------------------------------------------------------------------


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def num_windows(extent: int, window: int, overlap: float) -> int:
    """Windows MONAI places along one axis of length ``extent`` (its ``dense_patch_slices`` rule).

    The step is ``int(window * (1 - overlap))`` (at least 1); the last window sits flush with the border.

    Example:
        >>> num_windows(240, 128, 0.5), num_windows(145, 128, 0.0), num_windows(100, 128, 0.5)
        (3, 2, 1)
    """
    if extent <= window:
        return 1
    step = max(int(window * (1 - overlap)), 1)
    return int(math.ceil((extent - window) / step)) + 1


def fit_window(extent: int, patch: int, overlap: float, multiple: int = 32) -> int:
    """Window length along one axis: at most ``patch``, as small as possible without adding windows.

    ``n`` = :func:`num_windows` of a ``min(patch, extent rounded up to multiple)`` window; the result is the
    smallest multiple of ``multiple`` whose window count is still at most ``n`` (windows keep at least the
    requested overlap, because MONAI spaces them by ``window * (1 - overlap)`` or less).

    Example:
        >>> fit_window(160, 128, 0.0), fit_window(160, 128, 0.5), fit_window(96, 128, 0.5), fit_window(300, 128, 0.0)
        (96, 128, 96, 128)
    """
    top = min(int(patch), _round_up(int(extent), multiple))
    n = num_windows(extent, top, overlap)
    for w in range(multiple, top, multiple):
        if num_windows(extent, w, overlap) <= n:
            return w
    return top


def window_layout(
    extent: Sequence[int], patch_size: Sequence[int], overlap: float, multiple: int = 32, fit: bool = True
) -> tuple[tuple[int, ...], int]:
    """``(roi, windows)``: the window size per axis and the number of windows over a crop of ``extent``."""
    roi = tuple(
        fit_window(e, p, overlap, multiple) if fit else int(p)
        for e, p in zip(extent, patch_size, strict=True)
    )
    count = math.prod(num_windows(e, r, overlap) for e, r in zip(extent, roi))
    return roi, count


# --------------------------------------------------------------------------------------------------------------
# The predictor (one batch of windows -> probabilities)
# --------------------------------------------------------------------------------------------------------------


def flip_combinations(spatial_dims: int) -> list[tuple[int, ...]]:
    """Tensor dims to flip for flip TTA on ``(B, K, *spatial)``: every subset of the spatial dims, () first.

    Example:
        >>> flip_combinations(2)
        [(), (2,), (3,), (2, 3)]
    """
    dims = range(2, 2 + spatial_dims)
    return [c for r in range(spatial_dims + 1) for c in itertools.combinations(dims, r)]


def make_predictor(
    model: Callable[[torch.Tensor], torch.Tensor],
    tta: bool = False,
    window_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    channels_last: bool = True,
    amp_dtype: torch.dtype | None = None,
    output: str = "classes",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A MONAI predictor: ``(B, C, *win)`` float32 -> probabilities ``(B, K, *win)`` float32.

    ``output``: ``classes`` (softmax) or ``regions`` (:func:`brats.outputs.probabilities`).

    ``window_fn`` (e.g. the per-window intensity rescale of training) is applied first, in float32; the model
    runs under autocast to ``amp_dtype`` (e.g. ``torch.bfloat16``) when given; with ``tta`` the probabilities
    are the mean over :func:`flip_combinations` (each output flipped back).
    """

    def predict(x: torch.Tensor) -> torch.Tensor:
        if window_fn is not None:
            x = window_fn(x)
        flips = flip_combinations(x.ndim - 2) if tta else [()]
        total: torch.Tensor | None = None
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            if channels_last and xi.ndim in (4, 5):
                fmt = torch.channels_last if xi.ndim == 4 else torch.channels_last_3d
                xi = xi.contiguous(memory_format=fmt)
            with torch.autocast(xi.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(xi)
            prob = probabilities(logits, output)
            if dims:
                prob = torch.flip(prob, dims)
            total = prob if total is None else total.add_(prob)
        assert total is not None
        return (total / len(flips)).contiguous() if len(flips) > 1 else total.contiguous()

    return predict


# --------------------------------------------------------------------------------------------------------------
# Whole volumes
# --------------------------------------------------------------------------------------------------------------


def _check_args(
    image: np.ndarray, patch_size: Sequence[int], overlap: float, blend: str, batch_size: int, windows: str
) -> None:
    if image.ndim != 4:
        raise InferenceError(f"predict_volume expects an image (C, X, Y, Z), got shape {image.shape}")
    if len(patch_size) not in (2, 3) or any(int(p) <= 0 for p in patch_size):
        raise InferenceError(f"patch_size must hold 2 (axial 2D) or 3 positive sizes, got {list(patch_size)}")
    if not 0 <= float(overlap) < 1:
        raise InferenceError(f"overlap must be in [0, 1), got {overlap}")
    if blend not in BLEND_MODES:
        close = difflib.get_close_matches(str(blend), BLEND_MODES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InferenceError(f"blend must be one of {', '.join(BLEND_MODES)}, got {blend!r}{hint}")
    if int(batch_size) < 1:
        raise InferenceError(f"batch_size must be at least 1, got {batch_size}")
    if windows not in WINDOW_MODES:
        raise InferenceError(f"windows must be one of {', '.join(WINDOW_MODES)}, got {windows!r}")


def _crop_start(lo: int, hi: int, size: int, length: int) -> int:
    """Start of a ``size`` crop holding ``[lo, hi)`` (centred, then clamped into ``[0, length)``)."""
    start = lo - (size - (hi - lo)) // 2
    return max(0, min(start, length - size)) if size <= length else 0


def _slice_boxes(
    mask: np.ndarray, brain_box: bool, multiple: int
) -> dict[tuple[int, int], list[tuple[int, int, int]]]:
    """Group the non-empty axial slices by crop size: ``{(Sx, Sy): [(z, x0, y0), ...]}``."""
    X, Y, Z = mask.shape
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    if not brain_box:
        groups[(X, Y)] = [(z, 0, 0) for z in range(Z)]
        return groups
    any_x = np.asarray(mask.any(axis=1))  # (X, Z)
    any_y = np.asarray(mask.any(axis=0))  # (Y, Z)
    for z in np.flatnonzero(any_x.any(axis=0)):
        xs, ys = np.flatnonzero(any_x[:, z]), np.flatnonzero(any_y[:, z])
        sx = _round_up(int(xs[-1] - xs[0] + 1), multiple)
        sy = _round_up(int(ys[-1] - ys[0] + 1), multiple)
        x0 = _crop_start(int(xs[0]), int(xs[-1]) + 1, sx, X)
        y0 = _crop_start(int(ys[0]), int(ys[-1]) + 1, sy, Y)
        groups.setdefault((sx, sy), []).append((int(z), x0, y0))
    return groups


def _blend_call(
    batch: torch.Tensor,
    roi: tuple[int, ...],
    predictor: Callable,
    overlap: float,
    blend: str,
    batch_size: int,
) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    out = sliding_window_inference(
        batch, roi, batch_size, predictor, overlap=overlap, mode=blend, padding_mode="constant", cval=0.0
    )
    assert isinstance(out, torch.Tensor)
    return out


class _Canvas:
    """The ``(K, X, Y, Z)`` output, allocated on the first paste (``K`` comes from the model's output)."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.out: np.ndarray | None = None

    def paste(self, prob: torch.Tensor, region: tuple[slice | int, ...]) -> None:
        """Write ``prob`` ``(K, *region shape)``; background where every modality is 0."""
        if self.out is None:
            self.out = np.zeros((prob.shape[0], *self.mask.shape), np.float32)
            self.out[0] = 1.0
        values = prob.numpy()
        outside = ~self.mask[region]
        if outside.any():
            values[:, outside] = 0.0
            values[0, outside] = 1.0
        self.out[(slice(None),) + tuple(region)] = values

    def result(self, classes: Callable[[], int]) -> np.ndarray:
        """The probabilities; all background (``classes()`` channels) when nothing was pasted."""
        if self.out is None:
            self.out = np.zeros((classes(), *self.mask.shape), np.float32)
            self.out[0] = 1.0
        return self.out


def _predict_slices(
    image: np.ndarray, canvas: _Canvas, patch_size: Sequence[int], run: Callable, opts: dict[str, Any]
) -> None:
    """2D: each non-empty axial slice cropped to its brain box, slices of one crop size batched together."""
    C, X, Y, _ = image.shape
    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    groups = _slice_boxes(canvas.mask, opts["brain_box"], opts["multiple"])
    for (sx, sy), items in groups.items():
        roi, _ = window_layout((sx, sy), patch_size, opts["overlap"], opts["multiple"], opts["fit_windows"])
        if opts["box_windows"]:  # one window per slice: the whole box
            roi = (sx, sy)
        step = opts["batch_size"] if opts["box_windows"] else SLICES_PER_CALL
        for k in range(0, len(items), step):
            chunk = items[k : k + step]
            batch = torch.zeros((len(chunk), C, sx, sy), dtype=torch.float32)
            for i, (z, x0, y0) in enumerate(chunk):
                part = src[:, x0 : x0 + sx, y0 : y0 + sy, z]
                batch[i, :, : part.shape[1], : part.shape[2]] = part
            prob = run(batch, roi)
            for i, (z, x0, y0) in enumerate(chunk):
                wx, wy = min(sx, X - x0), min(sy, Y - y0)
                canvas.paste(prob[i, :, :wx, :wy], (slice(x0, x0 + wx), slice(y0, y0 + wy), z))


def _predict_box(
    image: np.ndarray, canvas: _Canvas, patch_size: Sequence[int], run: Callable, opts: dict[str, Any]
) -> None:
    """3D: the volume cropped to the brain's bounding box, one sliding-window pass."""
    mask, multiple = canvas.mask, opts["multiple"]
    if opts["brain_box"]:
        if not mask.any():
            return
        idx = np.argwhere(mask)
        lo, hi = idx.min(0), idx.max(0) + 1
        sizes = [_round_up(int(h - lo_), multiple) for lo_, h in zip(lo, hi)]
        starts = [_crop_start(int(a), int(b), s, n) for a, b, s, n in zip(lo, hi, sizes, mask.shape)]
    else:
        sizes, starts = list(mask.shape), [0, 0, 0]
    crop = tuple(slice(s, s + n) for s, n in zip(starts, sizes))
    part = torch.from_numpy(np.ascontiguousarray(image[(slice(None),) + crop], dtype=np.float32))
    batch = torch.zeros((1, image.shape[0], *sizes), dtype=torch.float32)
    batch[(0, slice(None)) + tuple(slice(0, n) for n in part.shape[1:])] = part
    roi, _ = window_layout(sizes, patch_size, opts["overlap"], multiple, opts["fit_windows"])
    prob = run(batch, roi)[0]
    valid = tuple(slice(0, n) for n in part.shape[1:])
    canvas.paste(prob[(slice(None),) + valid], tuple(slice(s, s + n) for s, n in zip(starts, part.shape[1:])))


@torch.inference_mode()
def predict_volume(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    blend: str = "gaussian",
    batch_size: int = 16,
    tta: bool = False,
    window_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device | None = None,
    *,
    brain_box: bool = True,
    fit_windows: bool = True,
    multiple: int = 32,
    channels_last: bool = True,
    windows: str = "patch",
    amp_dtype: torch.dtype | None = None,
    mask: np.ndarray | None = None,
    output: str = "classes",
) -> np.ndarray:
    """Class probabilities of a whole normalised volume by sliding windows.

    Args:
        model: maps ``(B, C, H, W)`` (2D) or ``(B, C, X, Y, Z)`` (3D) float32 to logits ``(B, K, ...)``.
        image: ``(C, X, Y, Z)`` float32, normalised; 0 everywhere outside the brain.
        patch_size: training patch ``[H, W]`` (axial windows over X, Y) or ``[X, Y, Z]`` (3D windows).
        overlap: fraction in [0, 1) by which neighbouring windows overlap.
        blend: ``gaussian`` or ``constant`` weighting of overlapping windows.
        batch_size: windows per forward pass.
        tta: mean of the probabilities over all flips of the spatial window axes.
        window_fn: applied to each batch of windows ``(B, C, ...)`` before the model.
        device: where windows run (default: the model's device, else CPU); the result is on the CPU.
        brain_box: crop each slice (2D) or the volume (3D) to the brain's bounding box, skip empty slices.
        fit_windows: shrink windows to the box (see the module doc); False keeps patch-size windows.
        multiple: window and crop sizes are multiples of this (``2 ** encoder_depth``).
        channels_last: feed the model channels_last tensors.
        windows: ``patch`` (windows of at most the training patch, see the module doc) or ``box`` (2D only:
            each slice's brain box is one window, so ``overlap`` and ``blend`` have no effect; the model is
            fully convolutional, and its labels agree with ``patch`` windows at overlap 0.5 on >= 99 % of the
            brain voxels, see docs/performance.md). 3D models always use ``patch``.
        amp_dtype: autocast dtype of the model's forward pass (``torch.bfloat16``), or None for float32.
        mask: ``(X, Y, Z)`` bool brain mask (default: any channel non-zero); 2.5D passes the centre slices'.
        output: the model's ``model.output``: ``classes`` or ``regions`` (then ``K`` = 4: ``1 - WT``, WT, TC, ET).

    Returns:
        ``(K, X, Y, Z)`` float32 probabilities (they sum to 1 over ``K``); ``K`` is the model's output
        channels (4: background, NCR, ED, ET). Background (class 0 = 1) outside the brain.
    """
    image = np.asarray(image)
    _check_args(image, patch_size, overlap, blend, batch_size, windows)
    if device is None:
        params = list(model.parameters()) if isinstance(model, nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    dev = torch.device(device)
    predictor = make_predictor(model, tta, window_fn, channels_last, amp_dtype, output)
    box = windows == "box" and len(patch_size) == 2

    def run(batch: torch.Tensor, roi: tuple[int, ...]) -> torch.Tensor:
        if box:  # one window covers each item: no blending needed
            return predictor(batch.to(dev)).cpu()
        return _blend_call(batch.to(dev), roi, predictor, overlap, blend, batch_size).cpu()

    def classes() -> int:  # no brain at all: ask the model how many classes it has
        probe = torch.zeros((1, image.shape[0], *(_round_up(int(p), multiple) for p in patch_size)))
        return int(predictor(probe.to(dev)).shape[1])

    canvas = _Canvas(np.any(image != 0, axis=0) if mask is None else np.asarray(mask, bool))
    opts = {"overlap": overlap, "multiple": multiple, "fit_windows": fit_windows, "brain_box": brain_box}
    opts |= {"box_windows": box, "batch_size": batch_size}
    (_predict_slices if len(patch_size) == 2 else _predict_box)(image, canvas, patch_size, run, opts)
    return canvas.result(classes)
