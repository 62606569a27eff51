"""augment.recompute_asymmetry: intensity transforms on a modality and its mirror, asymmetry computed again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio
from cohort import affine_1mm

from brats.asymmetry import add_asymmetry
from brats.config import config_from_dict
from brats.train import build_transform
from brats.train.augment import ChannelwiseRandomGamma
from brats.train.channel_bias import RandomChannelBias
from brats.train.lesion_contrast import RandomLesionContrast
from brats.train.mirror_pairs import GAP, MirrorPairs


class Scale(tio.Transform):
    """Multiply every voxel by ``k`` (zero stays zero); records the shape it saw."""

    def __init__(self, k: float, **kwargs):
        super().__init__(**kwargs)
        self.k, self.seen = k, None

    def apply_transform(self, subject):
        self.seen = tuple(subject["image"].data.shape)
        subject["image"].set_data(subject["image"].data * self.k)
        return subject


def _patch(lesion: float = 0.8):
    """One axial slice of a 2-modality volume through :func:`add_asymmetry`: a brain symmetric in X (a gradient
    along Y, and a faint random texture) with a lesion on one side; returns image (4, X, Y), label (X, Y), the brain-on-both-sides mask."""
    shape = (16, 12, 3)
    brain = np.zeros(shape, bool)
    brain[2:14, 1:11] = True  # centred on 7.5, the array's centre along X
    base = (1.0 + np.linspace(0, 1, 12, dtype=np.float32)[None, :, None]) * brain
    image = np.stack([base, 3 * base]).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[3:6, 4:7] = 2
    image[:, label > 0] += lesion
    rng = np.random.default_rng(0)  # real tissue is never exactly symmetric: a texture of +-0.01
    image += rng.uniform(-0.01, 0.01, size=image.shape).astype(np.float32) * brain
    out = add_asymmetry(image, affine_1mm())[..., 1]
    return out, label[..., 1], brain[..., 1]


def _subject(image, label):
    return tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(image)[..., None]),
        label=tio.LabelMap(tensor=torch.from_numpy(label.astype(np.int64))[None, ..., None]),
    )


def test_a_gain_scales_the_asymmetry_and_an_identity_keeps_it():
    image, label, _ = _patch()
    scale = Scale(3.0)
    out = MirrorPairs([scale], channels=2)(_subject(image, label))["image"].data[..., 0]
    assert scale.seen == (2, 16, 2 * 12 + GAP, 1)  # [I | gap | M], one channel per modality
    torch.testing.assert_close(out, torch.from_numpy(3 * image))  # I' = 3 I and A' = 3 I - 3 M = 3 A
    same = MirrorPairs([Scale(1.0)], channels=2)(_subject(image, label))
    torch.testing.assert_close(same["image"].data[..., 0], torch.from_numpy(image))
    assert same["label"].data[0, ..., 0].numpy().tolist() == label.tolist()
    assert (
        MirrorPairs([], channels=2)(_subject(image, label))["image"]
        .data[..., 0]
        .equal(torch.from_numpy(image))
    )


def test_gamma_keeps_symmetric_tissue_at_zero_asymmetry_and_each_side_on_one_curve():
    image, label, brain = _patch()
    torch.manual_seed(0)
    gamma = ChannelwiseRandomGamma(0.4, p=1)
    out = MirrorPairs([gamma], channels=2)(_subject(image, label))["image"].data[..., 0].numpy()
    mirror = np.flip(label, axis=0) > 0  # the lesion's mirror image: the other side's asymmetry is -A
    healthy = brain & (label == 0) & ~mirror
    assert np.median(np.abs(image[2:, healthy])) < 0.01 and np.median(np.abs(out[2:, healthy])) < 0.01
    both = image[2:] != 0
    assert (np.sign(out[2:][both]) == np.sign(image[2:][both])).all()  # one monotone curve for both sides
    assert not np.allclose(out[:2], image[:2])  # gamma did change the modalities
    # the old way, gamma on the stored asymmetry channels: nearly symmetric tissue no longer reads nearly 0
    torch.manual_seed(0)
    plain = ChannelwiseRandomGamma(0.4, p=1)(_subject(image, label))["image"].data[..., 0].numpy()
    assert np.median(np.abs(plain[2:, healthy])) > 0.05


def test_lesion_contrast_fades_the_lesion_side_only():
    image, label, brain = _patch()
    torch.manual_seed(1)
    lc = RandomLesionContrast(0.25, 1.0, p=1)
    out = MirrorPairs([lc], channels=2)(_subject(image, label))["image"].data[..., 0].numpy()
    both = brain & np.flip(brain, axis=0)
    # the mirror image M is untouched (label 0 on its side), so A' - A = I' - I wherever both sides are brain
    np.testing.assert_allclose((out[2:] - image[2:])[:, both], (out[:2] - image[:2])[:, both], atol=1e-5)
    lesion = label > 0
    assert (out[2:, lesion] < image[2:, lesion]).all()  # fainter lesion, smaller asymmetry
    assert (out[2:, ~both] == 0).all()


def test_a_channel_bias_moves_each_side_by_its_own_gain():
    image, label, brain = _patch()
    torch.manual_seed(2)
    out = MirrorPairs([RandomChannelBias(0.4, 3, p=1)], channels=2)(_subject(image, label))
    data = out["image"].data[..., 0].numpy()
    both = brain & np.flip(brain, axis=0)
    assert not np.allclose(data[:2], image[:2])
    assert (data[2:, ~both] == 0).all()  # still 0 where a side is outside the brain
    healthy = both & (label == 0) & ~(np.flip(label, axis=0) > 0)
    # the two sides got different gains, so nearly symmetric tissue now differs by more than its texture
    assert np.abs(data[2:, healthy] - image[2:, healthy]).max() > 0.05
    zero = RandomChannelBias(0.0, 3, p=1)  # a gain of 1 everywhere: nothing moves
    same = MirrorPairs([zero], channels=2)(_subject(image, label))["image"].data[..., 0]
    torch.testing.assert_close(same, torch.from_numpy(image), atol=1e-5, rtol=1e-5)


def test_bad_shapes_and_channels():
    image, label, _ = _patch()
    with pytest.raises(ValueError, match="expects 6 channels"):
        MirrorPairs([Scale(2.0)], channels=3)(_subject(image, label))
    with pytest.raises(ValueError, match="channels must be >= 1"):
        MirrorPairs([], channels=0)


def _train_cfg(recompute: bool, asymmetry: bool = True):
    return config_from_dict(
        {
            "preprocess": {"asymmetry": asymmetry},
            "patches": {"size": [16, 12]},
            "data": {"modalities": ["t1", "flair"]},
            "augment": {
                "spatial_p": 0.0,
                "intensity_p": 0.0,
                "channel_bias": {"enabled": True, "p": 1.0},
                "recompute_asymmetry": recompute,
            },
        }
    )


def test_the_train_pipeline_wraps_the_transforms_before_the_rescaling():
    image, label, brain = _patch()
    sample = {"image": image, "label": label, "index": 0}
    names = lambda t: [type(s).__name__ for s in t.transform.transforms]  # noqa: E731
    on = build_transform(_train_cfg(True), "train", "brats2021")
    assert "MirrorPairs" in names(on) and "RandomChannelBias" not in names(on)
    assert "MirrorPairs" not in names(build_transform(_train_cfg(False), "train", "brats2021"))
    assert "MirrorPairs" not in names(
        build_transform(_train_cfg(True, asymmetry=False), "train", "brats2021")
    )
    assert "MirrorPairs" not in names(build_transform(_train_cfg(True), "val", "brats2021"))
    torch.manual_seed(3)
    out = on(sample)["image"].numpy()
    both = brain & np.flip(brain, axis=0)
    assert out.shape == image.shape and (out[2:, ~both] == 0).all()
    healthy = both & (label == 0) & ~(np.flip(label, axis=0) > 0)
    # different gains on the two sides: symmetric tissue gets a small asymmetry, centred near 0
    assert abs(float(np.median(out[2:, healthy]))) < 0.5 * float(np.abs(image[2:, label > 0]).mean())
