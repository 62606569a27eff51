"""Intensity transforms that move a modality and its asymmetry channel together (``augment.recompute_asymmetry``).

With ``preprocess.asymmetry`` a patch holds ``R`` modality channels ``I`` and then ``R`` asymmetry channels
``A = I - M`` (:mod:`brats.asymmetry`; ``M`` is the modality's mirror image, ``A`` is 0 where ``I`` or ``M`` is
outside the brain). A transform that acts on every channel on its own treats ``A`` as one more image: the
per-channel bias field of :class:`~brats.train.channel_bias.RandomChannelBias` scales it about its minimum, so a
symmetric brain (``A = 0``) no longer reads 0, while a real bias field only changes how strongly the two sides
differ. :class:`MirrorPairs` instead undoes the difference, ``M = I - A`` where any ``A`` is non-zero, lays ``I`` and ``M``
side by side in one wider image (``[I | gap | M]``, ``gap`` columns of zeros so that smoothing does not cross
from one to the other), runs the wrapped transforms on it, and computes ``A' = I' - M'`` again on the same
voxels:

* a per-channel bias field draws one smooth field across ``I`` and ``M``, so the two sides get different gains,
  as a receive coil gives them;
* a per-channel gamma or intensity curve maps ``I`` and ``M`` by the same curve (one channel of the wide image);
* lesion contrast fades the labelled tumour in ``I`` only; ``M`` carries label 0 (it shows the other side).

Unaugmented, ``A'`` equals ``A`` up to float32 rounding. The label map is returned unchanged. It acts on 2D
patches ``(2R, H, W, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchio as tio

__all__ = ["MirrorPairs", "GAP"]

#: Zero columns between a patch and its mirror image in the wide image (more than 3 sigma of lesion contrast's
#: default smoothing).
GAP = 8


class MirrorPairs(tio.Transform):
    """Run ``transforms`` on each modality and its mirror image, then recompute the asymmetry channels (module doc).

    Args:
        transforms: TorchIO transforms of a subject with ``image`` ``(R, H, W', 1)`` and ``label`` ``(1, H, W',
            1)``; they must keep zero voxels at zero and keep the shape.
        channels: ``R``, the modality channels; the next ``R`` channels are their asymmetries, in the same order.
        **kwargs: TorchIO's.
    """

    def __init__(self, transforms: Sequence[tio.Transform], channels: int, **kwargs: Any):
        super().__init__(**kwargs)
        if int(channels) < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.transforms = list(transforms)
        self.channels = int(channels)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if not self.transforms:
            return subject
        image = subject["image"]
        data = image.data.float()  # type: ignore[attr-defined]
        r = self.channels
        if data.shape[0] != 2 * r or data.shape[-1] != 1:
            raise ValueError(
                f"MirrorPairs expects {2 * r} channels (modalities, then asymmetries) of a 2D patch (C, H, W, 1), "
                f"got shape {tuple(data.shape)}"
            )
        mod, asym = data[:r], data[r:]
        both = (asym != 0).any(dim=0, keepdim=True)  # both sides brain (float16 can make one difference 0)
        mirrored = torch.where(both, mod - asym, torch.zeros_like(mod))
        h, w = int(data.shape[1]), int(data.shape[2])
        gap = torch.zeros((r, h, GAP, 1))
        wide = torch.cat([mod, gap, mirrored], dim=2)
        label = subject["label"].data  # type: ignore[attr-defined]
        wide_label = torch.cat([label, torch.zeros((1, h, GAP + w, 1), dtype=label.dtype)], dim=2)
        inner = tio.Subject(image=tio.ScalarImage(tensor=wide), label=tio.LabelMap(tensor=wide_label))
        for t in self.transforms:
            inner = t(inner)
        out = inner["image"].data.float()  # type: ignore[attr-defined]
        mod2, mirrored2 = out[:, :, :w], out[:, :, w + GAP :]
        asym2 = torch.where(both, mod2 - mirrored2, torch.zeros_like(mod2))
        image.set_data(torch.cat([mod2, asym2], dim=0))  # type: ignore[attr-defined]
        return subject
