"""Random lesion contrast: the tumour drawn fainter (or as bright) against the normal brain around it, per channel.

Real tumours range from barely visible to very bright against the brain around them (faint FLAIR edema, weakly
enhancing rims). Intensity transforms of the whole patch (gamma, bias field, noise) keep the ratio of tumour to
brain; this one changes it. It uses the label map, so it is a training-time transform only.

Each channel ``c`` of a patch that holds tumour (source label > 0) draws a scale ``s_c ~ U(min_scale, 1)`` and
pulls the tumour's intensities towards the median ``m_c`` of the brain outside the tumour:

    x' = x - (1 - s_c) * w * (x - m_c)

``w`` is the tumour mask smoothed by a Gaussian of ``sigma`` voxels (in-plane for a 2D patch), so the edge fades
over about a voxel, as partial volume does, instead of leaving a step at the label boundary for the model to
learn. Voxels outside the brain (exactly 0) stay 0, the label map is untouched, and a channel whose patch holds
fewer than :data:`MIN_BRAIN_VOXELS` brain voxels outside the tumour is left as it is (no reliable ``m_c``).

With ``labels`` only the voxels of those source labels fade (for example the edema alone): ``w`` is the smoothed
mask of those labels, set to 0 on the rest of the tumour, so the core keeps its contrast exactly; ``m_c`` is
still taken outside the whole tumour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchio as tio
from scipy import ndimage

__all__ = ["RandomLesionContrast", "MIN_BRAIN_VOXELS"]

#: Fewest brain voxels outside the tumour from which a channel's reference median is taken.
MIN_BRAIN_VOXELS = 64


class RandomLesionContrast(tio.Transform):
    """Scale the tumour-to-brain contrast of each channel by a random factor in ``[min_scale, 1]`` (module doc).

    Args:
        min_scale: smallest contrast factor (0: the tumour takes the brain's median; 1: no change).
        sigma: standard deviation, in voxels, of the Gaussian that smooths the tumour mask into the weight ``w``.
        labels: source labels whose voxels fade; None: every tumour label (> 0).
        **kwargs: TorchIO's (``p``: probability of applying it to a patch).
    """

    def __init__(self, min_scale: float, sigma: float, labels: tuple[int, ...] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if labels is not None and (not labels or any(int(v) <= 0 for v in labels)):
            raise ValueError(f"labels must be tumour labels (> 0), got {labels}")
        self.labels = None if labels is None else tuple(int(v) for v in labels)
        if not 0.0 <= float(min_scale) <= 1.0:
            raise ValueError(f"min_scale must be in [0, 1], got {min_scale}")
        if float(sigma) < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.min_scale = float(min_scale)
        self.sigma = float(sigma)

    def weight(self, tumour: np.ndarray) -> np.ndarray:
        """The smoothed tumour mask ``w`` (float32, same shape as ``tumour``; no smoothing along a size-1 axis)."""
        w = tumour.astype(np.float32)
        if self.sigma > 0:
            sigmas = [self.sigma if n > 1 else 0.0 for n in w.shape]
            w = ndimage.gaussian_filter(w, sigmas, mode="nearest", truncate=3.0)
        return w

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        label = subject["label"].data[0].numpy()  # type: ignore[attr-defined]
        tumour = label > 0
        faded = tumour if self.labels is None else np.isin(label, self.labels)
        if not faded.any():
            return subject
        image = subject["image"]
        data = image.data.clone().float()  # type: ignore[attr-defined]
        weight = self.weight(faded)
        if self.labels is not None:
            weight[tumour & ~faded] = 0.0
        w = torch.from_numpy(weight)
        outside = torch.from_numpy(~tumour)
        for c in range(data.shape[0]):
            brain = data[c] != 0
            normal = data[c][brain & outside]
            if normal.numel() < MIN_BRAIN_VOXELS:
                continue
            scale = self.min_scale + (1.0 - self.min_scale) * float(torch.rand(1))
            ref = normal.median()
            pulled = data[c] - (1.0 - scale) * w * (data[c] - ref)
            data[c] = torch.where(brain, pulled, data[c])
        image.set_data(data)  # type: ignore[attr-defined]
        return subject
