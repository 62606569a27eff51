"""An exponential moving average of the weights (``train.ema_decay``): the model that is validated and saved.

After every optimiser step the average moves towards the trained weights,
``average = decay * average + (1 - decay) * weights``, parameters and BatchNorm statistics alike (PyTorch's
:class:`torch.optim.swa_utils.AveragedModel` with :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`). The
average is what each epoch validates and what ``best.pt`` / ``last.pt`` hold as their weights, so prediction
uses it; the optimiser's own weights go to the checkpoint's training state, for ``--resume``. With a decay of
0.998 the average spans about the last 500 steps: over a cosine schedule it mixes weights from the later part
of the run, which (as stochastic weight averaging) tends to find flatter minima that transfer better to data
unlike the training set.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["build_ema", "load_average"]


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """The moving average of ``model`` (a copy of it, averaged from its first update), or None when ``decay``
    is None (off)."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)


def load_average(ema: AveragedModel, weights: dict[str, torch.Tensor]) -> None:
    """Set the average to ``weights`` (a state dict of the bare model) and continue averaging from them."""
    ema.module.load_state_dict(weights)
    ema.n_averaged.fill_(1)
