"""Region-based outputs (``model.output: regions``): targets, loss, decoding, training and prediction.

The loss is checked against MONAI's sigmoid Dice and focal losses; decoding against nnU-Net's rule (each region
above 0.5 overwrites the label set by the one before: WT -> ED, TC -> NCR, ET -> ET).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.losses import DiceLoss, FocalLoss

from brats.config import LossConfig
from brats.labels import LabelError, get_scheme
from brats.networks import model_from_checkpoint
from brats.outputs import decode, decode_logits, out_channels, probabilities, region_targets
from brats.predict import run_predict
from brats.predict.predictor import settings_from_checkpoint
from brats.predict.sliding import InferenceError
from brats.train import Trainer
from brats.train.losses import build_loss
from tests.cohort import make_case
from tests.test_infer import SHAPE, make_checkpoint
from tests.test_train import make_patches, tiny_config, write_store

torch.set_num_threads(1)


def test_region_targets_hand_computed():
    target = torch.tensor([[0, 1, 2, 3]])
    masks = region_targets(target)
    assert masks.shape == (1, 3, 4) and masks.dtype == torch.float32
    assert masks[0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]  # WT, TC, ET


def test_out_channels():
    assert out_channels("classes", get_scheme("brats2021")) == 4
    assert out_channels("classes", get_scheme("binary")) == 2
    assert out_channels("regions", get_scheme("brats2023")) == 3
    with pytest.raises(LabelError, match="model.output=regions needs a BraTS label scheme"):
        out_channels("regions", get_scheme("binary"))
    with pytest.raises(LabelError, match="model.output must be one of"):
        out_channels("region", get_scheme("brats2021"))


def test_decode_follows_nnunet_overwrite_order():
    # columns: (WT, TC, ET) probabilities of one voxel each
    regions = np.array(
        [
            [0.2, 0.7, 0.7, 0.9, 0.4, 0.5, 0.9],  # WT
            [0.1, 0.2, 0.8, 0.9, 0.3, 0.1, 0.2],  # TC
            [0.0, 0.1, 0.3, 0.6, 0.8, 0.1, 0.7],  # ET
        ]
    )
    prob = np.concatenate([1 - regions[:1], regions])
    # bg; ED; NCR; ET; ET although WT < 0.5 (nnU-Net does not force nesting); 0.5 counts as inside; ET
    assert decode(prob, "regions").tolist() == [0, 2, 1, 3, 3, 2, 3]
    assert decode(prob.T, "regions", axis=1).tolist() == [0, 2, 1, 3, 3, 2, 3]


def test_probabilities_layout_and_logit_decoding():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6)
    prob = probabilities(logits, "regions")
    assert prob.shape == (2, 4, 5, 6)
    assert torch.allclose(prob[:, 1:], torch.sigmoid(logits))
    assert torch.allclose(prob[:, 0] + prob[:, 1], torch.ones(2, 5, 6))
    by_hand = np.zeros((2, 5, 6), np.int64)
    for channel, label in ((0, 2), (1, 1), (2, 3)):  # logit >= 0 <=> sigmoid >= 0.5
        by_hand[(logits[:, channel] >= 0).numpy()] = label
    assert decode_logits(logits, "regions").tolist() == by_hand.tolist()
    # classes: softmax and argmax, unchanged
    logits4 = torch.randn(2, 4, 5, 6)
    assert torch.allclose(probabilities(logits4, "classes"), torch.softmax(logits4, 1))
    assert torch.equal(decode_logits(logits4, "classes"), logits4.argmax(1))
    assert (
        decode(probabilities(logits4, "classes")[0].numpy(), "classes").tolist()
        == logits4.argmax(1)[0].tolist()
    )


def _target_with_every_region() -> torch.Tensor:
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 4, (2, 8, 8)))
    assert set(target.unique().tolist()) == {0, 1, 2, 3}
    return target


def test_region_dice_matches_monai():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    target = _target_with_every_region()
    ours = build_loss(LossConfig(name="focal_dice", focal_weight=0.0, dice_weight=1.0), regions=True)
    # smp's soft Dice over the whole batch per region, averaged over regions == MONAI batch Dice of the sigmoid
    ref = DiceLoss(sigmoid=True, batch=True, smooth_nr=0.0, smooth_dr=1e-7)(logits, region_targets(target))
    assert float(ours(logits, target)) == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_region_focal_matches_monai(gamma):
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 8, 8) * 3
    target = _target_with_every_region()
    ours = build_loss(LossConfig(name="focal", gamma=gamma), regions=True)
    ref = FocalLoss(gamma=gamma, use_softmax=False, reduction="mean")(logits, region_targets(target))
    assert float(ours(logits, target)) == pytest.approx(float(ref), rel=1e-5)


def test_trainer_learns_regions_and_prediction_reads_them(tmp_path):
    images, labels = make_patches(2, 5)
    out = tmp_path / "regions"
    write_store(out / "patches" / "train.h5", images, labels)
    write_store(out / "patches" / "val.h5", images, labels)
    cfg = tiny_config(out, batch_size=2, steps_per_epoch=10, lr=3e-3, epochs=8)
    cfg.augment.enabled = False
    cfg.model.output = "regions"
    trainer = Trainer(cfg)
    try:
        before = trainer.validate()
        trainer.fit()
        after = trainer.validate()
    finally:
        trainer.close()
    assert after["val_loss"] < before["val_loss"] / 5, (before, after)
    assert after["val_dice_ED"] > 0.8, after
    model, ckpt = model_from_checkpoint(out / "checkpoints" / "last.pt", "cpu")
    assert ckpt.classes == 3 and ckpt.config.model.output == "regions"
    assert model(torch.zeros(1, 4, 32, 32)).shape == (1, 3, 32, 32)
    assert settings_from_checkpoint(ckpt).output == "regions"


@pytest.mark.parametrize(
    "bias, label", [([5, -5, -5], 2), ([5, 5, -5], 1), ([5, 5, 5], 4), ([-5, -5, -5], 0)]
)
def test_predict_decodes_region_checkpoints(tmp_path, bias, label):
    ckpt = make_checkpoint(tmp_path / "regions.pt", bias, output="regions")
    folder = make_case(tmp_path / "cases", 0, shape=SHAPE, seg=False)
    out = tmp_path / "pred"
    [path] = run_predict(ckpt, folder, out, probabilities=True, progress=False, postprocess=False)
    seg = np.asarray(nib.load(str(path)).dataobj)
    brain = np.asarray(nib.load(str(next(folder.glob("*flair.nii.gz")))).dataobj) != 0
    assert set(np.unique(seg[brain]).tolist()) == {label}
    assert set(np.unique(seg[~brain]).tolist()) <= {0}
    prob = np.asarray(nib.load(str(out / f"{folder.name}_prob.nii.gz")).dataobj)
    assert prob.shape == (*SHAPE, 4)  # 1 - WT, WT, TC, ET
    expected = 1 / (1 + np.exp(-np.array(bias, float)))
    np.testing.assert_allclose(
        prob[brain][:, 1:], np.broadcast_to(expected, (int(brain.sum()), 3)), atol=1e-3
    )
    np.testing.assert_allclose(prob[~brain], np.broadcast_to([1, 0, 0, 0], (int((~brain).sum()), 4)))


def test_region_rule_decodes_softmax_classes_by_hand():
    # columns: (background, NCR, ED, ET) softmax probabilities of one voxel each
    prob = np.array(
        [
            [0.4, 0.3, 0.1, 0.6, 0.1],
            [0.25, 0.3, 0.2, 0.1, 0.1],
            [0.35, 0.1, 0.2, 0.2, 0.6],
            [0.0, 0.3, 0.5, 0.1, 0.2],
        ]
    )
    assert decode(prob, "classes").tolist() == [0, 0, 3, 0, 2]
    # WT = 1 - bg, TC = NCR + ET, ET: tumour split between classes is tumour; (0.3, 0.3, 0.1, 0.3) -> NCR
    assert decode(prob, "classes", rule="regions").tolist() == [2, 1, 3, 0, 2]
    # the same as decoding the region layout (1 - WT, WT, TC, ET) of a regions model
    layout = np.stack([prob[0], 1 - prob[0], prob[1] + prob[3], prob[3]])
    assert decode(layout, "regions").tolist() == [2, 1, 3, 0, 2]
    assert decode(prob.T, "classes", axis=1, rule="regions").tolist() == [2, 1, 3, 0, 2]
    # a lower WT threshold: (0.6, 0.1, 0.2, 0.1) has WT 0.4 >= 0.3 -> edema; TC 0.2 stays below 0.5
    assert decode(prob, "classes", rule="regions", thresholds=(0.3, 0.5, 0.5)).tolist() == [2, 1, 3, 2, 2]
    # ET at 0.6: (0.1, 0.2, 0.2, 0.5) is no longer ET, but TC 0.7 -> NCR
    assert decode(prob, "classes", rule="regions", thresholds=(0.5, 0.5, 0.6)).tolist() == [2, 1, 1, 0, 2]
    for bad in ((0.0, 0.5, 0.5), (0.5, 1.5, 0.5), (0.5, 0.5)):
        with pytest.raises(LabelError, match="region_thresholds must be 3 values in"):
            decode(prob, "classes", rule="regions", thresholds=bad)
    with pytest.raises(LabelError, match="decode must be one of argmax, regions"):
        decode(prob, "classes", rule="max")
    with pytest.raises(LabelError, match="needs the 4 BraTS classes, got 2"):
        decode(prob[:2], "classes", rule="regions")


def test_predict_decode_regions_on_a_classes_checkpoint(tmp_path):
    # every brain voxel: background 0.4, NCR 0.25, ED 0.35 -> argmax background, region rule edema
    ckpt = make_checkpoint(tmp_path / "classes.pt", np.log([0.4, 0.25, 0.35, 1e-6]).tolist())
    folder = make_case(tmp_path / "cases", 0, shape=SHAPE, seg=False)
    brain = np.asarray(nib.load(str(next(folder.glob("*flair.nii.gz")))).dataobj) != 0
    for rule, label in (("argmax", 0), ("regions", 2)):
        [path] = run_predict(ckpt, folder, tmp_path / rule, progress=False, postprocess=False, decode=rule)
        seg = np.asarray(nib.load(str(path)).dataobj)
        assert set(np.unique(seg[brain]).tolist()) == {label}, rule
        assert set(np.unique(seg[~brain]).tolist()) <= {0}
    with pytest.raises(InferenceError, match="decode must be one of argmax, regions, got 'max'"):
        run_predict(ckpt, folder, tmp_path / "bad", progress=False, decode="max")
    with pytest.raises(InferenceError, match=r"region_thresholds must be 3 values in \(0, 1\]"):
        run_predict(
            ckpt, folder, tmp_path / "bad", progress=False, decode="regions", region_thresholds=[0.5, 2]
        )
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    # WT at 0.7 (the tumour probability is 0.6 everywhere): background again
    [path] = run_predict(
        ckpt, folder, tmp_path / "t07", progress=False, postprocess=False, decode="regions",
        region_thresholds=[0.7, 0.5, 0.5],
    )  # fmt: skip
    assert set(np.unique(np.asarray(nib.load(str(path)).dataobj)).tolist()) == {0}
    # the CLI and the config: predict.decode read from the checkpoint's config, --decode / --region-thresholds
    from brats.cli import main
    from brats.config import ConfigError, config_from_dict

    args = ["predict", "--checkpoint", str(ckpt), "--input", str(folder), "--no-postprocess"]
    assert main([*args, "--output", str(tmp_path / "cli"), "--decode", "regions"]) == 0
    seg = np.asarray(nib.load(str(tmp_path / "cli" / f"{folder.name}.nii.gz")).dataobj)
    assert set(np.unique(seg[brain]).tolist()) == {2}
    cli = [
        *args,
        "--output",
        str(tmp_path / "cli2"),
        "--decode",
        "regions",
        "--region-thresholds",
        "0.7",
        "0.5",
        "0.5",
    ]
    assert main(cli) == 0
    assert not np.asarray(nib.load(str(tmp_path / "cli2" / f"{folder.name}.nii.gz")).dataobj).any()
    cfg = config_from_dict({"predict": {"decode": "regions", "region_thresholds": [0.6, 0.5, 0.5]}})
    assert settings_from_checkpoint(_with_config(ckpt, cfg)).region_thresholds == (0.6, 0.5, 0.5)
    with pytest.raises(ConfigError, match="predict.region_thresholds"):
        config_from_dict({"predict": {"region_thresholds": [0.0, 0.5, 0.5]}})
    with pytest.raises(ConfigError, match=r"'predict.region_thresholds'.*needs 3 values"):
        config_from_dict({"predict": {"region_thresholds": [0.5, 0.5]}})


def _with_config(path, cfg):
    """The checkpoint at ``path`` with another config (its ``predict`` section is what matters here)."""
    from brats.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    ckpt.config = cfg
    return ckpt
