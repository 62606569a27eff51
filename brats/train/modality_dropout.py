"""Random modality dropout: a training patch loses one MRI sequence, so no compartment rests on one sequence alone.

Edema is bright on FLAIR and on T2, enhancing tumour on T1ce, necrosis dark on T1ce and bright on T2. A model that
has always seen every sequence can lean on the one that shows a compartment best; one faint or corrupted sequence
then hides the compartment, although the others still show it (the stress profile's edema is 1.04-1.1 times grey
matter on FLAIR, but 1.1-1.3 times on T2: docs/synthetic.md). Dropping a whole sequence from some patches makes
the evidence of the others count (ModDrop, Neverova et al. 2016; HeMIS, Havaei et al. 2016).

:class:`RandomModalityDropout` draws one modality uniformly and sets all of its channels to 0: the modality, its
neighbouring slices in 2.5D, and its asymmetry channels (:mod:`brats.asymmetry`), which are computed from it.
It runs after the rescaling and the noise, so the dropped channels are exactly 0, a constant that carries no
image. The label map is untouched. Prediction never drops anything.

Channels are laid out as :func:`brats.asymmetry.input_channels` describes: ``M`` modalities, each with its
``2k + 1`` slices (modality-major, :mod:`brats.extract.context`), then the same for their asymmetries.
"""

from __future__ import annotations

from typing import Any

import torch
import torchio as tio

__all__ = ["RandomModalityDropout", "modality_channels"]


def modality_channels(m: int, n_modalities: int, asymmetry: bool, context_slices: int = 0) -> list[int]:
    """The input channels that carry modality ``m`` (0-based) among ``n_modalities``.

    Example:
        >>> modality_channels(1, 4, False), modality_channels(1, 4, True), modality_channels(0, 2, True, 1)
        ([1], [1, 5], [0, 1, 2, 6, 7, 8])
    """
    if not 0 <= m < n_modalities:
        raise ValueError(f"modality {m} is not in 0..{n_modalities - 1}")
    g = 2 * int(context_slices) + 1
    blocks = [m, n_modalities + m] if asymmetry else [m]
    return [b * g + j for b in blocks for j in range(g)]


class RandomModalityDropout(tio.Transform):
    """Set every channel of one randomly chosen modality to 0 (module doc).

    Args:
        n_modalities: ``M``, at least 2 (a patch keeps at least one sequence).
        asymmetry: whether asymmetry channels follow the modalities.
        context_slices: ``k``, neighbouring slices either side in 2.5D (0 in 2D).
        **kwargs: TorchIO's (``p``: probability that a patch loses a modality).
    """

    def __init__(self, n_modalities: int, asymmetry: bool = False, context_slices: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        if int(n_modalities) < 2:
            raise ValueError(f"needs at least 2 modalities, got {n_modalities}")
        self.groups = [
            modality_channels(m, int(n_modalities), bool(asymmetry), int(context_slices))
            for m in range(int(n_modalities))
        ]
        self.n_channels = sum(len(g) for g in self.groups)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = subject["image"]
        data = image.data  # type: ignore[attr-defined]
        if data.shape[0] != self.n_channels:
            raise ValueError(
                f"RandomModalityDropout expects {self.n_channels} channels, got shape {tuple(data.shape)}"
            )
        m = int(torch.randint(len(self.groups), (1,)))
        out = data.clone()
        out[self.groups[m]] = 0
        image.set_data(out)  # type: ignore[attr-defined]
        return subject
