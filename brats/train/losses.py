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

``loss.dice_scope: patch`` scores the Dice term per patch instead of over the batch: MONAI's ``DiceLoss``
(``batch=False``, no smoothing in the numerator) gives ``1 - Dice`` of each class (or region) in each patch, a
class absent from a patch's target counts 0 (as smp's absent classes do over the batch), and the mean is taken over
patches and classes. Each patch's tumour then weighs the same whatever its size, where over the batch a small
lesion's pixels are a small share of one sum.

``loss.dice_smooth: k`` (patch scope) smooths each patch's Dice as MONAI's ``smooth_nr = smooth_dr = k``:
``1 - (2 I + k) / (P + T + k)``. A class absent from a patch's target then costs ``s / (s + k)`` for its predicted
sum ``s`` (0 only when nothing of it is predicted) instead of 0, so false tumour in a tumour-free patch, or a
class predicted where the patch has none, is penalised by the Dice term itself. ``k = 1`` is the smoothing MONAI
users commonly write; 0 (default) keeps absent classes at 0. ``loss.dice_smooth_patches: tumour_free`` charges
that cost only in patches with no tumour at all (no foreground class, or an empty WT region); a tumour patch is then
scored exactly as with ``k = 0`` (absent classes count 0), so a patch of edema alone is not charged for the NCR or
ET predicted in it, and a large ``k`` does not soften a small tumour's Dice.

``loss.false_tumour_weight: w`` adds ``w`` times a charge on false tumour in tumour-free patches to either Dice
scope: a patch with no tumour voxel costs ``s / (s + k)`` (``k = loss.false_tumour_k``), ``s`` its summed
whole-tumour probability (``1 - p(background)``; regions: the WT sigmoid), and the charge is the mean over the
batch's patches, tumour patches counting 0. It is MONAI's smoothed Dice loss of the whole tumour in a patch where
it is absent, so unlike ``dice_smooth_patches: tumour_free``, which charges each absent class on its own, it does
not single out the rarest class: each class's false probability is pushed down through the background's.

``loss.class_weights`` (one per training class, or per region) turns both averages over classes into weighted
means (smp's ``class_weights`` of ``FocalLoss`` and ``DiceLoss``), e.g. ``[1, 2, 1, 2]`` doubles the share of NCR
and ET. With ``ce_dice`` on classes the cross-entropy takes them as torch's per-class ``weight`` (each pixel
weighted by its class, normalised by the summed weights of the batch's pixels), a buffer of the loss module:
move the loss to the model's device (``build_loss(...).to(device)``), as the training engine does.
"""

from __future__ import annotations

import torch
from torch import nn

from brats.config import LossConfig
from brats.errors import BratsError
from brats.outputs import region_targets

__all__ = ["LossError", "PatchDiceLoss", "SegmentationLoss", "build_loss", "false_tumour_charge"]


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
        class_weights: one weight per logit channel for both terms (None: equal).
        dice_scope: ``batch`` (smp's Dice over the whole batch) or ``patch`` (MONAI's, per patch).
        dice_smooth: ``patch`` scope only: MONAI's smoothing ``k``; absent classes then cost ``s / (s + k)``.
        dice_smooth_patches: ``all``, or ``tumour_free``: that cost only in patches with no tumour.
        false_tumour_weight: weight of :func:`false_tumour_charge` (0: off).
        false_tumour_k: its ``k``.
    """

    def __init__(
        self,
        gamma: float | None = 2.0,
        focal_weight: float = 1.0,
        dice_weight: float = 0.0,
        regions: bool = False,
        class_weights: list[float] | None = None,
        dice_scope: str = "batch",
        dice_smooth: float = 0.0,
        dice_smooth_patches: str = "all",
        false_tumour_weight: float = 0.0,
        false_tumour_k: float = 1.0,
    ):
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss, FocalLoss

        if dice_scope not in ("batch", "patch"):
            raise LossError(f"loss.dice_scope must be 'batch' or 'patch', got {dice_scope!r}")
        if not dice_smooth >= 0 or (dice_smooth and dice_scope != "patch"):
            raise LossError(f"loss.dice_smooth must be >= 0 and is for dice_scope 'patch', got {dice_smooth}")
        if dice_smooth_patches not in ("all", "tumour_free") or (
            dice_smooth_patches != "all" and not dice_smooth
        ):
            raise LossError(
                f"loss.dice_smooth_patches must be 'all' or 'tumour_free' (the latter with dice_smooth > 0), "
                f"got {dice_smooth_patches!r}"
            )

        if not false_tumour_weight >= 0 or not false_tumour_k > 0:
            raise LossError(
                f"loss.false_tumour_weight must be >= 0 and loss.false_tumour_k > 0, "
                f"got {false_tumour_weight}, {false_tumour_k}"
            )
        self.false_tumour_weight = float(false_tumour_weight)
        self.false_tumour_k = float(false_tumour_k)
        self.focal_weight = float(focal_weight)
        self.dice_weight = float(dice_weight)
        self.regions = bool(regions)
        mode = "multilabel" if self.regions else "multiclass"
        self.focal: nn.Module
        w = None if class_weights is None else [float(v) for v in class_weights]
        if gamma is None and not self.regions:
            self.focal = nn.CrossEntropyLoss(weight=None if w is None else torch.tensor(w))
        else:
            self.focal = FocalLoss(mode=mode, gamma=0.0 if gamma is None else gamma, class_weights=w)
        self.dice: nn.Module | None = None
        if self.dice_weight and dice_scope == "patch":
            self.dice = PatchDiceLoss(
                regions=self.regions,
                class_weights=w,
                smooth=dice_smooth,
                smooth_tumour_free_only=dice_smooth_patches == "tumour_free",
            )
        elif self.dice_weight:
            self.dice = DiceLoss(mode=mode, from_logits=True, class_weights=w)

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
            if self.false_tumour_weight:
                charge = false_tumour_charge(logits, target, self.regions, self.false_tumour_k)
                loss = loss + self.false_tumour_weight * charge
        return loss


def false_tumour_charge(logits: torch.Tensor, target: torch.Tensor, regions: bool, k: float) -> torch.Tensor:
    """Mean over patches of ``s / (s + k)`` for each tumour-free patch (tumour patches count 0).

    ``s`` is the patch's summed whole-tumour probability: ``1 - softmax(logits)[:, 0]`` for classes (``target``
    ``(B, H, W)``), the WT channel's sigmoid for regions (``target`` ``(B, 3, H, W)``, channel 0 WT). This is
    MONAI's ``DiceLoss(smooth_nr=k, smooth_dr=k)`` of the whole tumour in a patch without any.
    """
    if regions:
        p = torch.sigmoid(logits[:, 0])
        tumour = target[:, 0].flatten(1).any(1)
    else:
        p = 1 - torch.softmax(logits, 1)[:, 0]
        tumour = (target > 0).flatten(1).any(1)
    s = p.flatten(1).sum(1)
    return (s / (s + k) * ~tumour).mean()


class PatchDiceLoss(nn.Module):
    """``1 - Dice`` per patch and class (MONAI ``DiceLoss(batch=False)``), mean over both.

    Args:
        regions: ``target`` holds region masks ``(B, K, H, W)`` scored against each logit's sigmoid; else
            classes ``(B, H, W)`` scored against the softmax.
        class_weights: one weight per logit channel: each patch's weighted mean over classes, as smp's
            (None: equal).
        smooth: MONAI's ``smooth_nr = smooth_dr``; 0: a class absent from a patch counts 0; ``k > 0``: it
            counts ``s / (s + k)`` for its predicted sum ``s``.
        smooth_tumour_free_only: with ``smooth > 0``, the smoothing acts only in patches with no tumour (classes
            1.. all absent; regions: WT absent), where absent classes cost ``s / (s + k)``; a tumour patch is
            scored exactly as with ``smooth`` 0.
    """

    def __init__(
        self,
        regions: bool = False,
        class_weights: list[float] | None = None,
        smooth: float = 0.0,
        smooth_tumour_free_only: bool = False,
    ):
        super().__init__()
        from monai.losses import DiceLoss as MonaiDiceLoss

        self.regions = bool(regions)
        self.smooth = float(smooth)
        self.tumour_free_only = bool(smooth_tumour_free_only)
        self.dice: nn.Module = MonaiDiceLoss(
            sigmoid=self.regions,
            softmax=not self.regions,
            reduction="none",
            batch=False,
            smooth_nr=self.smooth,
            smooth_dr=self.smooth or 1e-7,
        )
        # tumour_free_only: a tumour patch is scored exactly as with smooth 0
        self.dice_plain: nn.Module | None = None
        if self.smooth and self.tumour_free_only:
            self.dice_plain = MonaiDiceLoss(
                sigmoid=self.regions,
                softmax=not self.regions,
                reduction="none",
                batch=False,
                smooth_nr=0.0,
                smooth_dr=1e-7,
            )
        w = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", w, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        if self.regions:
            onehot = target.to(logits.dtype)
        else:
            onehot = nn.functional.one_hot(target, k).movedim(-1, 1).to(logits.dtype)
        loss = self.dice(logits, onehot).reshape(logits.shape[0], k)
        if not self.smooth:
            loss = loss * (onehot.flatten(2).sum(-1) > 0)
        elif self.dice_plain is not None:
            present = onehot.flatten(2).sum(-1) > 0
            # regions: channel 0 is WT; classes: anything but background
            tumour = present[:, 0] if self.regions else present[:, 1:].any(1)
            plain = self.dice_plain(logits, onehot).reshape(logits.shape[0], k) * present
            loss = torch.where(tumour[:, None], plain, loss)
        if self.class_weights is None:
            return loss.mean()
        # smp's weighted mean over classes (sum of w * loss over sum of w), then the mean over patches
        return (loss * self.class_weights).sum(1).mean() / self.class_weights.sum()


def build_loss(loss_cfg: LossConfig, regions: bool = False, channels: int | None = None) -> SegmentationLoss:
    """The loss of ``loss_cfg``: ``name`` ``focal``, ``focal_dice`` or ``ce_dice``, ``gamma``, ``focal_weight``,
    ``dice_weight``, ``class_weights``; ``regions`` for a ``model.output: regions`` network; ``channels``: the
    model's logit channels, which ``class_weights`` must match (checked when given).

    Raises:
        LossError: a negative gamma or weight, both weights 0, or class weights that are negative, all 0, or
            not one per channel.
    """
    if loss_cfg.gamma < 0:
        raise LossError(f"loss.gamma must be >= 0, got {loss_cfg.gamma}")
    cw = loss_cfg.class_weights
    if cw is not None:
        if any(not v >= 0 for v in cw) or not sum(cw) > 0:
            raise LossError(f"loss.class_weights must be >= 0 and not all 0, got {cw}")
        if channels is not None and len(cw) != channels:
            what = "regions WT, TC, ET" if regions else "training classes"
            raise LossError(f"loss.class_weights needs {channels} values (the {what}), got {len(cw)}: {cw}")
    if loss_cfg.name == "focal":
        return SegmentationLoss(
            loss_cfg.gamma,
            1.0,
            0.0,
            regions,
            cw,
            false_tumour_weight=loss_cfg.false_tumour_weight,
            false_tumour_k=loss_cfg.false_tumour_k,
        )
    if loss_cfg.name in ("focal_dice", "ce_dice"):
        fw, dw = loss_cfg.focal_weight, loss_cfg.dice_weight
        if fw < 0 or dw < 0 or fw + dw == 0:
            raise LossError(
                f"loss.focal_weight and loss.dice_weight must be >= 0 and not both 0, got {fw}, {dw}"
            )
        gamma = None if loss_cfg.name == "ce_dice" else loss_cfg.gamma
        return SegmentationLoss(
            gamma,
            fw,
            dw,
            regions,
            cw,
            loss_cfg.dice_scope,
            loss_cfg.dice_smooth,
            loss_cfg.dice_smooth_patches,
            loss_cfg.false_tumour_weight,
            loss_cfg.false_tumour_k,
        )
    raise LossError(f"Unknown loss.name {loss_cfg.name!r}; valid: focal, focal_dice, ce_dice")
