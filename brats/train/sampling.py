"""Which training patches the sampler draws more often: ``train.core_oversample`` and ``train.case_balance``.

At the demo's budget on a CPU without bf16 (about 8 epochs) whether the model learns the tumour core (NCR and
ET) in time is a matter of luck: only about 4 in 10 training patches hold any core voxel, against 2 in 3 for
edema. :func:`core_weights` gives each patch of a store a sampling weight, ``core_oversample`` for patches
holding a voxel of a tumour-core class and 1 for the others; :func:`brats.train.runtime.train_loader` then draws
patches with replacement in proportion to it (torch's ``WeightedRandomSampler``). The patch store itself is
unchanged, so the weight can be changed without extracting again.

``train.case_balance`` (``b`` in 0..1): a case's patches are as many as its tumour's windows (plus the brain-only
windows extraction keeps in proportion), so a small tumour gives a few dozen patches where a large one gives
hundreds, and a uniform draw shows the model small tumours rarely. :func:`case_weights` divides each patch's weight by
its case's patch count to the power ``b``: a case is then drawn in proportion to ``count ** (1 - b)`` (``b = 0.5``:
the square root of its patches, the "square-root sampling" of long-tailed classification; ``b = 1``: every case
equally often). Both weights multiply.

Example::

    w = core_weights("runs/demo/patches/train.h5", get_scheme("brats2021"), 2.0)   # (n_patches,) float64
    w = case_weights("runs/demo/patches/train.h5", 0.5)                              # (n_patches,) float64
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from brats.extract.store import open_store
from brats.labels import REGION_CLASSES, LabelScheme

__all__ = ["case_weights", "core_weights", "core_patches", "sample_weights", "voxel_counts"]

log = logging.getLogger(__name__)

#: Patches read per chunk while scanning the labels (a 128x128 2D patch is 16 kB of uint8).
_CHUNK = 1024


def core_patches(path: str | Path, scheme: LabelScheme) -> np.ndarray:
    """``(n_patches,)`` bool: does each patch of the store hold a voxel of a tumour-core class (NCR or ET, the
    source labels of the TC region in ``scheme``)?"""
    if scheme.is_binary:
        raise ValueError(f"the {scheme.name} label scheme has no tumour core")
    core = np.array([scheme.source_labels[c] for c in REGION_CLASSES["TC"]])
    return voxel_counts(path, lambda labels: np.isin(labels, core)) > 0


def voxel_counts(path: str | Path, select: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``(n_patches,)`` int64: the voxels of each patch's label map for which ``select`` (a boolean mask of a
    label array, e.g. ``lambda labels: labels > 0``) holds, read ``_CHUNK`` patches at a time."""
    with open_store(path) as f:
        labels = f["labels"]
        n = labels.shape[0]
        counts = np.zeros(n, dtype=np.int64)
        for start in range(0, n, _CHUNK):
            chunk = np.asarray(labels[start : start + _CHUNK])
            counts[start : start + len(chunk)] = select(chunk.reshape(len(chunk), -1)).sum(axis=1)
    return counts


def core_weights(path: str | Path, scheme: LabelScheme, core_oversample: float) -> np.ndarray:
    """Sampling weight of every patch of the store: ``core_oversample`` for core patches, 1 for the others."""
    return np.where(core_patches(path, scheme), float(core_oversample), 1.0)


def _case_counts(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(case_index, counts)``: each patch's case row and the number of patches of every case row."""
    with open_store(path) as f:
        case_index = np.asarray(f["case_index"][:], dtype=np.int64)
    return case_index, np.bincount(case_index)


def case_weights(path: str | Path, case_balance: float) -> np.ndarray:
    """Sampling weight of every patch of the store: ``1 / n_c ** case_balance``, ``n_c`` the number of patches of
    the patch's case (``case_index``), so the patches of case ``c`` weigh ``n_c ** (1 - case_balance)`` together."""
    case_index, counts = _case_counts(path)
    return counts[case_index].astype(np.float64) ** -float(case_balance)


def sample_weights(
    path: str | Path, scheme: LabelScheme, core_oversample: float, case_balance: float = 0.0
) -> np.ndarray | None:
    """The training loader's weights for ``train.core_oversample`` and ``train.case_balance``: None when both are
    neutral (1 and 0: uniform permutations), else the product of :func:`core_weights` and :func:`case_weights`,
    after logging what they do. ``ValueError`` for core oversampling with a binary scheme."""
    if core_oversample == 1 and case_balance == 0:
        return None
    weights = None
    if core_oversample != 1:
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
    if case_balance != 0:
        balance = case_weights(path, case_balance)
        counts = _case_counts(path)[1]
        counts = counts[counts > 0]
        if counts.size == 0:  # an empty store: the training loader says so in one line
            return balance
        log.info(
            "train.case_balance=%g: %d cases of %d-%d patches drawn in the ratio 1 : %.1f (uniform: 1 : %.1f)",
            case_balance,
            len(counts),
            counts.min(),
            counts.max(),
            (counts.max() / counts.min()) ** (1 - case_balance),
            counts.max() / counts.min(),
        )
        weights = balance if weights is None else weights * balance
    return weights
