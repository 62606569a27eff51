"""``loss.false_tumour_weight``: a charge ``s / (s + k)`` on each tumour-free patch's summed whole-tumour
probability, checked by hand, against MONAI's smoothed Dice loss of an absent whole tumour, and through the
config."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss as MonaiDiceLoss

from brats.config import ConfigError, LossConfig, load_config
from brats.outputs import region_targets
from brats.train import LossError, build_loss
from brats.train.losses import SegmentationLoss, false_tumour_charge

DICE_ONLY = {"name": "focal_dice", "focal_weight": 0.0, "dice_weight": 1.0}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    # patch 0 tumour-free, patch 1 edema and enhancing tumour, patch 2 tumour-free
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16, 16)
    target = torch.zeros(3, 16, 16, dtype=torch.long)
    target[1, :6] = 2
    target[1, :2, :2] = 3
    return logits, target


def test_charge_hand_computed():
    # zero logits, 4 classes: p(background) 0.25, so each of a 2x2 patch's pixels holds 0.75 of tumour: s = 3.
    # Patch 0 (tumour-free) costs 3 / (3 + k), patch 1 (one NCR pixel) 0: the mean over 2 patches is 3 / (2 (3 + k)).
    logits = torch.zeros(2, 4, 2, 2)
    target = torch.zeros(2, 2, 2, dtype=torch.long)
    target[1, 0, 0] = 1
    for k in (1.0, 3.0):
        for w in (1.0, 2.0):
            base = build_loss(LossConfig(**DICE_ONLY))(logits, target)
            ours = build_loss(LossConfig(**DICE_ONLY, false_tumour_weight=w, false_tumour_k=k))(
                logits, target
            )
            assert float(ours - base) == pytest.approx(w * 3 / (2 * (3 + k)), rel=1e-5)


def test_charge_is_monai_smoothed_dice_of_an_absent_whole_tumour():
    logits, target = _batch()
    free = torch.tensor([1.0, 0.0, 1.0])
    wt = (1 - torch.softmax(logits, 1)[:, :1]).contiguous()
    for k in (1.0, 100.0):
        monai = MonaiDiceLoss(batch=False, reduction="none", smooth_nr=k, smooth_dr=k)
        per_patch = monai(wt, torch.zeros_like(wt)).flatten()
        expected = float((per_patch * free).mean())
        assert float(false_tumour_charge(logits, target, False, k)) == pytest.approx(expected, rel=1e-5)
        # through the loss, with the batch or the patch Dice beside it
        for scope in ("batch", "patch"):
            cfg = LossConfig(name="focal_dice", dice_scope=scope)
            plain = build_loss(cfg)(logits, target)
            cfg = LossConfig(name="focal_dice", dice_scope=scope, false_tumour_weight=0.5, false_tumour_k=k)
            assert float(build_loss(cfg)(logits, target) - plain) == pytest.approx(0.5 * expected, rel=1e-4)
    # the focal loss alone takes it too
    plain = build_loss(LossConfig(name="focal"))(logits, target)
    ours = build_loss(LossConfig(name="focal", false_tumour_weight=1.0))(logits, target)
    assert float(ours - plain) == pytest.approx(
        float(false_tumour_charge(logits, target, False, 1.0)), rel=1e-4
    )


def test_charge_is_one_on_the_whole_tumour_not_per_class():
    # moving false probability from NCR to ET leaves the charge unchanged: only p(background) counts
    logits, target = _batch()
    swapped = logits[:, [0, 3, 2, 1]]
    a, b = false_tumour_charge(logits, target, False, 1.0), false_tumour_charge(swapped, target, False, 1.0)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    # a tumour patch is never charged, however much false tumour it holds
    logits[1] = -10.0
    logits[1, 3] = 10.0
    only_tumour = false_tumour_charge(logits[1:2], target[1:2], False, 1.0)
    assert float(only_tumour) == 0.0
    # ... and a tumour-free patch full of it costs nearly 1
    assert float(false_tumour_charge(logits[1:2], torch.zeros_like(target[1:2]), False, 1.0)) > 0.99


def test_charge_regions_uses_the_wt_sigmoid():
    logits, target = _batch()
    logits = logits[:, :3]
    regions = region_targets(target)
    wt = torch.sigmoid(logits[:, :1]).contiguous()
    per_patch = MonaiDiceLoss(batch=False, reduction="none", smooth_nr=1.0, smooth_dr=1.0)(
        wt, torch.zeros_like(wt)
    )
    expected = float((per_patch.flatten() * torch.tensor([1.0, 0.0, 1.0])).mean())
    assert float(false_tumour_charge(logits, regions, True, 1.0)) == pytest.approx(expected, rel=1e-5)
    plain = build_loss(LossConfig(name="focal_dice"), regions=True)(logits, target)
    ours = build_loss(LossConfig(name="focal_dice", false_tumour_weight=1.0), regions=True)(logits, target)
    assert float(ours - plain) == pytest.approx(expected, rel=1e-4)
    # TC and ET sigmoids are not charged
    more = logits.clone()
    more[:, 1:] = 10.0
    assert float(false_tumour_charge(more, regions, True, 1.0)) == pytest.approx(expected, rel=1e-6)


def test_charge_gradient_reaches_the_logits():
    logits, target = _batch()
    logits.requires_grad_(True)
    build_loss(LossConfig(**DICE_ONLY, false_tumour_weight=1.0))(logits, target).backward()
    plain = logits.detach().clone().requires_grad_(True)
    build_loss(LossConfig(**DICE_ONLY))(plain, target).backward()
    assert logits.grad is not None and plain.grad is not None
    diff = logits.grad - plain.grad
    # the tumour patch's gradient is unchanged; the tumour-free patches' background logits are pushed up
    assert torch.allclose(diff[1], torch.zeros_like(diff[1]), atol=1e-7)
    assert bool((diff[[0, 2], 0] < 0).all())


def test_false_tumour_settings_are_checked():
    cfg = load_config("configs/demo.yaml").loss
    assert (cfg.false_tumour_weight, cfg.false_tumour_k) == (0.0, 1.0)
    cfg = load_config(None, ["loss.false_tumour_weight=2", "loss.false_tumour_k=50"]).loss
    assert (cfg.false_tumour_weight, cfg.false_tumour_k) == (2.0, 50.0)
    with pytest.raises(ConfigError, match=r"false_tumour_weight"):
        load_config(None, ["loss.false_tumour_weight=-1"])
    with pytest.raises(ConfigError, match=r"false_tumour_k"):
        load_config(None, ["loss.false_tumour_k=0"])
    with pytest.raises(LossError, match=r"loss\.false_tumour_k"):
        SegmentationLoss(false_tumour_weight=1.0, false_tumour_k=0.0)
    with pytest.raises(LossError, match=r"loss\.false_tumour_weight"):
        SegmentationLoss(false_tumour_weight=float("nan"))
