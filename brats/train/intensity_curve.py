"""Random monotone intensity curves per channel: a global gamma, and a piecewise-linear curve with random local
contrast (``augment.gamma``, ``augment.intensity_curve``).

A scanner maps tissue to intensity by a curve that z-scoring cannot undo: two sites give white matter, grey matter
and edema different spacings on the same sequence, so edema that stands well clear of grey matter on one scanner is
only a few percent brighter on another. :class:`ChannelwiseRandomGamma` bends a channel by one power law.
:class:`RandomIntensityCurve` changes the contrast locally, between intensity levels (the SynthSeg idea of random
contrasts, kept monotone so that what is brighter stays brighter): for each channel it takes its brain voxels
(non-zero), places ``knots`` inner knots at evenly spaced quantiles between their minimum and maximum, multiplies
each of the ``knots + 1`` segments' widths by ``exp(s e)``, ``e ~ N(0, 1)`` per segment, ``s ~ U(0, max_std)`` per
channel, scales the widths back to the original range (the minimum and maximum stay put, so the rescaling that
follows is unchanged) and maps the voxels through the new piecewise-linear curve. Zero voxels stay 0; the label map
is untouched. Both act on any ``(C, ...)`` image; before the rescaling, as the other intensity transforms.
"""

from __future__ import annotations

from typing import Any

import torch
import torchio as tio

__all__ = ["ChannelwiseRandomGamma", "RandomIntensityCurve", "curve_knots", "apply_curve"]


class ChannelwiseRandomGamma(tio.Transform):
    """Each channel: map its brain voxels (non-zero) to [0, 1] by their min and max, raise to a random gamma
    ``exp(u)``, ``u ~ U(-log_gamma, log_gamma)`` drawn per channel, and map back. Zero voxels stay 0; the label
    map is untouched. Models a scanner's non-linear intensity scale, which z-scoring cannot undo."""

    def __init__(self, log_gamma: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.log_gamma = float(log_gamma)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = subject["image"]
        data = image.data.clone().float()  # type: ignore[attr-defined]
        for c in range(data.shape[0]):
            mask = data[c] != 0
            if int(mask.sum()) < 2:
                continue
            v = data[c][mask]
            lo, hi = v.min(), v.max()
            if float(hi - lo) <= 0:
                continue
            gamma = float(torch.exp((torch.rand(1) * 2 - 1) * self.log_gamma))
            data[c][mask] = ((v - lo) / (hi - lo)) ** gamma * (hi - lo) + lo
        image.set_data(data)  # type: ignore[attr-defined]
        return subject


def curve_knots(values: torch.Tensor, knots: int) -> torch.Tensor | None:
    """``knots + 2`` increasing input knots: the minimum, ``knots`` evenly spaced quantiles and the maximum of
    ``values``; evenly spaced between minimum and maximum where quantiles coincide. None for a constant input.

    Example:
        >>> curve_knots(torch.arange(9.0), 3).tolist()
        [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    lo, hi = values.min(), values.max()
    if not float(hi - lo) > 0:
        return None
    q = torch.linspace(0, 1, knots + 2, dtype=values.dtype)
    t = torch.quantile(values, q)
    if bool((t[1:] <= t[:-1]).any()):
        t = lo + q * (hi - lo)
    return t


def apply_curve(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The piecewise-linear curve through ``(t_k, y_k)`` at ``x`` (``t`` increasing; extended linearly beyond the
    end segments).

    Example:
        >>> apply_curve(torch.tensor([0.0, 1.0, 1.5, 3.0]), torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.0, 2.0, 3.0]))
        tensor([0.0000, 2.0000, 2.2500, 3.0000])
    """
    i = torch.bucketize(x, t[1:-1].contiguous())
    slope = (y[1:] - y[:-1]) / (t[1:] - t[:-1])
    return y[i] + (x - t[i]) * slope[i]


class RandomIntensityCurve(tio.Transform):
    """Map each channel's brain voxels through a random monotone piecewise-linear curve (module doc).

    Args:
        max_std: largest standard deviation of the log change of a segment's contrast (0: no change).
        knots: inner knots (quantiles of the channel's brain intensities); ``knots + 1`` segments.
        **kwargs: TorchIO's (``p``: probability of applying it to a patch).
    """

    def __init__(self, max_std: float, knots: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        if not float(max_std) >= 0:
            raise ValueError(f"max_std must be >= 0, got {max_std}")
        if int(knots) != knots or knots < 1:
            raise ValueError(f"knots must be an integer >= 1, got {knots}")
        self.max_std = float(max_std)
        self.knots = int(knots)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = subject["image"]
        data = image.data.clone().float()  # type: ignore[attr-defined]
        for c in range(data.shape[0]):
            brain = data[c] != 0
            if int(brain.sum()) < 2:
                continue
            v = data[c][brain]
            t = curve_knots(v, self.knots)
            if t is None:
                continue
            s = self.max_std * float(torch.rand(1))
            widths = (t[1:] - t[:-1]) * torch.exp(s * torch.randn(self.knots + 1))
            widths = widths * (t[-1] - t[0]) / widths.sum()
            y = torch.cat([t[:1], t[0] + torch.cumsum(widths, 0)])
            y[-1] = t[-1]  # exactly the maximum, whatever the rounding
            data[c][brain] = apply_curve(v, t, y)
        image.set_data(data)  # type: ignore[attr-defined]
        return subject
