"""RandomLesionContrast: the tumour pulled towards the brain's median by one factor per channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from scipy import ndimage

from brats.config import ConfigError, config_from_dict
from brats.synth import generate_case
from brats.train import AugmentError, build_transform
from brats.train.lesion_contrast import MIN_BRAIN_VOXELS, RandomLesionContrast

SIZE = 48


def _subject(image: np.ndarray, label: np.ndarray) -> tio.Subject:
    return tio.Subject(
        image=tio.ScalarImage(tensor=torch.as_tensor(image)[..., None]),
        label=tio.LabelMap(tensor=torch.as_tensor(label)[None, ..., None]),
    )


def _patch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 channels: brain (a disc, values 0.5-1.5) with a bright square tumour (3-4), exactly 0 outside the disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = np.hypot(xx - SIZE / 2, yy - SIZE / 2) < SIZE / 2.2
    label = np.zeros((SIZE, SIZE), np.int64)
    label[16:32, 20:36] = 2
    label[22:26, 26:30] = 4
    img = rng.uniform(0.5, 1.5, size=(4, SIZE, SIZE))
    img[:, label > 0] = rng.uniform(3.0, 4.0, size=(4, int((label > 0).sum())))
    return (img * disc).astype(np.float32), label


def _out(transform: RandomLesionContrast, img: np.ndarray, label: np.ndarray) -> np.ndarray:
    return transform(_subject(img, label))["image"].data[..., 0].numpy()


def test_each_channel_scales_the_tumour_contrast_by_one_factor_and_leaves_the_rest():
    """sigma 0, hand-checked: x' - m = s_c (x - m) on every tumour voxel, with m the median of the brain outside
    the tumour and one s_c per channel in [min_scale, 1]; brain outside the tumour and the zeros unchanged."""
    img, label = _patch()
    torch.manual_seed(0)
    out = _out(RandomLesionContrast(min_scale=0.2, sigma=0.0), img, label)
    tumour, brain = label > 0, img[0] != 0
    np.testing.assert_array_equal(out[:, ~tumour], img[:, ~tumour])
    np.testing.assert_array_equal(out[:, ~brain], 0.0)
    scales = []
    for c in range(4):
        # torch's median, as the transform's: the lower middle value of an even count
        m = float(torch.as_tensor(img[c][brain & ~tumour]).median())
        s = (out[c][tumour] - m) / (img[c][tumour] - m)
        assert s.std() < 1e-5 and 0.2 - 1e-6 <= s.mean() <= 1 + 1e-6
        scales.append(round(float(s.mean()), 4))
    assert len(set(scales)) == 4  # drawn per channel


def test_the_edge_fades_over_the_smoothed_mask():
    """sigma 1: the weight is the Gaussian-smoothed mask, so across a straight edge the last voxel inside and the
    first outside share it (w_in + w_out = 1, by symmetry), and voxels 4 or more sigma away are untouched."""
    lc = RandomLesionContrast(min_scale=0.0, sigma=1.0)
    mask = np.zeros((SIZE, SIZE, 1), bool)
    mask[:, 24:] = True
    w = lc.weight(mask)
    np.testing.assert_allclose(w[10, 23, 0] + w[10, 24, 0], 1.0, atol=1e-6)
    assert 0.1 < w[10, 23, 0] < 0.5 < w[10, 24, 0] < 0.9
    assert w[10, :20, 0].max() < 1e-4 and w[10, 28:, 0].min() > 1 - 1e-4
    ref = ndimage.gaussian_filter(mask[..., 0].astype(np.float32), 1.0, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(w[..., 0], ref, atol=1e-6)  # no smoothing along the size-1 axis

    img, label = _patch()
    torch.manual_seed(3)
    out = _out(lc, img, label)
    far = ndimage.distance_transform_edt(label == 0) > 4
    np.testing.assert_allclose(out[:, far], img[:, far], atol=1e-4)
    near = (label == 0) & ~far & (img[0] != 0)
    assert (out[:, near] != img[:, near]).any()  # just outside: partly pulled, as partial volume


def test_no_change_without_tumour_or_without_enough_brain_around_it():
    img, label = _patch()
    lc = RandomLesionContrast(min_scale=0.0, sigma=1.0)
    np.testing.assert_array_equal(_out(lc, img, np.zeros_like(label)), img)
    full = np.ones_like(label)
    full[20:23, 20:23] = 0  # 9 brain voxels outside the tumour (inside the disc): fewer than MIN_BRAIN_VOXELS
    assert (img[0][full == 0] != 0).sum() == 9 < MIN_BRAIN_VOXELS
    np.testing.assert_array_equal(_out(lc, img, full), img)
    full[20:30, 20:30] = 0  # 100 brain voxels: enough, so the tumour changes
    assert not np.array_equal(_out(lc, img, full), img)


def test_on_a_synthetic_case_the_flair_edema_gets_fainter():
    """On a generated case (production code): the FLAIR edema's excess over the brain's median shrinks by the
    drawn factor, and the label map the pipeline returns is unchanged."""
    images, seg, _ = generate_case(0, 1, shape=(96, 96, 40))
    z = int(np.argmax((seg == 2).sum(axis=(0, 1))))
    img = np.stack([images[m][:, :, z] for m in ("t1", "t1ce", "t2", "flair")]).astype(np.float32)
    label = seg[:, :, z].astype(np.int64)
    edema, brain = label == 2, img[3] != 0
    m = float(torch.as_tensor(img[3][brain & (label == 0)]).median())
    torch.manual_seed(0)
    out = _out(RandomLesionContrast(min_scale=0.25, sigma=0.0), img, label)
    before, after = img[3][edema].mean() - m, out[3][edema].mean() - m
    assert before > 0 and 0.25 * before - 1e-3 <= after < before


def test_pipeline_and_config():
    cfg = config_from_dict(
        {
            "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
            "augment": {"spatial_p": 0.0, "intensity_p": 0.0, "lesion_contrast": {"enabled": True, "p": 1.0}},
        }
    )
    names = [type(t).__name__ for t in build_transform(cfg, "train", "brats2021").transform.transforms]
    assert names.index("RandomLesionContrast") < names.index("ChannelwiseRescaleIntensity")
    for split in ("val", "test"):
        names = [type(t).__name__ for t in build_transform(cfg, split, "brats2021").transform.transforms]
        assert "RandomLesionContrast" not in names
    img, label = _patch()
    sample = {"image": img, "label": label, "index": 0}
    torch.manual_seed(0)
    out = build_transform(cfg, "train", "brats2021")(sample)
    ref = build_transform(cfg, "val", "brats2021")(sample)
    np.testing.assert_array_equal(out["label"].numpy(), ref["label"].numpy())
    assert not torch.equal(out["image"], ref["image"])
    for key, value in (("min_scale", 1.5), ("p", -0.1), ("sigma", -1.0)):
        with pytest.raises(ConfigError, match=f"augment.lesion_contrast.{key}"):
            config_from_dict({"augment": {"lesion_contrast": {"enabled": True, key: value}}})
        built_in_code = config_from_dict({"augment": {"lesion_contrast": {"enabled": True}}})
        setattr(built_in_code.augment.lesion_contrast, key, value)  # past the loader's range check
        with pytest.raises(AugmentError, match=f"augment.lesion_contrast.{key}"):
            build_transform(built_in_code, "train", "brats2021")


def test_edema_target_fades_only_the_edema_and_keeps_the_core_exact():
    """labels=(2,), sigma 0, hand-checked: x' - m = s_c (x - m) on the edema, with m the median of the brain
    outside the whole tumour; the core (label 4) and the brain outside the tumour unchanged."""
    img, label = _patch()
    torch.manual_seed(0)
    out = _out(RandomLesionContrast(min_scale=0.2, sigma=0.0, labels=(2,)), img, label)
    edema, core, brain = label == 2, label == 4, img[0] != 0
    np.testing.assert_array_equal(out[:, ~edema], img[:, ~edema])
    assert core.any()
    for c in range(4):
        m = float(torch.as_tensor(img[c][brain & (label == 0)]).median())
        s = (out[c][edema] - m) / (img[c][edema] - m)
        assert s.std() < 1e-5 and 0.2 - 1e-6 <= s.mean() < 1
    torch.manual_seed(0)  # sigma 1: the edema's smoothed edge reaches into the core, which still stays exact
    out = _out(RandomLesionContrast(min_scale=0.0, sigma=1.0, labels=(2,)), img, label)
    np.testing.assert_array_equal(out[:, core], img[:, core])
    assert (out[:, edema] != img[:, edema]).all()
    np.testing.assert_array_equal(
        _out(RandomLesionContrast(0.0, 1.0, labels=(2,)), img, label * (label == 4)), img
    )
    with pytest.raises(ValueError, match="labels"):
        RandomLesionContrast(0.5, 1.0, labels=(0,))


def test_edema_target_in_the_pipeline_follows_the_label_scheme():
    """`target: edema` fades source label 2 under both BraTS schemes, and a binary scheme is refused by key."""
    cfg = config_from_dict(
        {
            "patches": {"size": [SIZE, SIZE], "stride": [SIZE, SIZE]},
            "augment": {
                "spatial_p": 0.0,
                "intensity_p": 0.0,
                "lesion_contrast": {"enabled": True, "p": 1.0, "target": "edema", "sigma": 0.0},
            },
        }
    )
    img, label = _patch()
    for scheme, et in (("brats2021", 4), ("brats2023", 3)):
        lab = np.where(label == 4, et, label)
        (lc,) = [
            t
            for t in build_transform(cfg, "train", scheme).transform.transforms
            if "Lesion" in type(t).__name__
        ]
        assert lc.labels == (2,)
        torch.manual_seed(1)
        out = _out(lc, img, lab)
        np.testing.assert_array_equal(out[:, lab == et], img[:, lab == et])
        assert (out[:, lab == 2] != img[:, lab == 2]).all()
    with pytest.raises(AugmentError, match="augment.lesion_contrast.target"):
        build_transform(cfg, "train", "binary")
    with pytest.raises(ConfigError, match="augment.lesion_contrast.target"):
        config_from_dict({"augment": {"lesion_contrast": {"target": "core"}}})
