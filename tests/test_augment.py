"""Augmentation pipelines: label alignment through every spatial transform, remapping, rescaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from brats.config import Config, config_from_dict
from brats.labels import LabelError
from brats.preprocess import nonzero_mask, rescale_batch
from brats.train import AugmentError, ChannelwiseRescaleIntensity, build_transform, spatial_transforms

torch.set_num_threads(1)

SIZE = 64


def label_map(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Nested discs and a bar with classes 1, 2, 3 on a 0 background (uint8, (size, size))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.uint8)
    cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
    d = np.hypot(xx - cx, yy - cy)
    lab[d < size / 4] = 2
    lab[d < size / 7] = 3
    lab[d < size / 14] = 1
    lab[5:9, 4 : size - 10] = 1  # a thin structure near the border
    return lab


def all_on_config(**augment) -> Config:
    """Every spatial transform enabled, with p = 1 and no intensity changes (image values stay labels)."""
    aug = {
        "spatial_p": 1.0,
        "intensity_p": 0.0,
        "rescale": {"enabled": False},
        "anisotropy": {"enabled": True},
        "elastic": {"weight": 1.0},
    }
    aug.update(augment)
    return config_from_dict({"patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}, "augment": aug})


def disagreement(image: np.ndarray, label: np.ndarray, radius: int) -> int:
    """Voxels where round(image) != label, ignoring those within ``radius`` of a label edge."""
    size = 2 * radius + 1
    uniform = ndimage.maximum_filter(label, size=size, mode="nearest") == ndimage.minimum_filter(
        label, size=size, mode="nearest"
    )
    return int(((np.rint(image) != label) & uniform).sum())


# Interpolation reaches this far from an edge: none for flips, one voxel for linear resampling; the
# anisotropy transform blurs intensities over up to 3 voxels (downsampling <= 3) and leaves labels alone.
RADIUS = {"flip": 0, "affine": 1, "elastic": 1, "anisotropy": 3}


@pytest.mark.parametrize("warp", ["torchio", "torch"])
@pytest.mark.parametrize("name", ["flip", "affine", "anisotropy", "elastic"])
def test_each_spatial_transform_keeps_labels_aligned(name, warp):
    cfg = all_on_config(warp=warp)
    transforms = spatial_transforms(cfg.augment)
    assert set(transforms) == {"flip", "affine", "anisotropy", "elastic"}
    torch.manual_seed(1)
    for seed in range(6):
        lab = label_map(seed=seed)
        subject = tio.Subject(
            image=tio.ScalarImage(tensor=torch.as_tensor(lab, dtype=torch.float32)[None, ..., None]),
            label=tio.LabelMap(tensor=torch.as_tensor(lab, dtype=torch.int64)[None, ..., None]),
        )
        out = transforms[name](subject)
        img, lbl = out["image"].data[0, ..., 0].numpy(), out["label"].data[0, ..., 0].numpy()
        assert img.shape == lbl.shape == (SIZE, SIZE)
        assert set(np.unique(lbl)) <= {0, 1, 2, 3}  # nearest neighbour: no new label values
        assert disagreement(img, lbl, RADIUS[name]) == 0, name
        if name in ("affine", "elastic"):
            assert not np.array_equal(lbl, lab), "the transform should move the labels"


def test_misalignment_is_detected():
    """Negative control: a one-voxel shift between image and label fails the check."""
    lab = label_map()
    assert disagreement(np.roll(lab, 1, axis=0).astype(float), lab, 1) == 0  # hidden by a 1-voxel band
    assert disagreement(np.roll(lab, 3, axis=0).astype(float), lab, 1) > 0
    assert disagreement(np.flip(lab, 1).astype(float), lab, 1) > 0


@pytest.mark.parametrize("warp", ["torchio", "torch"])
def test_train_pipeline_keeps_labels_aligned(warp):
    """The whole train pipeline (brats2023: identity remap) on image == labels, many random draws."""
    cfg = all_on_config(warp=warp)
    transform = build_transform(cfg, "train", "brats2023")
    torch.manual_seed(0)
    moved = 0
    for i in range(24):
        lab = label_map(seed=i)
        out = transform({"image": lab[None].astype(np.float32), "label": lab, "index": i})
        img, lbl = out["image"][0].numpy(), out["label"].numpy()
        assert disagreement(img, lbl, 3) == 0
        moved += not np.array_equal(lbl, lab)
    assert moved >= 12


def test_remap_and_output_types():
    cfg = config_from_dict({"patches": {"size": [32, 32], "stride": [32, 32]}})
    lab = np.zeros((32, 32), np.uint8)
    lab[4:8, 4:8], lab[10:12, 10:12], lab[20:24, 20:24] = 1, 2, 4
    img = np.random.default_rng(0).normal(size=(4, 32, 32)).astype(np.float32)
    out = build_transform(cfg, "val", "brats2021")({"image": img, "label": lab, "index": 7})
    assert out["index"] == 7
    assert out["image"].dtype == torch.float32 and out["image"].shape == (4, 32, 32)
    assert out["label"].dtype == torch.int64 and out["label"].shape == (32, 32)
    expected = lab.astype(np.int64)
    expected[lab == 4] = 3
    np.testing.assert_array_equal(out["label"].numpy(), expected)
    # ET = 3 is not a brats2021 source label: an error, never a silent mapping
    bad = lab.copy()
    bad[0, 0] = 3
    with pytest.raises(LabelError, match=r"\[3\]"):
        build_transform(cfg, "val", "brats2021")({"image": img, "label": bad, "index": 0})


def test_crop_or_pad_to_patch_size():
    cfg = config_from_dict({"patches": {"size": [32, 32], "stride": [32, 32]}})
    lab = np.zeros((30, 36), np.uint8)
    lab[10:20, 10:20] = 2
    out = build_transform(cfg, "test", "brats2021")({"image": np.ones((2, 30, 36), np.float32), "label": lab})
    assert out["image"].shape == (2, 32, 32) and out["label"].shape == (32, 32)
    assert int((out["label"] == 2).sum()) == 100  # the tumour is inside the kept centre


def test_val_is_deterministic_and_train_is_seeded():
    cfg = config_from_dict({"patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}})
    lab = label_map()
    img = np.stack([lab * 1.0 + 0.5 * (lab > 0), lab * 2.0 + 1.0]).astype(np.float32)
    sample = {"image": img, "label": lab, "index": 0}
    val = build_transform(cfg, "val", "brats2023")
    np.testing.assert_array_equal(val(sample)["image"], val(sample)["image"])
    train = build_transform(cfg, "train", "brats2023")
    torch.manual_seed(5)
    a = [train(sample)["image"] for _ in range(3)]
    torch.manual_seed(5)
    b = [train(sample)["image"] for _ in range(3)]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])


def test_augment_disabled_is_val_pipeline():
    cfg = config_from_dict({"augment": {"enabled": False}, "patches": {"size": [32, 32], "stride": [32, 32]}})
    rng = np.random.default_rng(0)
    sample = {"image": rng.normal(size=(4, 32, 32)).astype(np.float32), "label": np.zeros((32, 32), np.uint8)}
    torch.manual_seed(0)
    a = build_transform(cfg, "train", "brats2021")(sample)["image"]
    b = build_transform(cfg, "val", "brats2021")(sample)["image"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_settings_raise():
    with pytest.raises(AugmentError, match="split"):
        build_transform(Config(), "training", "brats2021")
    with pytest.raises(AugmentError, match="flip.axes"):
        build_transform(config_from_dict({"augment": {"flip": {"axes": [2]}}}), "train", "brats2021")
    with pytest.raises(AugmentError, match="spatial_p"):
        build_transform(config_from_dict({"augment": {"spatial_p": 1.5}}), "train", "brats2021")
    cfg3d = config_from_dict({"patches": {"dim": 3, "size": [32, 32, 32], "stride": [32, 32, 32]}})
    with pytest.raises(AugmentError, match="3D"):
        build_transform(cfg3d, "train", "brats2021")


# -- rescaling --------------------------------------------------------------------------------------------------


def test_rescale_batch_hand_computed():
    # non-zero values 1..5 (0 = outside the brain): percentiles (0, 100) -> 1 -> -1, 3 -> 0, 5 -> 1;
    # the background 0 is clipped to the lower cut-off 1 -> -1 (TorchIO rescales every voxel).
    x = torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 1, 7, 1)
    out = rescale_batch(x, (-1, 1), (0, 100)).flatten().tolist()
    assert out == pytest.approx([-1.0, -1.0, -1.0, -0.5, 0.0, 0.5, 1.0])
    # percentiles (25, 75) of [1, 2, 3, 4, 5] are 2 and 4; out range (0, 1)
    out = rescale_batch(x, (0, 1), (25, 75)).flatten().tolist()
    assert out == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    # an all-zero channel and a constant channel are returned unchanged
    y = torch.zeros(1, 2, 4, 4)
    y[0, 1] = 7.0
    torch.testing.assert_close(rescale_batch(y), y)


def test_rescale_batch_matches_torchio():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 40, 36, generator=gen) * torch.tensor([1.0, 3.0, 0.5, 10.0])[None, :, None, None]
    x[:, :, :6] = 0  # background rows
    x[1, 2] = 0  # an empty channel
    x[2, 3, 10:] = 0
    ours = rescale_batch(x, (-1, 1), (0.5, 99.5))
    tio_rescale = ChannelwiseRescaleIntensity((-1, 1), (0.5, 99.5), masking_method=nonzero_mask)
    for b in range(x.shape[0]):
        ref = tio_rescale(tio.ScalarImage(tensor=x[b, ..., None].clone())).data[..., 0]
        torch.testing.assert_close(ours[b], ref, atol=1e-4, rtol=0)
        for c in range(x.shape[1]):  # and plain TorchIO on each channel alone
            if not x[b, c].any():
                continue
            plain = tio.RescaleIntensity((-1, 1), (0.5, 99.5), masking_method=nonzero_mask)
            ref_c = plain(tio.ScalarImage(tensor=x[b, c][None, ..., None].clone())).data[0, ..., 0]
            torch.testing.assert_close(ours[b, c], ref_c, atol=1e-4, rtol=0)


def test_rescale_batch_equals_the_val_pipeline():
    cfg = config_from_dict({"patches": {"size": [32, 32], "stride": [32, 32]}})
    rng = np.random.default_rng(1)
    img = (rng.normal(size=(4, 32, 32)) * (rng.random((1, 32, 32)) > 0.3)).astype(np.float32)
    out = build_transform(cfg, "val", "brats2021")({"image": img, "label": np.zeros((32, 32), np.uint8)})
    torch.testing.assert_close(rescale_batch(torch.from_numpy(img)[None])[0], out["image"], atol=1e-4, rtol=0)
    # 3D windows (B, C, X, Y, Z) and float16 input keep their shape and dtype
    v = torch.from_numpy(img).reshape(1, 4, 8, 8, 16).half()
    r = rescale_batch(v)
    assert r.shape == v.shape and r.dtype == torch.float16


# ---------------------------------------------------------------------------------------------------------------
# Intensity-shift augmentation: gamma and blur
# ---------------------------------------------------------------------------------------------------------------


def _brain_patch(seed: int = 0) -> np.ndarray:
    """4 channels of positive values inside a disc, exactly 0 outside (float32, (4, SIZE, SIZE))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = np.hypot(xx - SIZE / 2, yy - SIZE / 2) < SIZE / 2.5
    img = (rng.uniform(0.5, 2.0, size=(4, SIZE, SIZE)) * disc).astype(np.float32)
    return img


def test_channelwise_gamma_changes_each_channel_by_its_own_power_and_keeps_zeros():
    from brats.train.augment import ChannelwiseRandomGamma

    torch.manual_seed(0)
    img = _brain_patch()
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.as_tensor(img)[..., None]))
    out = ChannelwiseRandomGamma(log_gamma=0.5)(subject)["image"].data[..., 0].numpy()
    inside = img[0] != 0
    np.testing.assert_array_equal(out[:, ~inside], 0.0)  # background stays exactly 0
    gammas = []
    for c in range(4):
        v, w = img[c][inside], out[c][inside]
        lo, hi = v.min(), v.max()
        np.testing.assert_allclose([w.min(), w.max()], [lo, hi], rtol=1e-5)  # range kept
        x, y = (v - lo) / (hi - lo), (w - lo) / (hi - lo)
        mid = (x > 0.1) & (x < 0.9)
        g = np.log(y[mid]) / np.log(x[mid])  # one exponent per channel
        assert g.std() < 1e-3 and np.exp(-0.5) - 1e-4 <= g.mean() <= np.exp(0.5) + 1e-4
        gammas.append(g.mean())
    assert len({round(g, 3) for g in gammas}) == 4  # drawn per channel


def test_gamma_and_blur_only_in_the_train_pipeline_when_enabled():
    cfg = config_from_dict(
        {
            "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
            "augment": {
                "spatial_p": 0.0,
                "intensity_p": 0.0,
                "gamma": {"enabled": True, "p": 1.0},
                "blur": {"enabled": True, "p": 1.0, "std": 2.0},
            },
        }
    )
    sample = {"image": _brain_patch(), "label": np.where(label_map() == 3, 4, label_map()), "index": 0}
    names = [type(t).__name__ for t in build_transform(cfg, "train", "brats2021").transform.transforms]
    assert "ChannelwiseRandomGamma" in names and "RandomBlur" in names
    assert names.index("ChannelwiseRandomGamma") < names.index("ChannelwiseRescaleIntensity")
    for split in ("val", "test"):
        names = [type(t).__name__ for t in build_transform(cfg, split, "brats2021").transform.transforms]
        assert "ChannelwiseRandomGamma" not in names and "RandomBlur" not in names
    torch.manual_seed(1)
    out = build_transform(cfg, "train", "brats2021")(sample)
    ref = build_transform(cfg, "val", "brats2021")(sample)
    np.testing.assert_array_equal(out["label"].numpy(), ref["label"].numpy())  # labels untouched
    # blurred: neighbouring voxels differ much less than in the un-augmented patch
    rough = lambda a: float(np.abs(np.diff(a.numpy(), axis=-1)).mean())  # noqa: E731
    assert rough(out["image"]) < 0.5 * rough(ref["image"])


@pytest.mark.parametrize(
    ("augment", "match"),
    [
        ({"gamma": {"enabled": True, "log_gamma": -1}}, "augment.gamma.log_gamma"),
        ({"gamma": {"enabled": True, "p": 2}}, "augment.gamma.p"),
        ({"blur": {"enabled": True, "std": -1}}, "augment.blur.std"),
    ],
)
def test_bad_intensity_settings_name_the_key(augment, match):
    cfg = config_from_dict({"patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]}, "augment": augment})
    with pytest.raises(AugmentError, match=match):
        build_transform(cfg, "train", "brats2021")


@pytest.mark.parametrize(("combine", "want"), [("one_of", 1), ("each", 2)])
def test_intensity_combine_one_of_applies_one_and_each_applies_both(combine, want):
    cfg = config_from_dict(
        {
            "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
            "augment": {"spatial_p": 0.0, "intensity_p": 1.0, "intensity_combine": combine},
        }
    )
    pipeline = build_transform(cfg, "train", "brats2021").transform
    lab = label_map()
    for seed in range(6):
        torch.manual_seed(seed)
        subject = tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(_brain_patch())[..., None]),
            label=tio.LabelMap(tensor=torch.from_numpy(lab[None, ..., None].astype(np.int64))),
        )
        applied = [t[0] if isinstance(t, tuple) else t.name for t in pipeline(subject).applied_transforms]
        assert sum(n.removeprefix("Random") in ("Noise", "BiasField") for n in applied) == want, applied
    cfg.augment.intensity_p = 0.0
    names = [type(t).__name__ for t in build_transform(cfg, "train", "brats2021").transform.transforms]
    assert "Compose" not in names and "OneOf" not in names  # p = 0: no intensity step at all
