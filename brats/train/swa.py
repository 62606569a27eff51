"""Stochastic weight averaging (``train.swa_start``): the uniform average of the weights over the end of a run.

Once the run's progress (:func:`brats.train.schedule.run_progress`: the fraction of its steps or of its time
budget, whichever is further) reaches ``swa_start``, every optimiser step adds the weights to a running mean,
parameters and BatchNorm statistics alike (PyTorch's :class:`torch.optim.swa_utils.AveragedModel`, whose default
is this uniform mean). From then on the average is what each epoch validates and what ``best.pt`` / ``last.pt``
hold as their weights, so prediction uses it; the optimiser's own weights and the number of steps averaged go to
the checkpoint's training state, for ``--resume``. Averaging the weights along the later, still moving part of a
cosine schedule finds a flatter minimum than its last step (Izmailov et al., 2018), and a flat minimum transfers
better to data unlike the training set (Cha et al., 2021, "SWAD").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["build_average", "load_average", "averaged_steps"]


def build_average(model: nn.Module, start: float | None) -> AveragedModel | None:
    """An empty running mean of ``model``'s weights (a copy of it), or None when ``start`` is None (off)."""
    if start is None:
        return None
    return AveragedModel(model, use_buffers=True)


def averaged_steps(average: AveragedModel | None) -> int:
    """How many steps' weights ``average`` holds (0 without one)."""
    return 0 if average is None else int(average.n_averaged)


def load_average(average: AveragedModel, weights: dict[str, torch.Tensor], steps: int) -> None:
    """Set ``average`` to the mean ``weights`` of ``steps`` steps (a state dict of the bare model), so that
    averaging goes on from them with the same weight per step."""
    if steps > 0:
        average.module.load_state_dict(weights)
    average.n_averaged.fill_(int(steps))
