"""Deep supervision (``loss.deep_supervision`` = n): auxiliary outputs on the decoder's n stages before the last.

nnU-Net trains its U-Nets this way: each of those stages gets a 1 x 1 convolution to the output channels, scored
by the same loss against the labels taken at its scale (nearest neighbour), so the coarser decoder stages get a
gradient of their own rather than only through the stages above them. The weights halve per stage from the full
resolution output (1, 1/2, 1/4, ...) and are normalised to sum to 1, so n = 0 is the plain loss.

The heads exist only while training: the saved model (``checkpoints/*.pt`` ``model``) is the network without
them, so prediction, export and every reader of a checkpoint are unchanged; ``last.pt``'s training state holds
the heads for ``--resume`` (:mod:`brats.train.resume`). Under torchrun the whole :class:`DeepSupervised` module
is what DistributedDataParallel wraps, so the heads' gradients are averaged over ranks like the network's.

Supported for smp ``Unet`` (2D and 2.5D), whose decoder stages run in sequence (``decoder.blocks``) with
``model.decoder_channels`` channels each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from brats.config import Config
from brats.train.losses import LossError

__all__ = ["DeepSupervised", "DeepSupervisionLoss", "deep_supervised", "stage_weights"]


def stage_weights(stages: int) -> list[float]:
    """Loss weights of the full-resolution output and ``stages`` auxiliary outputs: 1, 1/2, 1/4, ... normalised."""
    raw = [0.5**k for k in range(stages + 1)]
    return [w / sum(raw) for w in raw]


class DeepSupervised(nn.Module):
    """A U-Net and heads on its decoder stages: ``forward(x)`` returns the logits and the auxiliary logits, finest
    first (each stage's resolution: 1/2, 1/4, ... of the input)."""

    def __init__(self, model: nn.Module, stages: int, channels: list[int], out_channels: int):
        super().__init__()
        self.model = model
        blocks = list(model.get_submodule("decoder.blocks").children())
        self.heads = nn.ModuleList(nn.Conv2d(channels[-2 - k], out_channels, 1) for k in range(stages))
        self._features: dict[int, torch.Tensor] = {}
        self._active = False  # the hooks keep nothing when the network runs on its own (validation)
        for k in range(stages):  # block -2 - k feeds head k
            blocks[len(blocks) - 2 - k].register_forward_hook(self._keep(k))

    def _keep(self, k: int):
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            if self._active:
                self._features[k] = output

        return hook

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._active = True
        try:
            logits = self.model(x)
            aux = [head(self._features[k]) for k, head in enumerate(self.heads)]
        finally:
            self._active = False
            self._features.clear()
        return logits, aux


class DeepSupervisionLoss(nn.Module):
    """``loss`` of the logits plus, weighted by :func:`stage_weights`, of each auxiliary output against the
    labels at its scale (nearest neighbour)."""

    def __init__(self, loss: nn.Module, stages: int):
        super().__init__()
        self.loss = loss
        self.weights = stage_weights(stages)

    def forward(self, outputs: tuple[torch.Tensor, list[torch.Tensor]], target: torch.Tensor) -> torch.Tensor:
        logits, aux = outputs
        total = self.weights[0] * self.loss(logits, target)
        for w, out in zip(self.weights[1:], aux, strict=True):
            small = F.interpolate(target[:, None].float(), size=out.shape[2:], mode="nearest")[:, 0]
            total = total + w * self.loss(out, small.to(target.dtype))
        return total


def deep_supervised(
    model: nn.Module, cfg: Config, out_channels: int, loss: nn.Module
) -> tuple[nn.Module, nn.Module]:
    """The module to train and its loss: ``(model, loss)`` themselves when ``loss.deep_supervision`` is 0, else
    :class:`DeepSupervised` and :class:`DeepSupervisionLoss`.

    Raises:
        LossError: deep supervision asked of a network other than a 2D smp Unet, or more stages than its decoder
            has before the last.
    """
    stages = cfg.loss.deep_supervision
    if not stages:
        return model, loss
    blocks = getattr(getattr(model, "decoder", None), "blocks", None)
    if cfg.patches.dim != 2 or cfg.model.arch.lower() != "unet" or not isinstance(blocks, nn.ModuleList):
        raise LossError(
            f"loss.deep_supervision needs model.arch Unet with 2D patches, got {cfg.model.arch!r} with "
            f"patches.dim {cfg.patches.dim}; set loss.deep_supervision: 0"
        )
    if stages >= len(blocks):
        raise LossError(
            f"loss.deep_supervision={stages}: the decoder has {len(blocks)} stages, so at most "
            f"{len(blocks) - 1} can have an auxiliary output"
        )
    net = DeepSupervised(model, stages, list(cfg.model.decoder_channels), out_channels)
    return net.to(next(model.parameters()).device), DeepSupervisionLoss(loss, stages)
