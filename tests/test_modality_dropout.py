"""augment.modality_dropout: one modality's channels (2.5D neighbours and asymmetry included) set to 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from brats.config import config_from_dict
from brats.train import build_transform
from brats.train.augment import AugmentError
from brats.train.modality_dropout import RandomModalityDropout, modality_channels


def _subject(image: torch.Tensor) -> tio.Subject:
    label = torch.zeros((1, *image.shape[1:]), dtype=torch.int64)
    label[0, 2:5, 2:5] = 2
    return tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=label))


def test_channels_of_a_modality_by_hand():
    assert modality_channels(3, 4, False) == [3]
    assert modality_channels(2, 4, True) == [2, 6]
    # 2.5D, k = 1: 3 modalities x 3 slices, then their asymmetries x 3 slices (modality-major)
    assert modality_channels(1, 3, True, 1) == [3, 4, 5, 12, 13, 14]
    with pytest.raises(ValueError, match="modality 4 is not in 0..3"):
        modality_channels(4, 4, False)


def test_one_whole_modality_is_dropped_and_the_rest_is_untouched():
    torch.manual_seed(0)
    image = torch.rand((8, 10, 10, 1)) + 0.5  # 4 modalities + 4 asymmetry channels, no zero anywhere
    t = RandomModalityDropout(4, asymmetry=True, p=1.0)
    seen = set()
    for _ in range(40):
        out = t(_subject(image.clone()))
        data = out["image"].data
        zero = [c for c in range(8) if not data[c].any()]
        assert len(zero) == 2 and zero[1] == zero[0] + 4, zero  # the modality and its asymmetry channel
        kept = [c for c in range(8) if c not in zero]
        torch.testing.assert_close(data[kept], image[kept])
        torch.testing.assert_close(out["label"].data, _subject(image)["label"].data)
        seen.add(zero[0])
    assert seen == {0, 1, 2, 3}  # every modality is drawn


def test_probability_zero_changes_nothing_and_bad_inputs_are_refused():
    image = torch.rand((4, 6, 6, 1)) + 0.5
    out = RandomModalityDropout(4, p=0.0)(_subject(image.clone()))
    torch.testing.assert_close(out["image"].data, image)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        RandomModalityDropout(1)
    with pytest.raises(ValueError, match="expects 8 channels"):
        RandomModalityDropout(4, asymmetry=True, p=1.0)(_subject(image))


def test_pipeline_wiring_and_config_errors():
    base = {
        "patches": {"size": [16, 16], "stride": [16, 16]},
        "preprocess": {"asymmetry": True},
        "augment": {"spatial_p": 0.0, "intensity_p": 0.0, "modality_dropout": {"enabled": True, "p": 1.0}},
    }
    cfg = config_from_dict(base)
    train = build_transform(cfg, "train", "brats2021")
    names = [type(t).__name__ for t in train.transform.transforms]
    assert names.index("RandomModalityDropout") > names.index("ChannelwiseRescaleIntensity")
    assert names[-1] == "RemapLabels"
    assert "RandomModalityDropout" not in [
        type(t).__name__ for t in build_transform(cfg, "val", "brats2021").transform.transforms
    ]
    rng = np.random.default_rng(0)
    sample = {
        "image": rng.normal(size=(8, 16, 16)).astype(np.float32),
        "label": np.zeros((16, 16)),
        "index": 0,
    }
    out = train(sample)["image"]
    assert sum(not out[c].any() for c in range(8)) == 2  # a modality and its asymmetry, through the pipeline
    cfg.augment.modality_dropout.p = 1.5
    with pytest.raises(AugmentError, match=r"augment\.modality_dropout\.p must be a probability"):
        build_transform(cfg, "train", "brats2021")
    one = config_from_dict({**base, "data": {"modalities": ["flair"]}})
    with pytest.raises(AugmentError, match=r"augment\.modality_dropout needs at least 2 modalities"):
        build_transform(one, "train", "brats2021")


def test_3d_patches_refuse_it_in_one_line():
    from brats.train.augment3d import build_transform_3d

    cfg = config_from_dict(
        {
            "patches": {"dim": 3, "size": [16, 16, 16], "stride": [16, 16, 16]},
            "augment": {"modality_dropout": {"enabled": True}},
        }
    )
    with pytest.raises(AugmentError, match=r"augment\.modality_dropout is for 2D patches only"):
        build_transform_3d(cfg, "train", "brats2021")
