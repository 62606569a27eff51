"""Which training patches the sampler draws more often: ``train.core_oversample``.

At the demo's budget on a CPU without bf16 (about 8 epochs) whether the model learns the tumour core (NCR and
ET) in time is a matter of luck: only about 4 in 10 training patches hold any core voxel, against 2 in 3 for
edema. :func:`core_weights` gives each patch of a store a sampling weight, ``core_oversample`` for patches
holding a voxel of a tumour-core class and 1 for the others; :func:`brats.train.runtime.train_loader` then draws
patches with replacement in proportion to it (torch's ``WeightedRandomSampler``). The patch store itself is
unchanged, so the weight can be changed without extracting again.

Example::

    w = core_weights("runs/demo/patches/train.h5", get_scheme("brats2021"), 2.0)   # (n_patches,) float64
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from brats.extract.store import open_store
from brats.labels import REGION_CLASSES, LabelScheme

__all__ = ["core_weights", "core_patches", "sample_weights"]

log = logging.getLogger(__name__)

#: Patches read per chunk while scanning the labels (a 128x128 2D patch is 16 kB of uint8).
_CHUNK = 1024


def core_patches(path: str | Path, scheme: LabelScheme) -> np.ndarray:
    """``(n_patches,)`` bool: does each patch of the store hold a voxel of a tumour-core class (NCR or ET, the
    source labels of the TC region in ``scheme``)?"""
    if scheme.is_binary:
        raise ValueError(f"the {scheme.name} label scheme has no tumour core")
    core = np.array([scheme.source_labels[c] for c in REGION_CLASSES["TC"]])
    with open_store(path) as f:
        labels = f["labels"]
        n = labels.shape[0]
        out = np.zeros(n, dtype=bool)
        for start in range(0, n, _CHUNK):
            chunk = labels[start : start + _CHUNK]
            out[start : start + len(chunk)] = np.isin(chunk.reshape(len(chunk), -1), core).any(axis=1)
    return out


def core_weights(path: str | Path, scheme: LabelScheme, core_oversample: float) -> np.ndarray:
    """Sampling weight of every patch of the store: ``core_oversample`` for core patches, 1 for the others."""
    return np.where(core_patches(path, scheme), float(core_oversample), 1.0)


def sample_weights(path: str | Path, scheme: LabelScheme, core_oversample: float) -> np.ndarray | None:
    """The training loader's weights for ``train.core_oversample``: None at 1 (uniform permutations), else
    :func:`core_weights`, after logging how many patches hold core. ``ValueError`` for a binary scheme."""
    if core_oversample == 1:
        return None
    if scheme.is_binary:
        raise ValueError(
            f"train.core_oversample={core_oversample}: the {scheme.name} label scheme has no tumour core; "
            "leave it at 1"
        )
    weights = core_weights(path, scheme, core_oversample)
    n_core = int((weights != 1).sum())
    log.info(
        "train.core_oversample=%g: %d of %d training patches (%.0f%%) hold tumour core",
        core_oversample,
        n_core,
        len(weights),
        100 * n_core / max(len(weights), 1),
    )
    return weights
