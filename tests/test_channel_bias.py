"""RandomChannelBias: a smooth multiplicative gain of its own per channel, before the rescaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from brats.config import ConfigError, config_from_dict
from brats.synth import generate_case
from brats.train import AugmentError, build_transform
from brats.train.channel_bias import RandomChannelBias, smooth_field

SIZE = 48


def _out(transform: tio.Transform, image: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
    label = np.zeros(image.shape[1:], np.int64) if label is None else label
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.as_tensor(image)[..., None]),
        label=tio.LabelMap(tensor=torch.as_tensor(label)[None, ..., None]),
    )
    return transform(subject)["image"].data[..., 0].numpy()


def _disc(channels: int = 4) -> np.ndarray:
    """A brain disc of value 2 with one voxel at 1 (the channel's minimum), exactly 0 outside."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = np.hypot(xx - SIZE / 2, yy - SIZE / 2) < SIZE / 2.2
    img = np.where(disc, 2.0, 0.0).astype(np.float32)
    img[SIZE // 2, SIZE // 2] = 1.0
    return np.repeat(img[None], channels, axis=0)


def test_smooth_field_has_zero_mean_unit_std_and_is_smooth():
    g = torch.Generator().manual_seed(0)
    for grid in (2, 3, 5):
        f = smooth_field((SIZE, 40), grid, generator=g)
        assert f.shape == (SIZE, 40)
        assert abs(float(f.mean())) < 1e-5 and abs(float(f.std()) - 1.0) < 1e-4
        # neighbours differ by a small fraction of the field's spread (unit white noise: 1.13 on average), and
        # less so with fewer control points: 3.3 x (grid - 1) / 40 was the largest over 900 draws
        step = max(float(f.diff(dim=0).abs().mean()), float(f.diff(dim=1).abs().mean()))
        assert step < 5.0 * (grid - 1) / 40
    np.testing.assert_array_equal(smooth_field((8, 8), 1).numpy(), 0.0)


def test_each_channel_gets_its_own_smooth_gain_about_its_minimum():
    img = _disc()
    brain = img[0] != 0
    torch.manual_seed(0)
    out = _out(RandomChannelBias(max_std=0.4, grid=3, p=1.0), img)
    np.testing.assert_array_equal(out[:, ~brain], 0.0)  # outside the brain stays exactly 0
    np.testing.assert_allclose(out[:, SIZE // 2, SIZE // 2], 1.0, atol=1e-6)  # the minimum is the fixed point
    rest = brain & (img[0] == 2.0)
    log_gain = np.log(out[:, rest] - 1.0)  # (x - lo) was 1 for every other brain voxel
    stds = log_gain.std(axis=1)  # the field has unit std over the whole patch, not over the disc: some slack
    assert np.all(stds <= 0.4 * 1.3) and stds.max() > 0.05
    assert len({round(float(s), 4) for s in stds}) == 4  # four channels, four draws
    assert not np.allclose(log_gain[0], log_gain[1], atol=1e-3)


def test_no_amplitude_no_change_and_bad_arguments():
    img = _disc()
    np.testing.assert_array_equal(_out(RandomChannelBias(max_std=0.0, p=1.0), img), img)
    for kwargs, match in (({"max_std": -0.1}, "max_std must be >= 0"), ({"max_std": 0.2, "grid": 1}, "grid")):
        with pytest.raises(ValueError, match=match):
            RandomChannelBias(**kwargs)
    volume = tio.Subject(image=tio.ScalarImage(tensor=torch.ones(1, 8, 8, 8)))
    with pytest.raises(ValueError, match="2D patches"):
        RandomChannelBias(0.2, p=1.0)(volume)


def test_on_a_synthetic_case_the_edema_to_brain_ratio_varies_across_the_patch():
    """On a generated case (production code): after the transform the FLAIR/T2 ratio of the same tissue is no
    longer constant across the slice, because the two sequences got different fields; labels unchanged."""
    images, seg, _ = generate_case(0, 1, shape=(96, 96, 40))
    z = int(np.argmax((seg == 2).sum(axis=(0, 1))))
    img = np.stack([images[m][:, :, z] for m in ("t1", "t1ce", "t2", "flair")]).astype(np.float32)
    label = seg[:, :, z].astype(np.int64)
    brain = img[3] != 0
    torch.manual_seed(1)
    out = _out(RandomChannelBias(max_std=0.4, p=1.0), img, label)
    lo = img[:, brain].min(axis=1)
    gain = (out[:, brain] - lo[:, None]) / np.maximum(img[:, brain] - lo[:, None], 1e-6)
    ok = (img[:, brain] - lo[:, None]).min(axis=0) > 0.05
    assert np.log(gain[3][ok] / gain[2][ok]).std() > 0.02
    np.testing.assert_array_equal(out[:, ~brain], 0.0)


def test_pipeline_and_config():
    cfg = config_from_dict(
        {
            "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
            "augment": {"spatial_p": 0.0, "intensity_p": 0.0, "channel_bias": {"enabled": True, "p": 1.0}},
        }
    )
    names = [type(t).__name__ for t in build_transform(cfg, "train", "brats2021").transform.transforms]
    assert names.index("RandomChannelBias") < names.index("ChannelwiseRescaleIntensity")
    for split in ("val", "test"):
        names = [type(t).__name__ for t in build_transform(cfg, split, "brats2021").transform.transforms]
        assert "RandomChannelBias" not in names
    for key, value in (("max_std", -0.5), ("p", 1.5), ("grid", 1)):
        with pytest.raises(ConfigError, match=f"augment.channel_bias.{key}"):
            config_from_dict({"augment": {"channel_bias": {"enabled": True, key: value}}})
    built_in_code = config_from_dict({"augment": {"channel_bias": {"enabled": True}}})
    built_in_code.augment.channel_bias.max_std = -1.0  # past the loader's range check
    with pytest.raises(AugmentError, match="augment.channel_bias.max_std"):
        build_transform(built_in_code, "train", "brats2021")
    # the 3D pipeline refuses it by name: tests/test_volumetric.py
