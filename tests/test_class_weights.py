"""``loss.class_weights``: a weighted mean over classes in both loss terms, checked by hand and against smp's
binary focal loss and torch's weighted cross-entropy; bad weights are one clear error."""

from __future__ import annotations

import pytest
import torch
from segmentation_models_pytorch.losses import FocalLoss

from brats.config import ConfigError, LossConfig, load_config
from brats.train import LossError, build_loss


def test_weighted_dice_hand_computed():
    # zero logits -> softmax 0.25; target 2 pixels of class 0, 2 of class 1: per-class Dice losses 2/3, 2/3, 0, 0
    # (absent classes score 0). Equal weights: 1/3; weights [1, 1, 0, 0]: (2/3 + 2/3) / 2 = 2/3.
    target = torch.tensor([[[0, 0], [1, 1]]])
    logits = torch.zeros(1, 4, 2, 2)
    dice_only = {"name": "focal_dice", "focal_weight": 0.0, "dice_weight": 1.0}
    assert float(build_loss(LossConfig(**dice_only))(logits, target)) == pytest.approx(1 / 3, rel=1e-5)
    cfg = LossConfig(**dice_only, class_weights=[1.0, 1.0, 0.0, 0.0])
    assert float(build_loss(cfg, channels=4)(logits, target)) == pytest.approx(2 / 3, rel=1e-5)
    cfg = LossConfig(**dice_only, class_weights=[0.0, 0.0, 1.0, 1.0])  # only the absent classes count
    assert float(build_loss(cfg)(logits, target)) == pytest.approx(0.0, abs=1e-7)


def test_weighted_focal_is_the_weighted_mean_of_binary_focal_losses():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    weights = [1.0, 2.0, 0.5, 3.0]
    ours = build_loss(LossConfig(name="focal", gamma=2.0, class_weights=weights), channels=4)(logits, target)
    binary = FocalLoss(mode="binary", gamma=2.0)
    per_class = [float(binary(logits[:, c], (target == c).long())) for c in range(4)]
    expected = sum(w * v for w, v in zip(weights, per_class)) / sum(weights)
    assert float(ours) == pytest.approx(expected, rel=1e-5)
    assert abs(float(ours) - sum(per_class) / 4) > 1e-4  # the weights changed the loss


def test_weighted_cross_entropy_matches_torch():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    weights = [0.5, 2.0, 1.0, 2.0]
    cfg = LossConfig(name="ce_dice", focal_weight=1.0, dice_weight=0.0, class_weights=weights)
    fn = build_loss(cfg, channels=4)
    ref = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor(weights))
    assert float(fn(logits, target)) == pytest.approx(float(ref), rel=1e-5)
    # the weights are a buffer of the loss module, so the engine's build_loss(...).to(device) moves them
    assert dict(fn.named_buffers())["focal.weight"].tolist() == weights
    assert fn.to("meta").focal.weight.device.type == "meta"


def test_region_weights_select_regions():
    # regions: weights [1, 0, 0] leave the WT channel alone, the same as scoring WT by itself
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    cfg = LossConfig(name="focal", gamma=2.0, class_weights=[1.0, 0.0, 0.0])
    ours = build_loss(cfg, regions=True, channels=3)(logits, target)
    wt = FocalLoss(mode="binary", gamma=2.0)(logits[:, 0], (target > 0).long())
    assert float(ours) == pytest.approx(float(wt), rel=1e-5)


def test_class_weight_errors():
    with pytest.raises(LossError, match=r"needs 4 values \(the training classes\), got 3"):
        build_loss(LossConfig(class_weights=[1.0, 2.0, 1.0]), channels=4)
    with pytest.raises(LossError, match=r"needs 3 values \(the regions WT, TC, ET\)"):
        build_loss(LossConfig(class_weights=[1.0, 2.0, 1.0, 2.0]), regions=True, channels=3)
    with pytest.raises(LossError, match="not all 0"):
        build_loss(LossConfig(class_weights=[0.0, 0.0]))
    with pytest.raises(ConfigError, match=r"loss\.class_weights\[1\].*>= 0"):
        load_config(None, ["loss.class_weights=[1, -2, 1, 2]"])


def test_class_weights_from_an_override():
    cfg = load_config("configs/demo.yaml", ["loss.class_weights=[1, 2, 1, 2]"])
    assert cfg.loss.class_weights == [1, 2, 1, 2]
    assert load_config("configs/demo.yaml").loss.class_weights is None
