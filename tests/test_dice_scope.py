"""``loss.dice_scope: patch``: the Dice term per patch (MONAI, batch=False), checked by hand, against smp's Dice
of each patch alone, and through the config; ``batch`` (the default) keeps smp's Dice over the whole batch."""

from __future__ import annotations

import pytest
import torch
from segmentation_models_pytorch.losses import DiceLoss

from brats.config import ConfigError, LossConfig, load_config
from brats.train import LossError, build_loss
from brats.train.losses import SegmentationLoss

DICE_ONLY = {"name": "focal_dice", "focal_weight": 0.0, "dice_weight": 1.0}


def test_patch_dice_hand_computed():
    # zero logits -> softmax 0.25 everywhere. Patch 0: 2 pixels of class 0, 2 of class 1 -> Dice of each
    # 2 * 0.5 / (1 + 2) = 1/3, loss 2/3; classes 2, 3 absent -> 0: patch mean (2/3 + 2/3) / 4 = 1/3.
    # Patch 1: all 4 pixels class 2 -> Dice 2 * 1 / (1 + 4) = 2/5, loss 3/5, others absent: patch mean 3/20.
    # Per patch: (1/3 + 3/20) / 2 = 29/120. Over the batch: classes 0 and 1 each 2 * 0.5 / (2 + 2) -> loss 3/4,
    # class 2 2 * 1 / (2 + 4) -> loss 2/3, class 3 absent: (3/4 + 3/4 + 2/3) / 4 = 13/24.
    target = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [2, 2]]])
    logits = torch.zeros(2, 4, 2, 2)
    patch = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch"))(logits, target)
    batch = build_loss(LossConfig(**DICE_ONLY))(logits, target)
    assert float(patch) == pytest.approx(29 / 120, rel=1e-5)
    assert float(batch) == pytest.approx(13 / 24, rel=1e-5)
    assert patch.dtype == torch.float32


def test_patch_dice_is_the_mean_of_smp_dice_of_each_patch():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16, 16)
    target = torch.randint(0, 4, (3, 16, 16))
    target[1] = 0  # a brain-only patch: only the background class counts
    target[2, :8] = 3
    weights = [1.0, 2.0, 1.0, 2.0]
    for cw in (None, weights):
        ours = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch", class_weights=cw), channels=4)
        smp = DiceLoss(mode="multiclass", from_logits=True, class_weights=cw)
        expected = sum(float(smp(logits[i : i + 1], target[i : i + 1])) for i in range(3)) / 3
        assert float(ours(logits, target)) == pytest.approx(expected, rel=1e-5)
        # and not what the batch scope gives
        batch = build_loss(LossConfig(**DICE_ONLY, class_weights=cw), channels=4)
        assert abs(float(batch(logits, target)) - expected) > 1e-3


def test_patch_dice_on_regions_matches_smp_multilabel_per_patch():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[0] = torch.where(target[0] == 3, 1, target[0])  # patch 0 has no ET: that region is absent there
    ours = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch"), regions=True)(logits, target)
    from brats.outputs import region_targets

    masks = region_targets(target)
    smp = DiceLoss(mode="multilabel", from_logits=True)
    expected = sum(float(smp(logits[i : i + 1], masks[i : i + 1])) for i in range(2)) / 2
    assert float(ours) == pytest.approx(expected, rel=1e-5)


def test_patch_dice_with_the_focal_term_and_gradients():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    both = build_loss(LossConfig(name="focal_dice", dice_scope="patch"))(logits, target)
    focal = build_loss(LossConfig(name="focal"))(logits, target)
    dice = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch"))(logits, target)
    assert float(both) == pytest.approx(float(focal) + float(dice), rel=1e-5)
    both.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_dice_scope_from_the_config():
    assert load_config("configs/demo.yaml").loss.dice_scope == "batch"
    assert load_config("configs/demo.yaml", ["loss.dice_scope=patch"]).loss.dice_scope == "patch"
    with pytest.raises(ConfigError, match=r"loss\.dice_scope"):
        load_config(None, ["loss.dice_scope=sample"])


def test_unknown_dice_scope_is_refused_by_the_loss_too():
    with pytest.raises(LossError, match=r"loss\.dice_scope must be 'batch' or 'patch', got 'sample'"):
        SegmentationLoss(dice_weight=1.0, dice_scope="sample")
