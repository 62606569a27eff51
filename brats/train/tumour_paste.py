"""Tumour copy-paste (``augment.tumour_paste``): a tumour from one training patch pasted into a tumour-free one.

The TumorCP idea (Yang et al., MICCAI 2021): the model sees tumours in brains and places they did not grow in,
so it has to recognise a tumour by what it looks like, not by where it is or by the rest of the brain it came
with. :class:`TumourPaste` acts on the raw store patches, before the augmentation pipeline: a tumour-free
training patch is, with probability ``p``, given the tumour of a random tumour patch of the same store (its
label map's tumour voxels, flipped at random along each in-plane axis), blended in with a soft edge:

    alpha = Gaussian(tumour mask, sigma) inside the destination's brain
    I'   = I + alpha (I_src - I)            each modality channel (2.5D neighbours too), z-scored as stored
    A'   = A + (I' - I)                      each asymmetry channel, where the mirror side is brain (A != 0)
    label' = the source's tumour labels where the mask is inside the destination's brain, else 0

The asymmetry channels see the pasted tumour as a one-sided change (the mirror image is the destination's own),
as they see a real one. The augmentation pipeline then warps, biases and rescales the result as any patch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from brats.asymmetry import rescaled_channels
from brats.config import Config
from brats.train.augment import AugmentError
from brats.train.sampling import voxel_counts

__all__ = ["TumourPaste", "tumour_rows", "build_paste"]

Reader = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def tumour_rows(path: str | Path, min_voxels: int = 16) -> np.ndarray:
    """The store rows whose label map holds at least ``min_voxels`` tumour voxels (any label > 0)."""
    return np.flatnonzero(voxel_counts(path, lambda labels: labels > 0) >= min_voxels)


class TumourPaste:
    """Paste a random store tumour into tumour-free samples (module doc). Picklable.

    Args:
        rows: store rows to take tumours from (:func:`tumour_rows`).
        p: probability that a tumour-free sample gets one.
        sigma: the Gaussian smoothing of the pasted mask's edge, in voxels (0: a hard edge).
        channels: the leading modality channels, when asymmetry channels follow them (as many again); None:
            every channel is a modality channel.
        min_voxels: a source is passed over when fewer of its tumour voxels would land in the destination's
            brain; after ``tries`` such sources the sample is left as it is.
    """

    def __init__(
        self,
        rows: np.ndarray,
        p: float,
        sigma: float = 1.0,
        channels: int | None = None,
        min_voxels: int = 16,
        tries: int = 4,
    ):
        if not 0 <= float(p) <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not float(sigma) >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.rows = np.asarray(rows, dtype=np.int64)
        self.p, self.sigma = float(p), float(sigma)
        self.channels = None if channels is None else int(channels)
        self.min_voxels, self.tries = int(min_voxels), int(tries)

    def __call__(self, sample: dict[str, Any], read: Reader) -> dict[str, Any]:
        label = sample["label"]
        if len(self.rows) == 0 or bool((label != 0).any()) or float(torch.rand(1)) >= self.p:
            return sample
        image = sample["image"]
        r = self.channels or int(image.shape[0])
        brain = (image[:r] != 0).any(dim=0)
        for _ in range(self.tries):  # a source whose tumour falls outside this patch's brain: draw another
            src_image, src_label = read(int(self.rows[int(torch.randint(len(self.rows), (1,)))]))
            for axis in (1, 2):
                if float(torch.rand(1)) < 0.5:
                    src_image, src_label = src_image.flip(axis), src_label.flip(axis - 1)
            mask = (src_label != 0) & brain
            if int(mask.sum()) >= self.min_voxels:
                break
        else:
            return sample
        soft = (src_label != 0).numpy().astype(np.float32)
        if self.sigma > 0:
            soft = ndimage.gaussian_filter(soft, self.sigma)
        alpha = torch.from_numpy(soft) * brain
        out = image.clone()
        out[:r] = image[:r] + alpha * (src_image[:r] - image[:r])
        if self.channels is not None and image.shape[0] >= 2 * r:
            asym = image[r : 2 * r]
            both = (asym != 0).any(dim=0)
            out[r : 2 * r] = torch.where(both, asym + (out[:r] - image[:r]), asym)
        result = dict(sample)
        result["image"] = out
        result["label"] = torch.where(mask, src_label, torch.zeros_like(src_label))
        return result


def build_paste(cfg: Config, store: str | Path) -> TumourPaste | None:
    """The training set's paste of ``cfg.augment.tumour_paste`` on ``store`` (None when off or augmentation is off).

    Raises:
        AugmentError: 3D patches, or a setting out of range.
    """
    tp = cfg.augment.tumour_paste
    if not (tp.enabled and cfg.augment.enabled):
        return None
    if cfg.patches.dim != 2:
        raise AugmentError(
            f"augment.tumour_paste is for 2D patches only; disable it for patches.dim: {cfg.patches.dim}"
        )
    channels = rescaled_channels(
        len(cfg.data.modalities), cfg.preprocess.asymmetry, cfg.patches.context_slices
    )
    try:
        return TumourPaste(tumour_rows(store), tp.p, tp.sigma, channels)
    except ValueError as err:
        raise AugmentError(f"augment.tumour_paste.{err}") from None
