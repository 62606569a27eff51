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


def test_dice_smooth_hand_computed():
    # zero logits -> softmax 0.25; k = 1. Patch 0 (as above): classes 0, 1: 1 - (2 * 0.5 + 1) / (1 + 2 + 1) = 1/2;
    # classes 2, 3 absent, predicted sum 1 each: 1 / (1 + 1) = 1/2: patch mean 1/2. Patch 1: class 2:
    # 1 - (2 + 1) / (1 + 4 + 1) = 1/2, the absent classes 1/2 each: 1/2. Mean 1/2, where k = 0 gives 29/120.
    target = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [2, 2]]])
    logits = torch.zeros(2, 4, 2, 2)
    loss = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch", dice_smooth=1.0))(logits, target)
    assert float(loss) == pytest.approx(1 / 2, rel=1e-5)


def test_dice_smooth_penalises_false_tumour_in_a_tumour_free_patch():
    # a brain-only patch: with k = 0 the tumour classes count 0 whatever is predicted; with k > 0 each costs
    # s / (s + k), which falls to 0 as the predicted tumour goes. Checked against MONAI's smoothed DiceLoss.
    from monai.losses import DiceLoss as MonaiDiceLoss

    target = torch.zeros(1, 16, 16, dtype=torch.long)
    quiet = torch.zeros(1, 4, 16, 16)
    quiet[:, 0] = 8.0  # almost all background
    loud = quiet.clone()
    loud[:, 1, :4, :4] = 12.0  # 16 pixels of false NCR
    for k in (0.0, 1.0, 10.0):
        loss = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch", dice_smooth=k))
        q, lo = float(loss(quiet, target)), float(loss(loud, target))
        if k == 0:
            assert lo - q < 0.01  # only the background's Dice sees the 16 pixels; the NCR class counts 0
            continue
        assert lo > q + 0.1  # the false NCR costs
        monai = MonaiDiceLoss(softmax=True, smooth_nr=k, smooth_dr=k, batch=False)
        onehot = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
        assert lo == pytest.approx(float(monai(loud, onehot)), rel=1e-5)
        # by hand: the background's smoothed Dice, and s / (s + k) for each absent class, averaged over 4
        prob = torch.softmax(loud, 1)[0].flatten(1).double()
        bg = 1 - (2 * float(prob[0].sum()) + k) / (float(prob[0].sum()) + 256 + k)
        absent = [float(prob[c].sum()) / (float(prob[c].sum()) + k) for c in (1, 2, 3)]
        assert lo == pytest.approx((bg + sum(absent)) / 4, rel=1e-4)


def test_dice_smooth_needs_the_patch_scope():
    assert load_config("configs/demo.yaml").loss.dice_smooth == 0.0
    cfg = load_config(None, ["loss.dice_scope=patch", "loss.dice_smooth=1"])
    assert cfg.loss.dice_smooth == 1.0
    with pytest.raises(ConfigError, match=r"loss\.dice_smooth is for dice_scope: patch"):
        load_config(None, ["loss.dice_smooth=1"])
    with pytest.raises(ConfigError, match=r"loss\.dice_smooth"):
        load_config(None, ["loss.dice_scope=patch", "loss.dice_smooth=-1"])
    with pytest.raises(LossError, match=r"loss\.dice_smooth"):
        SegmentationLoss(dice_weight=1.0, dice_smooth=1.0)


def _monai_per_patch(logits, onehot, k, regions=False):
    from monai.losses import DiceLoss as MonaiDiceLoss

    m = MonaiDiceLoss(
        sigmoid=regions, softmax=not regions, smooth_nr=k, smooth_dr=k or 1e-7, batch=False, reduction="none"
    )
    return m(logits, onehot).reshape(logits.shape[0], logits.shape[1])


def test_dice_smooth_tumour_free_patches_only():
    # patch 0 is brain only; patch 1 holds edema (class 2) but no NCR or ET. Both predict 16 pixels of false NCR.
    # 'all' charges the false NCR in both patches; 'tumour_free' only in patch 0 (smoothed, every class), and
    # scores patch 1 exactly as k = 0 does: the classes present unsmoothed, the absent NCR and ET 0.
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[1, 8:, 8:] = 2
    logits = torch.zeros(2, 4, 16, 16)
    logits[:, 0] = 8.0
    logits[1, 2, 8:, 8:] = 12.0
    logits[:, 1, :4, :4] = 12.0
    onehot = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
    for k in (1.0, 100.0):
        smooth, plain = _monai_per_patch(logits, onehot, k), _monai_per_patch(logits, onehot, 0.0)
        cfg = {**DICE_ONLY, "dice_scope": "patch", "dice_smooth": k}
        free = float(build_loss(LossConfig(**cfg, dice_smooth_patches="tumour_free"))(logits, target))
        every = float(build_loss(LossConfig(**cfg))(logits, target))
        expected = (float(smooth[0].sum()) + float(plain[1, 0] + plain[1, 2])) / 8
        assert free == pytest.approx(expected, rel=1e-5)
        assert every == pytest.approx(float(smooth.mean()), rel=1e-5)
        # the false NCR in the edema patch: 'all' charges it, 'tumour_free' does not
        assert float(smooth[1, 1]) > 0.1
        # patch 1 alone: 'tumour_free' equals the unsmoothed per-patch Dice (dice_smooth 0)
        pd = build_loss(LossConfig(**DICE_ONLY, dice_scope="patch"))(logits[1:], target[1:])
        pf = build_loss(LossConfig(**cfg, dice_smooth_patches="tumour_free"))(logits[1:], target[1:])
        assert float(pf) == pytest.approx(float(pd), rel=1e-6)
    # by hand for k = 1 in patch 0: the background's smoothed Dice and s / (s + 1) for each absent class
    prob = torch.softmax(logits[0], 0).flatten(1).double()
    bg = 1 - (2 * float(prob[0].sum()) + 1) / (float(prob[0].sum()) + 256 + 1)
    absent = [float(prob[c].sum()) / (float(prob[c].sum()) + 1) for c in (1, 2, 3)]
    assert float(_monai_per_patch(logits, onehot, 1.0)[0].sum()) == pytest.approx(bg + sum(absent), rel=1e-4)


def test_dice_smooth_tumour_free_patches_regions():
    # regions WT, TC, ET: patch 0 has no WT, patch 1 has WT (edema) but no TC or ET. Only patch 0 is smoothed;
    # patch 1 is scored as with k = 0 (TC and ET absent: 0).
    from brats.outputs import region_targets

    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[1, :4] = 2
    logits = torch.full((2, 3, 8, 8), -6.0)
    logits[:, 1, :2, :2] = 6.0  # false TC in both patches
    logits[1, 0, :4] = 6.0
    regions = region_targets(target).float()
    smooth, plain = _monai_per_patch(logits, regions, 1.0, True), _monai_per_patch(logits, regions, 0.0, True)
    expected = (float(smooth[0].sum()) + float(plain[1, 0])) / 6
    loss = SegmentationLoss(
        None, 0.0, 1.0, regions=True, dice_scope="patch", dice_smooth=1.0, dice_smooth_patches="tumour_free"
    )
    assert float(loss(logits, target)) == pytest.approx(expected, rel=1e-5)
    cfg = LossConfig(**DICE_ONLY, dice_scope="patch", dice_smooth=1.0, dice_smooth_patches="tumour_free")
    assert float(build_loss(cfg, regions=True)(logits, target)) == pytest.approx(expected, rel=1e-5)
    assert float(smooth[0, 1]) > 0.5  # patch 0's false TC is charged


def test_dice_smooth_patches_is_checked():
    assert load_config("configs/demo.yaml").loss.dice_smooth_patches == "all"
    cfg = load_config(
        None, ["loss.dice_scope=patch", "loss.dice_smooth=1", "loss.dice_smooth_patches=tumour_free"]
    )
    assert cfg.loss.dice_smooth_patches == "tumour_free"
    with pytest.raises(
        ConfigError, match=r"loss\.dice_smooth_patches: tumour_free needs loss\.dice_smooth > 0"
    ):
        load_config(None, ["loss.dice_scope=patch", "loss.dice_smooth_patches=tumour_free"])
    with pytest.raises(ConfigError, match=r"loss\.dice_smooth_patches"):
        load_config(None, ["loss.dice_scope=patch", "loss.dice_smooth=1", "loss.dice_smooth_patches=tumour"])
    with pytest.raises(LossError, match=r"loss\.dice_smooth_patches"):
        SegmentationLoss(dice_weight=1.0, dice_scope="patch", dice_smooth_patches="tumour_free")
