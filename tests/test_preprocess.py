"""Normalisation inside the brain and box helpers: hand-computed values and MONAI as a reference."""

from __future__ import annotations

import numpy as np
import pytest

from brats.errors import BratsError
from brats.preprocess import bounding_box, brain_mask, crop, normalize, normalize_with, pad_to


def _two_channels() -> np.ndarray:
    """(2, 5, 1, 1): voxels 0..3 are brain (some modality non-zero), voxel 4 is background."""
    img = np.zeros((2, 5, 1, 1), np.float32)
    img[0, :, 0, 0] = [1, 2, 3, 0, 0]
    img[1, :, 0, 0] = [0, 4, 4, 8, 0]
    return img


def test_brain_mask_is_any_modality_nonzero():
    assert brain_mask(_two_channels())[:, 0, 0].tolist() == [True, True, True, True, False]


def test_zscore_hand_computed():
    out = normalize(_two_channels(), "zscore")
    assert out.dtype == np.float32
    # channel 0 over the mask: [1, 2, 3, 0], mean 1.5, std sqrt(1.25) = 1.118034
    np.testing.assert_allclose(out[0, :, 0, 0], [-0.4472136, 0.4472136, 1.3416408, -1.3416408, 0], atol=1e-6)
    # channel 1 over the mask: [0, 4, 4, 8], mean 4, std sqrt(8) = 2.828427
    np.testing.assert_allclose(out[1, :, 0, 0], [-1.4142135, 0, 0, 1.4142135, 0], atol=1e-6)


def test_zscore_docstring_example():
    img = np.zeros((1, 4, 1, 1), np.float32)
    img[0, :3, 0, 0] = [1, 2, 3]
    np.testing.assert_allclose(normalize(img)[0, :, 0, 0], [-1.2247449, 0, 1.2247449, 0], atol=1e-6)


def test_percentile_hand_computed():
    img = np.zeros((1, 103, 1, 1), np.float32)
    img[0, :101, 0, 0] = np.arange(1, 102)  # brain values 1..101; two background voxels
    out = normalize(img, "percentile", percentiles=(10, 90))[0, :, 0, 0]
    # p10 = 11, p90 = 91 (numpy linear): (v - 11) / 80, clipped to [0, 1]
    assert out[0] == 0.0 and out[10] == 0.0  # v = 1 and v = 11
    assert out[50] == pytest.approx(0.5)  # v = 51
    assert out[30] == pytest.approx(20 / 80)  # v = 31
    assert out[90] == 1.0 and out[100] == 1.0  # v = 91 and 101
    assert out[101] == 0.0 and out[102] == 0.0  # background stays 0


def test_zscore_matches_monai_when_channels_share_the_mask():
    from monai.transforms import NormalizeIntensity

    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, (3, 10, 9, 4)).astype(np.float32)
    img[:, :2] = 0  # background slab, identical in every channel
    ref = NormalizeIntensity(nonzero=True, channel_wise=True)(img)
    np.testing.assert_allclose(normalize(img, "zscore"), np.asarray(ref), atol=1e-5)


def test_background_zero_and_degenerate_cases():
    img = np.zeros((2, 3, 3, 3), np.float32)
    assert not normalize(img).any()  # empty brain -> zeros
    img[0, 1, 1, 1] = img[0, 1, 1, 2] = 5.0  # channel 0 constant inside the brain, channel 1 all zero
    for method in ("zscore", "percentile"):
        out = normalize(img, method)
        assert np.isfinite(out).all() and not out.any()


def test_normalize_with_config_section_and_bad_input():
    from brats.config import PreprocessConfig

    img = _two_channels()
    np.testing.assert_array_equal(
        normalize_with(img, PreprocessConfig(normalization="percentile", percentiles=[0.0, 100.0])),
        normalize(img, "percentile", (0.0, 100.0)),
    )
    assert normalize_with(img, {"normalization": "zscore"}).shape == img.shape
    with pytest.raises(BratsError, match="zscor"):
        normalize(img, "zscor")
    with pytest.raises(BratsError, match="percentiles"):
        normalize(img, "percentile", (90, 10))


def test_bounding_box_crop_pad():
    m = np.zeros((5, 6, 4), bool)
    m[1:3, 2, 1:4] = True
    box = bounding_box(m)
    assert box == (slice(1, 3), slice(2, 3), slice(1, 4))
    assert bounding_box(m, margin=1) == (slice(0, 4), slice(1, 4), slice(0, 4))
    assert bounding_box(np.zeros((2, 3), bool)) == (slice(0, 2), slice(0, 3))
    img = np.arange(2 * 5 * 6 * 4).reshape(2, 5, 6, 4)
    assert crop(img, box).shape == (2, 2, 1, 3)
    assert crop(img, box)[1, 0, 0, 0] == img[1, 1, 2, 1]
    padded = pad_to(img, (7, 6, 2))
    assert padded.shape == (2, 7, 6, 4)
    np.testing.assert_array_equal(padded[:, :5], img)
    assert not padded[:, 5:].any()
