"""RandomChannelThickSlices: each channel resampled on its own as thick slices along an in-plane axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from brats.config import ConfigError, config_from_dict
from brats.synth import generate_case
from brats.train import AugmentError, build_transform
from brats.train.augment3d import build_transform_3d
from brats.train.batch_augment import build_batch_augment
from brats.train.mirror_pairs import GAP, MirrorPairs
from brats.train.thick_slices import RandomChannelThickSlices

MODS = ("t1", "t1ce", "t2", "flair")


def _out(transform: tio.Transform, image: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
    label = np.zeros(image.shape[1:], np.int64) if label is None else label
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.as_tensor(image)[..., None]),
        label=tio.LabelMap(tensor=torch.as_tensor(label)[None, ..., None]),
    )
    out = transform(subject)
    np.testing.assert_array_equal(out["label"].data[0, ..., 0].numpy(), label)  # labels untouched
    return out["image"].data[..., 0].numpy()


def _case_slice() -> tuple[np.ndarray, np.ndarray]:
    """An axial slice through the tumour of a generated case (production code), z-scored per channel as the
    patch store holds it: 0 outside the brain."""
    images, seg, _ = generate_case(0, 1, shape=(96, 96, 40))
    z = int(np.argmax((seg > 0).sum(axis=(0, 1))))
    img = np.stack([images[m][:, :, z] for m in MODS]).astype(np.float32)
    brain = img != 0
    for c in range(len(MODS)):
        v = img[c][brain[c]]
        img[c][brain[c]] = (v - v.mean()) / v.std()
    return img, seg[:, :, z].astype(np.int64)


def _by_hand(x: np.ndarray, axis: int, t: float) -> np.ndarray:
    """The slice model written out: Gaussian profile of FWHM t, a sample every t voxels (rounded to the nearest
    voxel), spread evenly back over the axis by linear interpolation; about the brain minimum, 0 outside."""
    brain = x != 0
    base = x[brain].min()
    blurred = ndimage.gaussian_filter1d(np.where(brain, x - base, 0.0), t / 2.355, axis=axis, mode="nearest")
    n = x.shape[axis]
    n_coarse = int(np.ceil((n - 1) / t)) + 1
    taken = np.take(blurred, np.rint(np.linspace(0, n - 1, n_coarse)).astype(int), axis=axis)
    lines = np.moveaxis(taken, axis, -1)
    back = np.apply_along_axis(
        lambda v: np.interp(np.arange(n), np.linspace(0, n - 1, n_coarse), v), -1, lines
    )
    return np.where(brain, base + np.moveaxis(back, -1, axis), x)


@pytest.mark.parametrize("axis", [0, 1])
def test_a_generated_slice_resampled_as_by_hand(axis):
    img, label = _case_slice()
    torch.manual_seed(0)
    out = _out(RandomChannelThickSlices((5.0, 5.0), 1.0, axes=(axis,)), img, label)
    for c in range(len(MODS)):
        np.testing.assert_allclose(out[c], _by_hand(img[c], axis, 5.0), atol=1e-4)
    np.testing.assert_array_equal(out[img == 0], 0.0)  # outside the brain stays exactly 0
    # the thick axis loses detail, the other keeps most of it
    across = np.abs(np.diff(out, axis=1 + axis)).mean() / np.abs(np.diff(img, axis=1 + axis)).mean()
    along = np.abs(np.diff(out, axis=2 - axis)).mean() / np.abs(np.diff(img, axis=2 - axis)).mean()
    assert across < 0.75 and along > across + 0.1


def test_constants_ramps_and_stripes_along_the_other_axis_pass_unchanged():
    n = 41  # 4-voxel slices fall on whole voxels (0, 4, ..., 40): the model rounds other sample positions
    ramp = np.broadcast_to(np.linspace(1.0, 3.0, n)[:, None], (n, n))  # varies along X only
    img = np.stack([np.full((n, n), 2.0), ramp, ramp.T]).astype(np.float32)
    torch.manual_seed(0)
    out = _out(RandomChannelThickSlices((4.0, 4.0), 1.0, axes=(0,)), img)
    np.testing.assert_allclose(out[0], 2.0, atol=1e-5)  # a constant
    inner = slice(
        6, n - 6
    )  # a straight line survives the blur and the linear interpolation away from the edges
    np.testing.assert_allclose(
        out[1][inner], img[1][inner], atol=1e-3
    )  # scipy truncates the Gaussian at 4 sd
    np.testing.assert_allclose(out[2], img[2], atol=1e-5)  # varies only along Y: nothing to blur along X


def test_each_channel_draws_on_its_own_and_a_seed_repeats_the_draws():
    img, label = _case_slice()
    changed = []
    for seed in range(12):
        torch.manual_seed(seed)
        out = _out(RandomChannelThickSlices((2.0, 7.0), 0.5), img, label)
        changed.append(tuple(bool(np.abs(out[c] - img[c]).max() > 1e-3) for c in range(len(MODS))))
        torch.manual_seed(seed)
        np.testing.assert_array_equal(_out(RandomChannelThickSlices((2.0, 7.0), 0.5), img, label), out)
    assert any(0 < sum(row) < len(MODS) for row in changed)  # some patches with thick and thin channels
    assert len(set(changed)) > 3
    np.testing.assert_array_equal(_out(RandomChannelThickSlices((2.0, 7.0), 0.0), img, label), img)


def test_a_mirror_pair_is_resampled_side_by_side_not_across_the_gap():
    img, label = _case_slice()
    mirror = img[:, ::-1].copy()
    wide = np.concatenate([img, np.zeros((len(MODS), img.shape[1], GAP), np.float32), mirror], axis=2)
    wide_label = np.concatenate([label, np.zeros((img.shape[1], GAP + img.shape[2]), np.int64)], axis=1)
    transform = RandomChannelThickSlices((6.0, 6.0), 1.0, axes=(1,), pair_gap=GAP)  # along the gap's axis
    torch.manual_seed(3)
    out = _out(transform, wide, wide_label)
    w = img.shape[2]
    for side, alone in ((out[:, :, :w], img), (out[:, :, w + GAP :], mirror)):
        torch.manual_seed(3)  # the same draws as for the pair
        np.testing.assert_allclose(
            side, _out(RandomChannelThickSlices((6.0, 6.0), 1.0, axes=(1,)), alone), atol=1e-5
        )
    np.testing.assert_array_equal(out[:, :, w : w + GAP], 0.0)
    torch.manual_seed(3)  # without the gap known, the sides would be blurred into it
    leaked = _out(RandomChannelThickSlices((6.0, 6.0), 1.0, axes=(1,)), wide, wide_label)
    assert np.abs(leaked[:, :, :w] - out[:, :, :w]).max() > 0.1
    with pytest.raises(ValueError, match="2 W"):
        _out(transform, img[:, :, :95])  # an odd layout is refused, not resampled wrongly


def test_pipeline_config_and_refusals():
    cfg = config_from_dict(
        {
            "patches": {"size": [48, 48], "stride": [48, 48]},
            "preprocess": {"asymmetry": True},
            "augment": {
                "spatial_p": 0.0,
                "intensity_p": 0.0,
                "recompute_asymmetry": True,
                "thick_slices": {"enabled": True},
            },
        }
    )
    steps = build_transform(cfg, "train", "brats2021").transform.transforms
    names = [type(t).__name__ for t in steps]
    assert names.index("MirrorPairs") < names.index("ChannelwiseRescaleIntensity")
    inner = steps[names.index("MirrorPairs")]
    assert isinstance(inner, MirrorPairs)
    (thick,) = inner.transforms
    assert isinstance(thick, RandomChannelThickSlices) and thick.pair_gap == GAP and thick.channel_p == 0.25
    cfg.augment.recompute_asymmetry = False  # acts on the stored channels as they are
    (thick,) = [
        t
        for t in build_transform(cfg, "train", "brats2021").transform.transforms
        if isinstance(t, RandomChannelThickSlices)
    ]
    assert thick.pair_gap == 0 and thick.thickness == (2.0, 7.0)
    for split in ("val", "test"):
        names = [type(t).__name__ for t in build_transform(cfg, split, "brats2021").transform.transforms]
        assert "RandomChannelThickSlices" not in names and "MirrorPairs" not in names
    with pytest.raises(ConfigError, match="augment.thick_slices.p"):
        config_from_dict({"augment": {"thick_slices": {"enabled": True, "p": 1.5}}})
    for bad in ([0.5, 2.0], [3.0, 2.0], [2.0]):
        cfg.augment.thick_slices.thickness = bad
        with pytest.raises(AugmentError, match=r"augment.thick_slices.thickness must be \[min, max\]"):
            build_transform(cfg, "train", "brats2021")
    batch = config_from_dict(
        {"augment": {"engine": "batch", "warp": "torch", "thick_slices": {"enabled": True}}}
    )
    with pytest.raises(AugmentError, match="augment.thick_slices is not batched"):
        build_batch_augment(batch, "brats2021")
    volumetric = config_from_dict(
        {
            "patches": {"dim": 3, "size": [32, 32, 32], "stride": [32, 32, 32]},
            "augment": {"thick_slices": {"enabled": True}},
        }
    )
    with pytest.raises(AugmentError, match="augment.thick_slices is for 2D patches only"):
        build_transform_3d(volumetric, "train", "brats2021")
    with pytest.raises(ValueError, match="2D patches"):
        RandomChannelThickSlices()(tio.Subject(image=tio.ScalarImage(tensor=torch.ones(1, 8, 8, 8))))
