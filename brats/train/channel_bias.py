"""Random bias field per channel: a smooth multiplicative gain drawn for each MRI sequence on its own.

Receive-coil inhomogeneity makes each sequence brighter in one part of the brain and darker in another, and the
field differs between sequences. A tumour model that reads absolute brightness then calls a bright corner of
FLAIR edema and misses faint edema in a dark one: measured on the generator's ``bias_std`` setting,
``bench/stress_factors.py`` found the bias field the single most damaging stress factor (docs/training.md).
TorchIO's ``RandomBiasField`` draws one field for all channels, and in this pipeline it runs after the rescaling
to ``[-1, 1]``, where a multiplicative field scales values around mid-grey instead of around zero signal.

:class:`RandomChannelBias` runs before the rescaling. For each channel it draws a log-amplitude
``s ~ U(0, max_std)`` and a field ``f``: ``grid x grid`` standard normal values, bicubic-interpolated across the
patch (corners to corners) and scaled to unit standard deviation over the patch, so ``s`` is the standard
deviation of the log gain inside the patch. The channel's brain voxels (non-zero) are multiplied by ``exp(s f)``
about the channel's brain minimum (the stand-in for zero signal in z-scored data, as for
:class:`~brats.train.intensity_curve.ChannelwiseRandomGamma`): ``x' = lo + (x - lo) exp(s f)``. Zero voxels stay 0 and
the label map is untouched. It acts on 2D patches ``(C, H, W, 1)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchio as tio

__all__ = ["RandomChannelBias", "smooth_field"]


def smooth_field(shape: tuple[int, int], grid: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A smooth random field of ``shape`` with zero mean and unit standard deviation: ``grid x grid`` standard
    normal values interpolated bicubically (corner to corner). A constant field (``grid`` 1) gives zeros."""
    coarse = torch.randn((1, 1, grid, grid), generator=generator)
    field = F.interpolate(coarse, size=shape, mode="bicubic", align_corners=True)[0, 0]
    field = field - field.mean()
    std = field.std()
    return field / std if float(std) > 1e-6 else torch.zeros(shape)


class RandomChannelBias(tio.Transform):
    """Multiply each channel's brain voxels by its own smooth random gain (module doc).

    Args:
        max_std: largest standard deviation of the log gain inside a patch (0: no change).
        grid: control points per side of the field (2: a tilt-like gradient, larger: more local variation).
        **kwargs: TorchIO's (``p``: probability of applying it to a patch).
    """

    def __init__(self, max_std: float, grid: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        if not float(max_std) >= 0:
            raise ValueError(f"max_std must be >= 0, got {max_std}")
        if int(grid) != grid or grid < 2:
            raise ValueError(f"grid must be an integer >= 2, got {grid}")
        self.max_std = float(max_std)
        self.grid = int(grid)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = subject["image"]
        data = image.data.clone().float()  # type: ignore[attr-defined]
        if data.shape[-1] != 1:
            raise ValueError(
                f"RandomChannelBias works on 2D patches (C, H, W, 1), got shape {tuple(data.shape)}"
            )
        plane = (int(data.shape[1]), int(data.shape[2]))
        for c in range(data.shape[0]):
            brain = data[c, ..., 0] != 0
            if not brain.any():
                continue
            s = self.max_std * float(torch.rand(1))
            gain = torch.exp(s * smooth_field(plane, self.grid))
            x = data[c, ..., 0]
            lo = x[brain].min()
            data[c, ..., 0] = torch.where(brain, lo + (x - lo) * gain, x)
        image.set_data(data)  # type: ignore[attr-defined]
        return subject
