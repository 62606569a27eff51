"""brats.train.warp: the grid_sample affine and elastic warps (augment.warp: torch) against TorchIO and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from brats.config import ConfigError, config_from_dict
from brats.train import build_transform
from brats.train.augment import SHARE_SUBJECTS, set_copies
from brats.train.warp import (
    RandomAffine2D,
    RandomElastic2D,
    _bspline_basis,
    affine_grid_2d,
    elastic_grid_2d,
    warp_subject,
)

torch.set_num_threads(1)


def smooth_subject(h: int, w: int) -> tio.Subject:
    """Two smooth channels and a label disc on an ``h x w`` 2D subject ``(C, H, W, 1)``."""
    ii, jj = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    image = torch.stack(
        [torch.sin(jj / 7) + torch.cos(ii / 5) + jj / 30, torch.exp(-((jj - 20) ** 2 + (ii - 25) ** 2) / 200)]
    )
    label = (image[1:2] > 0.5).long() + (image[1:2] > 0.8).long()
    return tio.Subject(
        image=tio.ScalarImage(tensor=image[..., None]), label=tio.LabelMap(tensor=label[..., None])
    )


def ramp_subject(h: int, w: int) -> tio.Subject:
    """Channels equal to each voxel's first and second index: bilinear resampling returns the sampled position."""
    ii, jj = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return tio.Subject(image=tio.ScalarImage(tensor=torch.stack([ii, jj])[..., None]))


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
@pytest.mark.parametrize("degrees, sx, sy", [(20, 1, 1), (0, 1.15, 1), (0, 1, 0.9), (-25, 0.9, 1.1)])
def test_affine_matches_torchio_affine(shape, degrees, sx, sy):
    """Reference: TorchIO's deterministic Affine (SimpleITK) with the same rotation and scales. Inside the patch
    (away from where the rotated corners fetch padding) images agree to float precision and labels but for ties."""
    h, w = shape
    ours = warp_subject(smooth_subject(h, w), affine_grid_2d(h, w, degrees, sx, sy))
    ref = tio.Affine(
        scales=(sx, sy, 1),
        degrees=(0, 0, degrees),
        translation=(0, 0, 0),
        image_interpolation="linear",
        label_interpolation="nearest",
        default_pad_value=0,
    )(smooth_subject(h, w))
    inner = (slice(None), slice(12, -12), slice(12, -12))
    a, b = ours["image"].data[..., 0], ref["image"].data[..., 0]
    assert float((a - b)[inner].abs().max()) < 1e-4
    la, lb = ours["label"].data[..., 0], ref["label"].data[..., 0].long()
    # nearest neighbour: samples within float error of half-way round either way (a scale of 1.15 makes some)
    assert float((la[inner] != lb[inner]).float().mean()) < 0.01
    assert ours["label"].data.dtype == torch.int64


def test_identity_draws_change_nothing():
    subject = smooth_subject(40, 56)
    same = warp_subject(smooth_subject(40, 56), affine_grid_2d(40, 56, 0.0, 1.0, 1.0))
    assert torch.allclose(same["image"].data, subject["image"].data, atol=1e-5)
    assert torch.equal(same["label"].data, subject["label"].data)
    flat = RandomElastic2D(7, 0.0)(smooth_subject(40, 56))
    assert torch.allclose(flat["image"].data, subject["image"].data, atol=1e-5)


def test_bspline_basis_by_hand():
    """At a mesh node the cubic B-spline weights are 1/6, 4/6, 1/6; every row sums to 1."""
    # 41 voxels, 7 control points: 4 intervals of 41/4 voxels over [-0.5, 40.5]; node 3 lies on voxel 20.
    basis = _bspline_basis(41, 7, -0.5, 40.5)
    assert basis.shape == (41, 7)
    assert torch.allclose(basis[20], torch.tensor([0, 0, 1 / 6, 4 / 6, 1 / 6, 0, 0]), atol=1e-6)
    assert torch.allclose(basis.sum(1), torch.ones(41), atol=1e-6)


def test_elastic_displacement_by_hand():
    """One control point moved by d along the first axis: the voxel on it moves by (4/6)^2 d, its neighbour on the
    mesh (10.25 voxels away) by (4/6)(1/6) d, and the second axis does not move."""
    h = w = 41
    coarse = torch.zeros(2, 7, 7)
    coarse[0, 3, 3] = 3.0
    out = warp_subject(ramp_subject(h, w), elastic_grid_2d(h, w, coarse))
    moved = out["image"].data[..., 0] - ramp_subject(h, w)["image"].data[..., 0]
    assert float(moved[0, 20, 20]) == pytest.approx(3.0 * 16 / 36, abs=1e-4)
    inside = (slice(1, -1), slice(1, -1))  # the outer voxels blend with the zero padding by float error
    assert float(moved[1][inside].abs().max()) < 1e-4
    assert float(moved[0][inside].abs().max()) == pytest.approx(
        3.0 * 16 / 36, abs=1e-4
    )  # the peak is on the node


def test_random_draws_stay_in_range_and_follow_the_seed():
    h = w = 64
    for transform, limit in ((RandomElastic2D(7, 7.5), 7.5), (RandomAffine2D(20, 0.1), None)):
        torch.manual_seed(5)
        first = transform(ramp_subject(h, w))["image"].data
        torch.manual_seed(5)
        again = transform(ramp_subject(h, w))["image"].data
        assert torch.equal(first, again)
        assert not torch.equal(first, transform(ramp_subject(h, w))["image"].data)
        if limit is not None:  # a B-spline never moves a voxel further than its largest control point
            inner = (slice(None), slice(10, -10), slice(10, -10), 0)
            moved = (first - ramp_subject(h, w)["image"].data)[inner]
            assert 0.5 < float(moved.abs().max()) <= limit


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="degrees"):
        RandomAffine2D(-1, 0.1)
    with pytest.raises(ValueError, match="num_control_points"):
        RandomElastic2D(4, 7.5)
    with pytest.raises(ConfigError, match="augment.warp"):
        config_from_dict({"augment": {"warp": "sitk"}})


def _steps_and_choices(pipeline: tio.Compose) -> list[tio.Transform]:
    """The Compose's steps and the choices of its OneOfs (one level, as build_transform nests them)."""
    steps = list(pipeline.transforms)
    return steps + [c for s in steps if isinstance(s, tio.OneOf) for c in s.transforms_dict]


@pytest.mark.parametrize("warp", ["torchio", "torch"])
def test_shared_subjects_give_the_same_output(warp):
    """The pipeline's transforms work on the Compose's one copy: the same outputs as TorchIO's copy-per-transform
    default, and the caller's sample is not modified."""
    cfg = config_from_dict(
        {
            "patches": {"size": [48, 48], "stride": [48, 48]},
            "augment": {"warp": warp, "elastic": {"weight": 1.0}},
        }
    )
    fast = build_transform(cfg, "train", "brats2021")
    slow = build_transform(cfg, "train", "brats2021")
    set_copies(slow.transform, True)
    inner = _steps_and_choices(fast.transform)
    assert any(isinstance(t, tio.OneOf) for t in fast.transform.transforms)
    assert len(inner) > len(fast.transform.transforms)  # the OneOfs' choices are reached, not only the steps
    assert not any(t.copy for t in inner) or not SHARE_SUBJECTS
    assert fast.transform.copy  # the Compose itself still copies: the caller's sample stays untouched
    assert all(t.copy for t in _steps_and_choices(slow.transform))
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4, 48, 48)).astype(np.float32)
    label = np.zeros((48, 48), np.uint8)
    label[10:30, 12:33] = 2
    label[15:20, 15:25] = 4
    kept = image.copy()
    for seed in range(8):
        sample = {"image": image, "label": label, "index": seed}
        torch.manual_seed(seed)
        a = fast(sample)
        torch.manual_seed(seed)
        b = slow(sample)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert np.array_equal(image, kept)
