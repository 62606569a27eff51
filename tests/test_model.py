"""Model factory, checkpoints and losses."""

from __future__ import annotations

import math

import pytest
import torch

from brats.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    TrainingState,
    new_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from brats.config import Config, LossConfig, ModelConfig
from brats.networks import ModelError, build_model, model_from_checkpoint, valid_architectures
from brats.train import LossError, build_loss

torch.set_num_threads(1)

TINY = {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}


def tiny_cfg(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def test_build_unet_shapes():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), in_channels=3, classes=4)
    assert type(model).__name__ == "Unet"
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4, 32, 32) and out.dtype == torch.float32


@pytest.mark.parametrize("arch", ["UnetPlusPlus", "Linknet"])
def test_other_architectures_by_name(arch):
    model = build_model(tiny_cfg(arch=arch, encoder_depth=3), in_channels=4, classes=4)
    assert model(torch.randn(1, 4, 32, 32)).shape == (1, 4, 32, 32)


def test_output_size_is_checked():
    # smp's FPN upsamples its stride-4 output by 4: with encoder_depth 3 the logits come out 4x too large
    with pytest.raises(ModelError, match=r"FPN with encoder_depth 3 maps a 64x64 input to \(256, 256\)"):
        build_model(tiny_cfg(arch="fpn"), 4)
    model = build_model(ModelConfig(arch="FPN", encoder="resnet18"), 4)
    assert model(torch.randn(1, 4, 64, 64)).shape == (1, 4, 64, 64)


def test_errors_list_valid_values():
    with pytest.raises(ModelError, match=r"did you mean 'Unet'\?.*UnetPlusPlus"):
        build_model(tiny_cfg(arch="Unett"), 4)
    assert "Unet" in valid_architectures() and "FPN" in valid_architectures()
    with pytest.raises(ModelError, match=r"Unknown model.encoder 'resnet19'.*resnet18.*valid encoders:"):
        build_model(tiny_cfg(encoder="resnet19"), 4)
    with pytest.raises(ModelError, match=r"one value per encoder stage.*\[32, 16, 8\]"):
        build_model(tiny_cfg(decoder_channels=[64, 32, 16, 8]), 4)
    with pytest.raises(ModelError, match="needs patches.dim: 2, got 3"):
        build_model(tiny_cfg(), 4, dim=3)


def test_no_download_by_default():
    assert ModelConfig().encoder_weights is None


def test_weights_path_whole_model_and_encoder(tmp_path):
    torch.manual_seed(1)
    source = build_model(tiny_cfg(), 4)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pt")
    torch.manual_seed(2)
    whole = build_model(tiny_cfg(weights_path=str(tmp_path / "model.pt")), 4)
    for k, v in source.state_dict().items():
        assert torch.equal(whole.state_dict()[k], v), k
    torch.manual_seed(2)
    enc = build_model(tiny_cfg(weights_path=str(tmp_path / "encoder.pt")), 4)
    assert all(torch.equal(enc.encoder.state_dict()[k], v) for k, v in source.encoder.state_dict().items())
    w_src, w_enc = source.decoder.state_dict(), enc.decoder.state_dict()
    assert not all(torch.equal(w_enc[k], v) for k, v in w_src.items())  # decoder stays freshly initialised
    with pytest.raises(ModelError, match="not found"):
        build_model(tiny_cfg(weights_path=str(tmp_path / "missing.pt")), 4)
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="does not match the model"):
        build_model(tiny_cfg(weights_path=str(tmp_path / "other.pt")), 4)


def test_smp_kwargs_reach_the_network_and_survive_a_checkpoint(tmp_path):
    plain = build_model(tiny_cfg(), 4)
    scse = build_model(tiny_cfg(decoder_channels=[64, 32, 16], kwargs={"decoder_attention_type": "scse"}), 4)
    # scSE adds one channel and one spatial squeeze-excitation block per decoder stage (3 here)
    assert sum(type(m).__name__ == "SCSEModule" for m in scse.modules()) == 2 * 3
    assert sum(type(m).__name__ == "SCSEModule" for m in plain.modules()) == 0
    assert scse(torch.randn(1, 4, 32, 32)).shape == (1, 4, 32, 32)
    cfg = Config()
    cfg.model = tiny_cfg(decoder_channels=[64, 32, 16], kwargs={"decoder_attention_type": "scse"})
    ckpt = new_checkpoint(scse.state_dict(), cfg, classes=4, training=None)
    rebuilt, _ = model_from_checkpoint(write_checkpoint(ckpt, tmp_path / "scse.pt"))
    assert sum(type(m).__name__ == "SCSEModule" for m in rebuilt.modules()) == 2 * 3


def test_smp_kwargs_errors_name_the_key():
    with pytest.raises(
        ModelError, match=r"model.kwargs.decoder_attention_typ \(did you mean 'decoder_attention_type'"
    ):
        build_model(tiny_cfg(kwargs={"decoder_attention_typ": "scse"}), 4)
    for key in ("in_channels", "activation", "aux_params", "decoder_channels", "encoder_name"):
        with pytest.raises(ModelError, match=rf"^model.kwargs.{key}: set by the toolkit"):
            build_model(tiny_cfg(kwargs={key: None}), 4)
    with pytest.raises(
        ModelError, match=r"Unknown key model.kwargs.drop_path_rate for Unet; valid keys: decoder_"
    ):
        build_model(tiny_cfg(kwargs={"drop_path_rate": 0.1}), 4)  # smp would hand it to the encoder


def test_decoder_instance_norm_builds_with_affine_weights_and_fails_in_one_line_without():
    norm = {"type": "instancenorm", "affine": True}
    model = build_model(tiny_cfg(kwargs={"decoder_use_norm": norm}), 4)
    kinds = [type(m).__name__ for m in model.decoder.modules()]
    # two convolutions a decoder stage, three stages
    assert kinds.count("InstanceNorm2d") == 2 * 3 and "BatchNorm2d" not in kinds
    one_line = r"^model.kwargs.decoder_use_norm: .*\{type: instancenorm, affine: true\}$"
    for bad in (
        "instancenorm",
        "InstanceNorm",
        {"type": "instancenorm"},
        {"type": "instancenorm", "affine": 0},
    ):
        with pytest.raises(ModelError, match=one_line):
            build_model(tiny_cfg(kwargs={"decoder_use_norm": bad}), 4)


def test_checkpoint_round_trip(tmp_path):
    cfg = Config()
    cfg.model = tiny_cfg(weights_path=str(tmp_path / "gone.pt"))  # not needed (nor read) when loading
    cfg.data.modalities = ["t1ce", "flair"]
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), 2).eval()
    state = TrainingState(
        optimizer={}, scheduler={}, scaler={}, epoch=3, best_score=0.5, best_metric="val_loss", rng={}
    )
    ckpt = new_checkpoint(model.state_dict(), cfg, classes=4, training=state)
    path = write_checkpoint(ckpt, tmp_path / "ck" / "best.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary file left
    loaded = read_checkpoint(path)
    assert loaded.training.epoch == 3 and loaded.label_scheme.source_labels == (0, 1, 2, 4)
    assert loaded.in_channels == 2 and loaded.normalization.method == "zscore"
    rebuilt, ck = model_from_checkpoint(path)
    assert not rebuilt.training and ck.config.data.modalities == ["t1ce", "flair"]
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="not a brats checkpoint"):
        read_checkpoint(tmp_path / "dict.pt")


def test_checkpoint_version_and_normalisation_checks(tmp_path):
    cfg = Config()
    cfg.model = tiny_cfg()
    raw = new_checkpoint(build_model(tiny_cfg(), 4).state_dict(), cfg, classes=4).to_dict()
    for version, why in ((1, "older brats"), (CHECKPOINT_VERSION + 1, "newer")):
        torch.save({**raw, "version": version}, tmp_path / "v.pt")
        with pytest.raises(CheckpointError, match=why):
            read_checkpoint(tmp_path / "v.pt")
    torch.save({**raw, "normalization": None}, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="no normalisation record"):
        read_checkpoint(tmp_path / "n.pt")
    torch.save({**raw, "normalization": {**raw["normalization"], "method": "percentile"}}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="contradicts"):
        read_checkpoint(tmp_path / "c.pt")


# -- losses -----------------------------------------------------------------------------------------------------

LN2 = math.log(2)


@pytest.mark.parametrize(
    "logit, gamma, expected",
    [
        # zero logits: sigmoid 0.5 for every class, p_t = 0.5: each class gives (0.5 ** gamma) * ln 2,
        # and smp averages the 4 per-class losses
        (0.0, 2.0, 0.25 * LN2),
        (0.0, 0.0, LN2),
        # logits +2 for the target class, -2 elsewhere: p_t = sigmoid(2) = 0.880797 for every class:
        # (1 - 0.880797) ** 2 * -ln(0.880797) = 0.0018035628
        (2.0, 2.0, 0.0018035628),
    ],
)
def test_focal_loss_hand_computed(logit, gamma, expected):
    target = torch.tensor([[[0, 1], [2, 3]]])  # (1, 2, 2)
    logits = torch.full((1, 4, 2, 2), -logit)
    logits.scatter_(1, target[:, None], logit)
    loss = build_loss(LossConfig(name="focal", gamma=gamma))(logits, target)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_dice_term_hand_computed():
    # zero logits -> softmax 0.25 everywhere. Target: 2 pixels of class 0, 2 of class 1.
    # class 0: intersection 0.5, cardinality 1 + 2 -> Dice 1/3, loss 2/3; class 1 the same;
    # classes 2, 3 are absent -> 0. Mean over 4 classes: 1/3.
    target = torch.tensor([[[0, 0], [1, 1]]])
    logits = torch.zeros(1, 4, 2, 2)
    cfg = LossConfig(name="focal_dice", gamma=2.0, focal_weight=0.0, dice_weight=1.0)
    assert float(build_loss(cfg)(logits, target)) == pytest.approx(1 / 3, rel=1e-5)
    cfg = LossConfig(name="focal_dice", gamma=2.0, focal_weight=0.5, dice_weight=2.0)
    assert float(build_loss(cfg)(logits, target)) == pytest.approx(0.5 * 0.25 * LN2 + 2 / 3, rel=1e-5)


def test_ce_dice_hand_computed():
    # zero logits -> softmax 0.25 everywhere: cross-entropy ln 4 per pixel; the Dice term is 1/3 (above).
    target = torch.tensor([[[0, 0], [1, 1]]])
    logits = torch.zeros(1, 4, 2, 2)
    cfg = LossConfig(name="ce_dice", focal_weight=0.5, dice_weight=2.0)
    assert float(build_loss(cfg)(logits, target)) == pytest.approx(0.5 * math.log(4) + 2 / 3, rel=1e-5)
    # cross-entropy only: logit 2 on the target class, 0 elsewhere -> -ln(e^2 / (e^2 + 3)) per pixel
    logits = torch.zeros(1, 4, 2, 2).scatter_(1, target[:, None], 2.0)
    cfg = LossConfig(name="ce_dice", gamma=5.0, focal_weight=1.0, dice_weight=0.0)  # gamma is not used
    expected = -math.log(math.exp(2) / (math.exp(2) + 3))
    assert float(build_loss(cfg)(logits, target)) == pytest.approx(expected, rel=1e-5)


def test_ce_dice_matches_monai_dice_ce():
    """ce_dice equals MONAI's DiceCELoss (softmax, one-hot target, Dice over the batch) when every class is
    present in the target (smp's Dice scores an absent class 0; MONAI's scores it 1 - smooth / smooth)."""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16, 16)
    target = torch.randint(0, 4, (3, 16, 16))
    ours = build_loss(LossConfig(name="ce_dice", focal_weight=1.0, dice_weight=1.0))(logits, target)
    ref = DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        batch=True,
        smooth_nr=0.0,
        smooth_dr=1e-7,
        lambda_dice=1.0,
        lambda_ce=1.0,
    )(logits, target[:, None])
    assert float(ours) == pytest.approx(float(ref), rel=1e-4)


def test_ce_dice_regions_is_binary_cross_entropy():
    """With region outputs (sigmoids) the cross-entropy of ce_dice is torch's binary cross-entropy of each
    region's sigmoid against its mask (WT, TC, ET), averaged over every element."""
    from brats.outputs import region_targets

    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    cfg = LossConfig(name="ce_dice", focal_weight=1.0, dice_weight=0.0)
    ours = build_loss(cfg, regions=True)(logits, target)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, region_targets(target).float())
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)


def test_loss_is_float32_under_autocast():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8).bfloat16()
    target = torch.randint(0, 4, (2, 8, 8))
    fn = build_loss(LossConfig(name="focal_dice"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(logits, target)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(fn(logits.float(), target)), rel=1e-6)


def test_loss_config_errors():
    with pytest.raises(LossError, match="gamma"):
        build_loss(LossConfig(gamma=-1))
    with pytest.raises(LossError, match="not both 0"):
        build_loss(LossConfig(name="focal_dice", focal_weight=0, dice_weight=0))


def test_unused_encoder_stages_are_frozen():
    # smp keeps resnet18's layer3 and layer4 at encoder_depth 3; they get no gradient (and would stall DDP)
    model = build_model(tiny_cfg(), 4)
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"layer3", "layer4"}
    assert all(p.grad is None for p in model.parameters())
    full = build_model(ModelConfig(encoder="resnet18"), 4)
    assert all(p.requires_grad for p in full.parameters())
