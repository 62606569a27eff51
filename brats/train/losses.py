"""Loss functions from the config: smp focal loss, optionally plus smp Dice loss.

A loss maps logits ``(B, K, H, W)`` (any float dtype) and a target ``(B, H, W)`` int64 of training classes
``0..K-1`` to a scalar float32 tensor. It is always computed in float32, outside autocast, so mixed precision
never reaches the log/exp of the focal term.

* ``focal``: ``smp.losses.FocalLoss(mode="multiclass", gamma)``: for each class ``c`` the binary focal loss
  ``-(1 - p_t) ** gamma * log(p_t)`` of ``sigmoid(logit_c)`` against ``target == c``, averaged over pixels, then
  averaged over the ``K`` classes.
* ``focal_dice``: ``focal_weight * focal + dice_weight * smp.losses.DiceLoss(mode="multiclass")`` (soft Dice of
  the softmax: ``1 - Dice`` of each class over the whole batch, 0 for a class absent from the target,
  averaged over the ``K`` classes).

* ``ce_dice``: ``focal_weight * CE + dice_weight * DiceLoss``, where CE is torch's softmax cross-entropy
  (``nn.CrossEntropyLoss``, averaged over pixels): the pairing nnU-Net trains with. Unlike smp's multiclass focal
  loss, which scores each class's sigmoid on its own, both terms then see the same softmax that prediction
  takes the argmax of. ``gamma`` is not used.

With ``model.output: regions`` (:mod:`brats.outputs`) the logits are ``(B, 3, H, W)``, one per region WT, TC,
ET; both terms then use smp's ``multilabel`` mode: the focal loss of each region's sigmoid against its binary
mask, and the soft Dice of each region's sigmoid over the batch, averaged over the three regions. ``ce_dice``
then uses the binary cross-entropy of each region's sigmoid (focal with gamma 0).
"""

from __future__ import annotations

import torch
from torch import nn

from brats.config import LossConfig
from brats.errors import BratsError
from brats.outputs import region_targets

__all__ = ["LossError", "SegmentationLoss", "build_loss"]


class LossError(BratsError, ValueError):
    """The loss section of the config is invalid."""


class SegmentationLoss(nn.Module):
    """Weighted sum of smp focal and Dice losses, computed in float32 (see the module doc).

    Args:
        gamma: focal focusing parameter (0 gives the per-class binary cross-entropy); None: softmax
            cross-entropy instead of the focal term (``ce_dice``; regions: binary cross-entropy).
        focal_weight: weight of the focal term.
        dice_weight: weight of the Dice term (0 = focal only; the Dice module is then not evaluated).
        regions: the logits are the 3 BraTS regions (``model.output: regions``), scored against
            :func:`brats.outputs.region_targets` of the class target.
    """

    def __init__(
        self,
        gamma: float | None = 2.0,
        focal_weight: float = 1.0,
        dice_weight: float = 0.0,
        regions: bool = False,
    ):
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss, FocalLoss

        self.focal_weight = float(focal_weight)
        self.dice_weight = float(dice_weight)
        self.regions = bool(regions)
        mode = "multilabel" if self.regions else "multiclass"
        self.focal: nn.Module
        if gamma is None and not self.regions:
            self.focal = nn.CrossEntropyLoss()
        else:
            self.focal = FocalLoss(mode=mode, gamma=0.0 if gamma is None else gamma)
        self.dice = DiceLoss(mode=mode, from_logits=True) if self.dice_weight else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(B, K, H, W)``, ``target`` ``(B, H, W)`` int64 classes -> scalar float32 loss."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            target = region_targets(target.long()) if self.regions else target.long()
            loss = (
                self.focal_weight * self.focal(logits, target) if self.focal_weight else logits.new_zeros(())
            )
            if self.dice is not None:
                loss = loss + self.dice_weight * self.dice(logits, target)
        return loss


def build_loss(loss_cfg: LossConfig, regions: bool = False) -> SegmentationLoss:
    """The loss of ``loss_cfg``: ``name`` ``focal``, ``focal_dice`` or ``ce_dice``, ``gamma``, ``focal_weight``,
    ``dice_weight``;
    ``regions`` for a ``model.output: regions`` network.

    Raises:
        LossError: a negative gamma or weight, or both weights 0.
    """
    if loss_cfg.gamma < 0:
        raise LossError(f"loss.gamma must be >= 0, got {loss_cfg.gamma}")
    if loss_cfg.name == "focal":
        return SegmentationLoss(gamma=loss_cfg.gamma, focal_weight=1.0, dice_weight=0.0, regions=regions)
    if loss_cfg.name in ("focal_dice", "ce_dice"):
        fw, dw = loss_cfg.focal_weight, loss_cfg.dice_weight
        if fw < 0 or dw < 0 or fw + dw == 0:
            raise LossError(
                f"loss.focal_weight and loss.dice_weight must be >= 0 and not both 0, got {fw}, {dw}"
            )
        gamma = None if loss_cfg.name == "ce_dice" else loss_cfg.gamma
        return SegmentationLoss(gamma=gamma, focal_weight=fw, dice_weight=dw, regions=regions)
    raise LossError(f"Unknown loss.name {loss_cfg.name!r}; valid: focal, focal_dice, ce_dice")
