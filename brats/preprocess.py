"""Intensity normalisation per case and per modality inside the brain, the per-window rescale, bounding boxes.

These are pure functions of their inputs: extraction (:mod:`brats.extract`) and inference call the same
:func:`normalize` with the ``preprocess`` section of the config (the checkpoint carries it), so a model sees
identically normalised intensities at training and prediction time.

The brain mask is the set of voxels where **any** modality is non-zero (BraTS volumes are skull-stripped
with a zero background). Statistics are computed per modality over the whole brain mask; voxels outside it
stay exactly 0.

* ``zscore``: ``(v - mean) / std`` (population std, ``ddof=0``); a constant modality (std 0) becomes 0.
* ``percentile``: ``clip((v - p_lo) / (p_hi - p_lo), 0, 1)`` with ``p_lo, p_hi`` the ``percentiles`` of the
  brain voxels (numpy ``linear`` interpolation); ``p_hi == p_lo`` gives 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brats.bias import METHODS as BIAS_METHODS
from brats.bias import correct_bias
from brats.errors import BratsError

__all__ = [
    "METHODS",
    "brain_mask",
    "normalize",
    "normalize_with",
    "Normalization",
    "nonzero_mask",
    "rescale_batch",
    "bounding_box",
    "crop",
    "pad_to",
]

METHODS = ("zscore", "percentile")


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Voxels inside the brain: ``(X, Y, Z)`` bool, True where any channel of ``image`` ``(C, X, Y, Z)`` != 0."""
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"brain_mask expects a channel-first image (C, X, Y, Z), got shape {image.shape}")
    return np.any(image != 0, axis=0)


def normalize(
    image: np.ndarray,
    method: str = "zscore",
    percentiles: tuple[float, float] | list[float] = (0.5, 99.5),
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise each modality of one case inside the brain.

    Args:
        image: ``(C, X, Y, Z)`` intensities (any real dtype).
        method: ``"zscore"`` (mean 0, std 1 inside the brain) or ``"percentile"`` (the ``percentiles`` of the
            brain voxels mapped to 0 and 1, clipped to [0, 1]).
        percentiles: ``(low, high)`` in [0, 100] for ``percentile``.
        mask: ``(X, Y, Z)`` bool brain mask; default :func:`brain_mask` of ``image``.

    Returns:
        ``(C, X, Y, Z)`` float32; voxels outside the mask are 0. A case with an empty mask is returned as zeros.

    Example:
        >>> img = np.zeros((1, 4, 1, 1), np.float32); img[0, :3, 0, 0] = [1, 2, 3]
        >>> normalize(img)[0, :, 0, 0].round(4).tolist()
        [-1.2247, 0.0, 1.2247, 0.0]
    """
    if method not in METHODS:
        raise BratsError(f"Unknown normalization {method!r}; expected one of {', '.join(METHODS)}")
    image = np.asarray(image)
    if image.ndim != 4:
        raise ValueError(f"normalize expects (C, X, Y, Z), got shape {image.shape}")
    if mask is None:
        mask = brain_mask(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[1:]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[1:]}")
    lo_p, hi_p = (float(p) for p in percentiles)
    if method == "percentile" and not 0 <= lo_p < hi_p <= 100:
        raise BratsError(f"percentiles must satisfy 0 <= low < high <= 100, got {list(percentiles)}")
    out = np.zeros(image.shape, dtype=np.float32)
    if not mask.any():
        return out
    for c in range(image.shape[0]):
        v = image[c][mask].astype(np.float64)
        if method == "zscore":
            mean = v.mean()
            std = v.std()
            w = (v - mean) / std if std > 0 else np.zeros_like(v)
        else:
            lo, hi = np.percentile(v, [lo_p, hi_p])
            w = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(v)
        out[c][mask] = w.astype(np.float32)
    return out


@dataclass(frozen=True)
class Normalization:
    """How a case's intensities are normalised: one meaning everywhere (store attributes, checkpoint, predict).

    Attributes:
        method: ``zscore`` or ``percentile``.
        percentiles: ``(low, high)`` for ``percentile``.
        dtype: storage dtype of the normalised patches; prediction rounds through it (``float16`` by default)
            so the model sees the values it was trained on.
        mask: the brain mask the statistics use (informative; always "any modality != 0").
        scope: the statistics' scope (informative; always per case and per modality).
        bias_correction: ``none`` or ``n4`` (:mod:`brats.bias`), applied before the statistics; a record
            without the key (a store or checkpoint made before it existed) means ``none``.
        downsample: the in-plane block size of the model's grid (:mod:`brats.resolution`; 1 = the case's own
            grid); applied after :meth:`apply`, by extraction and prediction. A record without it means 1.
        asymmetry: whether the model's input adds a left-right asymmetry channel per modality
            (:mod:`brats.asymmetry`); applied after :meth:`apply` and before the pooling. A record without it
            means False.
    """

    method: str = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)
    dtype: str = "float16"
    mask: str = "any modality != 0"
    scope: str = "per case, per modality"
    bias_correction: str = "none"
    downsample: int = 1
    asymmetry: bool = False

    @classmethod
    def from_config(cls, preprocess: Any) -> Normalization:
        """From a config's ``preprocess`` section (``normalization``, ``percentiles``, ``dtype``,
        ``bias_correction``, ``downsample``, ``asymmetry``)."""
        lo, hi = (float(p) for p in preprocess.percentiles)
        bias = str(getattr(preprocess, "bias_correction", "none"))
        factor = int(getattr(preprocess, "downsample", 1))
        return cls(
            str(preprocess.normalization),
            (lo, hi),
            str(preprocess.dtype),
            bias_correction=bias,
            downsample=factor,
            asymmetry=bool(getattr(preprocess, "asymmetry", False)),
        )

    @classmethod
    def from_dict(cls, record: Any, where: str = "normalization") -> Normalization:
        """From :meth:`to_dict`'s output (a patch store's or checkpoint's record).

        Raises:
            BratsError: the record is missing or lacks ``method``.
        """
        if not isinstance(record, dict) or "method" not in record:
            raise BratsError(
                f"{where}: no normalisation record (expected a dict with 'method'), got {record!r}"
            )
        lo, hi = (float(p) for p in record.get("percentiles", (0.5, 99.5)))
        bias = str(record.get("bias_correction", "none"))
        if bias not in BIAS_METHODS:
            raise BratsError(
                f"{where}: unknown bias_correction {bias!r}; expected one of {', '.join(BIAS_METHODS)}"
            )
        factor = record.get("downsample", 1)
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise BratsError(f"{where}: downsample must be a positive integer, got {factor!r}")
        asym = record.get("asymmetry", False)
        if not isinstance(asym, bool):
            raise BratsError(f"{where}: asymmetry must be true or false, got {asym!r}")
        dtype = str(record.get("dtype", "float16"))
        return cls(
            str(record["method"]), (lo, hi), dtype, bias_correction=bias, downsample=factor, asymmetry=asym
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "percentiles": [float(p) for p in self.percentiles],
            "mask": self.mask,
            "scope": self.scope,
            "dtype": self.dtype,
            "bias_correction": self.bias_correction,
            "downsample": self.downsample,
            "asymmetry": self.asymmetry,
        }

    def conflicts(self, other: Normalization) -> list[str]:
        """``key: a vs b`` for every setting that differs (percentiles only matter for ``percentile``)."""
        out = [f"method {self.method} vs {other.method}"] if self.method != other.method else []
        if self.method == other.method == "percentile" and self.percentiles != other.percentiles:
            out.append(f"percentiles {list(self.percentiles)} vs {list(other.percentiles)}")
        if self.dtype != other.dtype:
            out.append(f"dtype {self.dtype} vs {other.dtype}")
        if self.bias_correction != other.bias_correction:
            out.append(f"bias_correction {self.bias_correction} vs {other.bias_correction}")
        if self.downsample != other.downsample:
            out.append(f"downsample {self.downsample} vs {other.downsample}")
        if self.asymmetry != other.asymmetry:
            out.append(f"asymmetry {self.asymmetry} vs {other.asymmetry}")
        return out

    def apply(self, image: np.ndarray) -> np.ndarray:
        """:func:`brats.bias.correct_bias` (unless ``none``), :func:`normalize` ``(C, X, Y, Z)``, then rounded
        through :attr:`dtype`; float32 out."""
        if self.bias_correction != "none":
            image = correct_bias(image, self.bias_correction)
        out = normalize(image, self.method, self.percentiles)
        return out.astype(self.dtype, copy=False).astype(np.float32, copy=False)


def normalize_with(image: np.ndarray, preprocess: Any) -> np.ndarray:
    """:func:`normalize` with the settings of a config's ``preprocess`` section (a dataclass or a dict)."""
    get = preprocess.get if isinstance(preprocess, dict) else lambda k, d=None: getattr(preprocess, k, d)
    return normalize(
        image, method=get("normalization", "zscore"), percentiles=get("percentiles", (0.5, 99.5))
    )


def bounding_box(mask: np.ndarray, margin: int | tuple[int, ...] = 0) -> tuple[slice, ...]:
    """The smallest box holding every True voxel of ``mask``, grown by ``margin`` and clipped to the array.

    Returns:
        One ``slice`` per axis of ``mask``; an empty mask gives the whole array.

    Example:
        >>> m = np.zeros((5, 6), bool); m[1:3, 2] = True
        >>> bounding_box(m)
        (slice(1, 3, None), slice(2, 3, None))
    """
    mask = np.asarray(mask, dtype=bool)
    margins = (margin,) * mask.ndim if isinstance(margin, int) else tuple(margin)
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        lo = max(int(hit[0]) - margins[axis], 0)
        hi = min(int(hit[-1]) + 1 + margins[axis], mask.shape[axis])
        box.append(slice(lo, hi))
    return tuple(box)


def crop(array: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``array`` cropped to ``box`` on its **last** ``len(box)`` axes (so ``(C, X, Y, Z)`` takes a 3D box)."""
    array = np.asarray(array)
    lead = (slice(None),) * (array.ndim - len(box))
    return array[lead + tuple(box)]


def pad_to(array: np.ndarray, shape: tuple[int, ...], value: float = 0) -> np.ndarray:
    """Pad the last ``len(shape)`` axes of ``array`` at their end up to at least ``shape`` (no cropping)."""
    array = np.asarray(array)
    k = len(shape)
    spatial = array.shape[array.ndim - k :]
    extra = [max(int(t) - int(s), 0) for s, t in zip(spatial, shape)]
    if not any(extra):
        return array
    widths = [(0, 0)] * (array.ndim - k) + [(0, e) for e in extra]
    return np.pad(array, widths, mode="constant", constant_values=value)


def nonzero_mask(tensor: torch.Tensor) -> torch.Tensor:
    """The brain mask used for rescaling statistics: voxels that are not exactly 0 (bool, same shape)."""
    return tensor != 0


def _order_statistics(
    flat: torch.Tensor, mask: torch.Tensor, n: torch.Tensor, low: list[torch.Tensor], high: list[torch.Tensor]
) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """``f(idx, from_low)``: per row of ``flat``, the value of ascending rank ``idx`` among its ``mask`` values.

    Percentiles near 0 and 100 need only the few smallest (ranks in ``low``) and largest (ranks in ``high``)
    values: two ``topk`` calls give them, much faster than sorting whole rows; when many are needed a full
    sort is used. Either way the values are exactly those of ``sort``.
    """
    k_low = max((int(w.max()) + 1 for w in low), default=0)
    k_high = max((int((n - 1 - w).clamp(min=0).max()) + 1 for w in high), default=0)
    inf = torch.full_like(flat, float("inf"))
    if k_low + k_high > flat.shape[1] // 8:
        ordered = torch.where(mask, flat, inf).sort(dim=1).values
        return lambda idx, from_low: ordered.gather(1, idx[:, None])[:, 0]
    asc = torch.where(mask, flat, inf).topk(max(k_low, 1), 1, largest=False).values
    desc = torch.where(mask, flat, -inf).topk(max(k_high, 1), 1).values

    def at(idx: torch.Tensor, from_low: bool) -> torch.Tensor:
        if from_low:
            return asc.gather(1, idx[:, None])[:, 0]
        return desc.gather(1, (n - 1 - idx).clamp(min=0)[:, None])[:, 0]

    return at


def rescale_batch(
    x: torch.Tensor,
    out_min_max: Sequence[float] = (-1.0, 1.0),
    percentiles: Sequence[float] = (0.5, 99.5),
    channels: int | None = None,
) -> torch.Tensor:
    """Batched :class:`ChannelwiseRescaleIntensity`: rescale every sample and channel of ``x`` on its own.

    For each ``(b, c)``: the percentiles (linear interpolation, as ``numpy.percentile``) of the non-zero
    voxels are computed, the whole channel is clipped to them and mapped linearly onto ``out_min_max``. A
    channel with no non-zero voxel, or with equal percentiles, is returned unchanged.

    Args:
        x: ``(B, C, *spatial)`` floating tensor (any device).
        out_min_max: output range ``(min, max)``.
        percentiles: input percentiles in [0, 100] mapped to ``out_min_max``.
        channels: rescale only the first ``channels`` channels; the rest are returned unchanged (the
            asymmetry channels, :mod:`brats.asymmetry`). None: all.

    Returns:
        Tensor of the shape and dtype of ``x`` (computed in float32).
    """
    if x.ndim < 3:
        raise BratsError(f"rescale_batch expects (B, C, *spatial), got shape {tuple(x.shape)}")
    if channels is not None and int(channels) < x.shape[1]:
        head = rescale_batch(x[:, : int(channels)], out_min_max, percentiles)
        return torch.cat([head, x[:, int(channels) :]], dim=1)
    out_min, out_max = (float(v) for v in out_min_max)
    p_lo, p_hi = (float(v) / 100.0 for v in percentiles)
    flat = x.reshape(x.shape[0] * x.shape[1], -1).float()
    mask = nonzero_mask(flat)
    n = mask.sum(dim=1)
    last = (n - 1).clamp(min=0)
    ranks = {}
    for q in (p_lo, p_hi):
        pos = last.to(torch.float64) * q
        i0 = pos.floor().long()
        ranks[q] = (i0, torch.minimum(i0 + 1, last), (pos - i0).float(), q <= 0.5)
    low = [r for q in (p_lo, p_hi) if ranks[q][3] for r in ranks[q][:2]]
    high = [r for q in (p_lo, p_hi) if not ranks[q][3] for r in ranks[q][:2]]
    sorted_at = _order_statistics(flat, mask, n, low, high)

    def quantile(q: float) -> torch.Tensor:
        i0, i1, frac, from_low = ranks[q]
        a, b = sorted_at(i0, from_low), sorted_at(i1, from_low)
        a = torch.where(n > 0, a, torch.zeros_like(a))
        b = torch.where(n > 0, b, torch.zeros_like(b))
        return a + (b - a) * frac

    lo, hi = quantile(p_lo), quantile(p_hi)
    clipped = torch.maximum(torch.minimum(flat, hi[:, None]), lo[:, None])
    in_min = clipped.amin(dim=1, keepdim=True)
    in_range = clipped.amax(dim=1, keepdim=True) - in_min
    valid = (n[:, None] > 0) & (in_range > 0)
    scaled = (clipped - in_min) / torch.where(valid, in_range, torch.ones_like(in_range))
    scaled = scaled * (out_max - out_min) + out_min
    out = torch.where(valid, scaled, flat)
    return out.reshape(x.shape).to(x.dtype)
