"""Deep supervision (loss.deep_supervision): the weights, the heads' scales, the loss by hand, the saved model
without heads, resume with and without them, and the clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brats.checkpoint import read_checkpoint
from brats.config import config_from_dict
from brats.networks import build_model, model_from_checkpoint
from brats.train import TrainError, run_training
from brats.train.deep_supervision import (
    DeepSupervised,
    DeepSupervisionLoss,
    deep_supervised,
    stage_weights,
)
from brats.train.losses import LossError, build_loss
from tests.test_train import MODEL, SIZE, make_run, state_of, tiny_config

torch.set_num_threads(1)


def _config(**loss):
    return config_from_dict(
        {"patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}, "model": MODEL, "loss": loss}
    )


def test_stage_weights_halve_and_sum_to_one():
    assert stage_weights(0) == [1.0]
    assert stage_weights(2) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert sum(stage_weights(4)) == pytest.approx(1.0)


def test_heads_sit_on_the_stages_before_the_last():
    cfg = _config(deep_supervision=2)
    model = build_model(cfg.model, 4, 4)
    net, loss = deep_supervised(model, cfg, 4, build_loss(cfg.loss))
    assert isinstance(net, DeepSupervised) and isinstance(loss, DeepSupervisionLoss)
    # decoder_channels [32, 16, 8]: the last stage (8 channels) is the output's; heads on 16 and 32 channels
    assert [h.in_channels for h in net.heads] == [16, 32]
    logits, aux = net(torch.randn(2, 4, SIZE, SIZE))
    assert logits.shape == (2, 4, SIZE, SIZE)
    assert [a.shape for a in aux] == [(2, 4, SIZE // 2, SIZE // 2), (2, 4, SIZE // 4, SIZE // 4)]
    # the network on its own (validation, the saved model) is unchanged and keeps no features
    assert torch.equal(model.eval()(torch.ones(1, 4, SIZE, SIZE)), net.model(torch.ones(1, 4, SIZE, SIZE)))
    assert net._features == {}


def test_off_returns_the_network_and_loss_themselves():
    cfg = _config()
    model, loss = build_model(cfg.model, 4, 4), build_loss(cfg.loss)
    assert deep_supervised(model, cfg, 4, loss) == (model, loss)


def test_loss_by_hand():
    """4/7 of the loss at full size, 2/7 against every 2nd label, 1/7 against every 4th (nearest neighbour)."""
    cfg = _config(name="focal_dice")
    base = build_loss(cfg.loss)
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    logits = torch.randn(2, 4, 16, 16, generator=g)
    aux = [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 4, 4, generator=g)]
    expected = (
        4 / 7 * base(logits, target)
        + 2 / 7 * base(aux[0], target[:, ::2, ::2])
        + 1 / 7 * base(aux[1], target[:, ::4, ::4])
    )
    got = DeepSupervisionLoss(base, 2)((logits, aux), target)
    torch.testing.assert_close(got, expected)
    # the downsampled labels are torch's nearest neighbour, which here takes every 2nd / 4th pixel
    small = F.interpolate(target[:, None].float(), size=(8, 8), mode="nearest")[:, 0].long()
    assert torch.equal(small, target[:, ::2, ::2])


def test_errors_name_the_setting():
    cfg = _config(deep_supervision=3)  # 3 decoder stages: at most 2 heads
    with pytest.raises(LossError, match=r"loss.deep_supervision=3: the decoder has 3 stages, so at most 2"):
        deep_supervised(build_model(cfg.model, 4, 4), cfg, 4, build_loss(cfg.loss))
    fpn = config_from_dict({"model": {"arch": "FPN", "encoder": "resnet18"}, "loss": {"deep_supervision": 1}})
    with pytest.raises(LossError, match="needs model.arch Unet with 2D patches, got 'FPN'"):
        deep_supervised(build_model(fpn.model, 4, 4), fpn, 4, build_loss(fpn.loss))
    with pytest.raises(ValueError, match="deep_supervision"):
        config_from_dict({"loss": {"deep_supervision": 5}})


def _ds_config(out, **train):
    cfg = tiny_config(out, **train)
    cfg.loss.deep_supervision = 2
    return cfg


def test_trains_saves_no_heads_and_resumes_exactly(tmp_path):
    """2 + 2 epochs resumed == 4 in one go (the heads and their optimiser state are in last.pt); best.pt is the
    plain network, which loads for prediction; a different setting on --resume is refused in one line."""
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    run_training(_ds_config(a, epochs=4, steps_per_epoch=2), progress=False)
    run_training(_ds_config(b, epochs=2, steps_per_epoch=2), progress=False)
    ckpt = read_checkpoint(b / "checkpoints" / "last.pt")
    assert ckpt.training is not None and sorted(ckpt.training.aux_heads) == [
        "0.bias", "0.weight", "1.bias", "1.weight",
    ]  # fmt: skip
    assert not any(k.startswith(("heads.", "model.")) for k in ckpt.weights)
    model, _ = model_from_checkpoint(b / "checkpoints" / "best.pt")
    assert model(torch.zeros(1, 4, SIZE, SIZE)).shape == (1, 4, SIZE, SIZE)

    off = tiny_config(b, epochs=4, steps_per_epoch=2)
    with pytest.raises(TrainError, match="loss.deep_supervision is 0 but the checkpoint was trained with"):
        run_training(off, resume=True, progress=False)
    one = _ds_config(b, epochs=4, steps_per_epoch=2)
    one.loss.deep_supervision = 1
    with pytest.raises(TrainError, match="does not match the checkpoint's heads \\(2 stages\\)"):
        run_training(one, resume=True, progress=False)

    run_training(_ds_config(b, epochs=4, steps_per_epoch=2), resume=True, progress=False)
    sa, sb = state_of(a / "checkpoints" / "last.pt"), state_of(b / "checkpoints" / "last.pt")
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-5, msg=key)
    ha = read_checkpoint(a / "checkpoints" / "last.pt").training.aux_heads
    hb = read_checkpoint(b / "checkpoints" / "last.pt").training.aux_heads
    for key in ha:
        torch.testing.assert_close(ha[key], hb[key], rtol=0, atol=1e-5, msg=key)


def test_heads_change_the_training():
    """The auxiliary terms reach the network: one step with and without them gives different weights."""
    cfg_on, cfg_off = _config(deep_supervision=2), _config()
    x = torch.randn(4, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (4, SIZE, SIZE), generator=torch.Generator().manual_seed(2))
    states = []
    for cfg in (cfg_on, cfg_off):
        torch.manual_seed(0)
        model = build_model(cfg.model, 4, 4)
        net, loss = deep_supervised(model, cfg, 4, build_loss(cfg.loss))
        loss(net(x), y).backward()
        states.append(next(model.encoder.parameters()).grad.clone())
    assert not torch.allclose(states[0], states[1])
