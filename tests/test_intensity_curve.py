"""augment.intensity_curve: a random monotone piecewise-linear curve per channel, by hand and against np.interp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from test_mirror_pairs import _patch, _subject

from brats.config import config_from_dict
from brats.train import build_transform
from brats.train.augment import AugmentError
from brats.train.intensity_curve import RandomIntensityCurve, apply_curve, curve_knots
from brats.train.mirror_pairs import MirrorPairs


def _brain(seed: int = 0) -> np.ndarray:
    """3 channels of positive values in a disc, exactly 0 outside, (3, 40, 40)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :40]
    disc = np.hypot(xx - 20, yy - 20) < 16
    return (rng.uniform(0.5, 3.0, size=(3, 40, 40)) * disc).astype(np.float32)


def _run(transform, img: np.ndarray) -> np.ndarray:
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(img)[..., None]))
    return transform(subject)["image"].data[..., 0].numpy()


def test_apply_curve_matches_np_interp_inside_and_extends_the_end_segments():
    t = torch.tensor([-1.0, 0.0, 2.0, 5.0])
    y = torch.tensor([-1.0, 1.0, 1.5, 5.0])
    x = torch.linspace(-1, 5, 61)
    np.testing.assert_allclose(
        apply_curve(x, t, y).numpy(), np.interp(x.numpy(), t.numpy(), y.numpy()), atol=1e-6
    )
    # beyond the ends, the end segments go on: slope 2 below -1, slope 7/6 above 5
    out = apply_curve(torch.tensor([-2.0, 6.0]), t, y).tolist()
    assert out == pytest.approx([-3.0, 5.0 + 3.5 / 3])


def test_knots_are_quantiles_or_evenly_spaced_when_they_coincide():
    assert curve_knots(torch.arange(9.0), 3).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    flat = torch.tensor([1.0] * 20 + [3.0])  # every quantile but the maximum is 1: evenly spaced instead
    assert curve_knots(flat, 3).tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert curve_knots(torch.ones(5), 3) is None


def test_zero_strength_is_the_identity():
    img = _brain()
    np.testing.assert_allclose(_run(RandomIntensityCurve(0.0, p=1), img), img, rtol=1e-6)


def test_the_curve_is_monotone_keeps_the_range_and_zeros_and_changes_the_contrast():
    img = _brain()
    torch.manual_seed(0)
    out = _run(RandomIntensityCurve(1.0, knots=4, p=1), img)
    inside = img[0] != 0
    np.testing.assert_array_equal(out[:, ~inside], 0.0)
    for c in range(3):
        v, w = img[c][inside], out[c][inside]
        order = np.argsort(v, kind="stable")
        assert (np.diff(w[order]) >= -1e-6).all()  # what was brighter stays at least as bright
        np.testing.assert_allclose([w.min(), w.max()], [v.min(), v.max()], rtol=1e-6)
        # piecewise linear with 5 segments: the local slope takes several values, not 1
        slopes = np.diff(w[order]) / np.maximum(np.diff(v[order]), 1e-9)
        big = np.diff(v[order]) > 1e-3
        assert np.ptp(slopes[big]) > 0.3


def test_symmetric_tissue_keeps_zero_asymmetry_under_mirror_pairs():
    image, label, brain = _patch()
    torch.manual_seed(2)
    out = MirrorPairs([RandomIntensityCurve(1.0, p=1)], channels=2)(_subject(image, label))["image"].data[
        ..., 0
    ]
    out = out.numpy()
    mirror = np.flip(label, axis=0) > 0
    healthy = brain & (label == 0) & ~mirror
    assert np.median(np.abs(out[2:, healthy])) < 0.02  # one curve for both sides: symmetric stays near 0
    both = image[2:] != 0
    assert (np.sign(out[2:][both]) * np.sign(image[2:][both]) >= 0).all()  # a monotone curve keeps each sign
    assert not np.allclose(out[:2], image[:2])


def test_pipeline_wiring_and_config_errors():
    base = {
        "patches": {"size": [40, 40], "stride": [40, 40]},
        "augment": {"spatial_p": 0.0, "intensity_p": 0.0},
    }
    base["augment"]["intensity_curve"] = {"enabled": True, "p": 1.0}
    cfg = config_from_dict(base)
    names = [type(t).__name__ for t in build_transform(cfg, "train", "brats2021").transform.transforms]
    assert names.index("RandomIntensityCurve") < names.index("ChannelwiseRescaleIntensity")
    val = [type(t).__name__ for t in build_transform(cfg, "val", "brats2021").transform.transforms]
    assert "RandomIntensityCurve" not in val
    cfg.augment.intensity_curve.p = 1.5
    with pytest.raises(AugmentError, match=r"augment\.intensity_curve\.p must be a probability"):
        build_transform(cfg, "train", "brats2021")
    cfg.augment.intensity_curve.p = 0.5
    cfg.augment.intensity_curve.knots = 0
    with pytest.raises(AugmentError, match=r"augment\.intensity_curve\.knots must be an integer >= 1"):
        build_transform(cfg, "train", "brats2021")
