"""Thick slices per channel: each MRI sequence of a 2D patch as if acquired with thick slices along one axis.

Clinical protocols acquire some sequences with 3-7 mm slices and others at 1 mm, each in its own direction. The
synthetic generator renders this per sequence (:func:`brats.synth.contrast.thick_slices`, with the profile's
``p_thick`` and ``slice_mm``), and its stress profile uses thicker slices (5-7 mm) than the training one (2-5 mm).
TorchIO's ``RandomAnisotropy`` (``augment.anisotropy``) resamples all channels of a patch along one axis together.

:class:`RandomChannelThickSlices` draws, for each channel on its own with probability ``channel_p``, an in-plane
axis and a slice thickness ``t`` (voxels, uniform in ``thickness``), and applies the generator's slice model to
that channel: a Gaussian slice profile of FWHM ``t``, sampled every ``t`` voxels, linear interpolation back to the
grid. It works about the channel's brain minimum (the stand-in for zero signal in z-scored data, as
:class:`~brats.train.channel_bias.RandomChannelBias` does): voxels outside the brain (0) count as no signal and
stay 0. The label map is untouched, since the anatomy is where it was. It acts on 2D patches ``(C, H, W, 1)``.

Inside :class:`~brats.train.mirror_pairs.MirrorPairs` (``augment.recompute_asymmetry``) a channel is a modality
laid beside its mirror image with ``pair_gap`` zero columns between them; each side is then resampled on its own,
with the same draws, so that neither is blurred into the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchio as tio
from threadpoolctl import threadpool_limits

from brats.synth.contrast import thick_slices

__all__ = ["RandomChannelThickSlices"]


class RandomChannelThickSlices(tio.Transform):
    """Resample channels of a 2D patch as thick slices, each channel drawn on its own (module doc).

    Args:
        thickness: ``(min, max)`` slice thickness in voxels, ``1 <= min <= max``.
        channel_p: probability that a channel is resampled.
        axes: the in-plane axes a channel's slices may lie along (0: X, 1: Y), one drawn uniformly.
        pair_gap: 0, or the zero columns between a modality and its mirror image (module doc).
        **kwargs: TorchIO's (``p``: probability of considering a patch at all).
    """

    def __init__(
        self,
        thickness: Sequence[float] = (2.0, 7.0),
        channel_p: float = 0.25,
        axes: Sequence[int] = (0, 1),
        pair_gap: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        lo, hi = (list(thickness) + [None, None])[:2]
        if len(list(thickness)) != 2 or not 1 <= float(lo) <= float(hi):  # type: ignore[arg-type]
            raise ValueError(f"thickness must be [min, max] with 1 <= min <= max, got {list(thickness)}")
        if not 0 <= float(channel_p) <= 1:
            raise ValueError(f"p must be in [0, 1], got {channel_p}")
        if not axes or any(int(a) not in (0, 1) for a in axes):
            raise ValueError(f"axes must be a non-empty list of 0 (X) and 1 (Y), got {list(axes)}")
        if int(pair_gap) < 0:
            raise ValueError(f"pair_gap must be >= 0, got {pair_gap}")
        self.thickness = (float(lo), float(hi))  # type: ignore[arg-type]
        self.channel_p = float(channel_p)
        self.axes = tuple(int(a) for a in axes)
        self.pair_gap = int(pair_gap)

    def _sides(self, width: int) -> list[slice]:
        if not self.pair_gap:
            return [slice(0, width)]
        w = (width - self.pair_gap) // 2
        if w < 1 or 2 * w + self.pair_gap != width:
            raise ValueError(f"a mirror pair needs width 2 W + {self.pair_gap}, got {width}")
        return [slice(0, w), slice(w + self.pair_gap, width)]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = subject["image"]
        data = image.data.clone().float()  # type: ignore[attr-defined]
        if data.ndim != 4 or data.shape[-1] != 1:
            raise ValueError(
                f"RandomChannelThickSlices works on 2D patches (C, H, W, 1), got shape {tuple(data.shape)}"
            )
        sides = self._sides(int(data.shape[2]))
        lo, hi = self.thickness
        array = data.numpy()  # shares memory with data
        draws = []
        for c in range(data.shape[0]):
            if float(torch.rand(1)) < self.channel_p:
                axis = self.axes[int(torch.randint(len(self.axes), (1,)))]
                draws.append((c, axis, lo + (hi - lo) * float(torch.rand(1))))
        if draws:
            # one BLAS thread: the slice model's small matrix product would otherwise wake the BLAS pool, whose
            # spinning threads take CPU from the training process beside the loader (brats/synth/cohort.py too)
            with threadpool_limits(limits=1, user_api="blas"):
                for c, axis, t in draws:
                    for side in sides:
                        x = array[c, :, side, 0]  # a view: written in place
                        brain = x != 0
                        if not brain.any():
                            continue
                        base = x[brain].min()
                        thick = thick_slices(np.where(brain, x - base, 0).astype(np.float32), axis, t, 1.0)
                        x[...] = np.where(brain, base + thick, x)
        image.set_data(data)  # type: ignore[attr-defined]
        return subject
