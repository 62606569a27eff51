"""augment.engine=batch (brats/train/batch_augment.py): each batched step against its per-patch twin, the draws'
ranges, reproducibility, errors, and training with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchio as tio

from brats.config import config_from_dict
from brats.labels import LabelError
from brats.train import AugmentError, build_transform, run_training
from brats.train.batch_augment import (
    BatchAugment,
    _unit_log_gains,
    bias_fields,
    build_batch_augment,
    channel_bias_batch,
    mirror_bias_batch,
)
from brats.train.channel_bias import RandomChannelBias
from brats.train.mirror_pairs import MirrorPairs
from brats.train.warp import affine_grid_2d, affine_thetas, elastic_draws, elastic_grid_2d
from tests.test_train import make_patches, make_run, state_of, tiny_config

torch.set_num_threads(1)

H, W = 32, 40


def cfg_of(**augment):
    return config_from_dict(
        {
            "patches": {"size": [32, 32], "stride": [32, 32]},
            "preprocess": {"asymmetry": augment.pop("asymmetry", False)},
            "augment": {"engine": "batch", "warp": "torch", **augment},
        }
    )


def samples(n: int = 6, seed: int = 0) -> list[dict]:
    images, labels = make_patches(n, seed)
    return [{"image": images[i], "label": labels[i], "index": i} for i in range(n)]


def test_batched_affine_and_elastic_grids_equal_one_draw_at_a_time():
    degrees, sx, sy = (
        torch.tensor([-17.0, 0.0, 9.5]),
        torch.tensor([0.9, 1.0, 1.08]),
        torch.tensor([1.1, 1.0, 0.95]),
    )
    batched = F.affine_grid(affine_thetas(H, W, degrees, sx, sy), [3, 1, H, W], align_corners=False)
    for i in range(3):
        one = affine_grid_2d(H, W, float(degrees[i]), float(sx[i]), float(sy[i]))
        torch.testing.assert_close(batched[i : i + 1], one, rtol=0, atol=1e-6)
    torch.manual_seed(0)
    coarse = elastic_draws(4, 7, 3.0)
    assert coarse.shape == (4, 2, 7, 7) and coarse.abs().max() <= 3.0
    assert coarse[:, :, [0, 1, -2, -1]].abs().max() == 0 and coarse[:, :, :, [0, 1, -2, -1]].abs().max() == 0
    grids = elastic_grid_2d(H, W, coarse)
    for i in range(4):
        torch.testing.assert_close(grids[i : i + 1], elastic_grid_2d(H, W, coarse[i]), rtol=0, atol=1e-6)


def test_bias_fields_equal_torchio_bias_field():
    rng = np.random.default_rng(1)
    tio_coefficients = rng.uniform(-0.5, 0.5, 20).tolist()  # order 3 in 3D: 20 terms, TorchIO's order
    ours = [c for c, (i, j, k) in zip(tio_coefficients, _terms3d(3)) if k == 0]  # the in-plane terms
    image = torch.ones(2, H, W, 1)
    subject = tio.Subject(image=tio.ScalarImage(tensor=image))
    expected = tio.BiasField(coefficients=tio_coefficients, order=3)(subject)["image"].data[0, ..., 0]
    field = bias_fields(H, W, torch.tensor([ours], dtype=torch.float64))[0]
    torch.testing.assert_close(field, expected, rtol=1e-5, atol=1e-6)


def _terms3d(order: int) -> list[tuple[int, int, int]]:
    return [
        (i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - (i + j))
    ]


def test_unit_log_gains_equal_normalised_bicubic_fields():
    """The mean and standard deviation taken from the control points are those of the interpolated field."""
    s = torch.tensor([0.1, 0.4, 0.0])
    torch.manual_seed(5)
    gains = _unit_log_gains(3, H, W, 3, s)
    torch.manual_seed(5)
    coarse = torch.randn((3, 1, 3, 3))
    field = F.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=True)[:, 0]
    field = field - field.mean(dim=(1, 2), keepdim=True)
    expected = s.view(3, 1, 1) * field / field.std(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(gains, expected, rtol=0, atol=1e-5)


def test_channel_bias_keeps_zeros_and_each_channel_minimum_and_skips_unselected_patches():
    x = torch.rand(4, 3, H, W) + 0.5
    x[:, :, :5] = 0  # background
    x[2, 1] = 0  # an empty channel
    apply = torch.tensor([True, False, True, True])
    torch.manual_seed(0)
    out = channel_bias_batch(x, 0.4, 3, apply)
    assert (
        torch.equal(out[1], x[1])
        and torch.equal(out[:, :, :5], x[:, :, :5])
        and torch.equal(out[2, 1], x[2, 1])
    )
    brain = x[0, 0] != 0
    assert torch.isclose(out[0, 0][brain].min(), x[0, 0][brain].min())
    assert not torch.allclose(out[0, 0], x[0, 0])
    ratio = (out[0, 0][brain] - x[0, 0][brain].min()) / (x[0, 0][brain] - x[0, 0][brain].min())
    assert ratio[torch.isfinite(ratio)].log().std() <= 0.4 + 1e-3  # s <= max_std over the patch


def test_mirror_bias_without_gain_recomputes_the_same_asymmetry_as_mirror_pairs():
    torch.manual_seed(0)
    mod = torch.rand(2, 2, H, W) + 1
    mod[..., :4] = 0
    mirror = mod.flip(-1)
    both = (mod != 0) & (mirror != 0)
    x = torch.cat([mod, torch.where(both, mod - mirror, 0)], dim=1)
    out = mirror_bias_batch(x, 2, 0.0, 3, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
    for b in range(2):  # the per-patch MirrorPairs with the same (no-op) bias
        subject = tio.Subject(
            image=tio.ScalarImage(tensor=x[b, ..., None]), label=tio.LabelMap(tensor=torch.zeros(1, H, W, 1))
        )
        ref = MirrorPairs([RandomChannelBias(0.0)], 2)(subject)["image"].data[..., 0]
        torch.testing.assert_close(out[b], ref, rtol=0, atol=1e-6)


def test_without_random_steps_it_equals_the_patch_validation_pipeline():
    cfg = cfg_of(enabled=False)
    batch = BatchAugment(cfg, "brats2021")(samples())
    val = build_transform(cfg, "val", "brats2021")
    for i, s in enumerate(samples()):
        ref = val(s)
        torch.testing.assert_close(batch["image"][i], ref["image"], rtol=0, atol=1e-5)
        assert torch.equal(batch["label"][i], ref["label"])
    assert batch["label"].max() == 3 and batch["index"].tolist() == list(range(6))  # ET 4 -> class 3


def test_flips_move_image_and_label_together():
    cfg = cfg_of(
        spatial_p=1.0, affine={"weight": 0}, elastic={"weight": 0}, rescale={"enabled": False}, intensity_p=0
    )
    torch.manual_seed(0)
    raw = samples(8)
    out = build_batch_augment(cfg, "brats2021")(raw)
    seen = set()
    for i, s in enumerate(raw):
        image = torch.as_tensor(s["image"])
        label = torch.as_tensor(np.where(s["label"] == 4, 3, s["label"]).astype(np.int64))
        hits = [
            d for d in ((), (1,), (2,), (1, 2)) if torch.equal(out["image"][i], image.flip(d) if d else image)
        ]
        assert len(hits) == 1, i
        d = tuple(a - 1 for a in hits[0])
        assert torch.equal(out["label"][i], label.flip(d) if d else label)
        seen.add(hits[0])
    assert len(seen) > 1


def test_warps_resample_labels_by_nearest_neighbour_and_draws_are_reproducible():
    cfg = cfg_of(
        spatial_p=1.0,
        flip={"weight": 0},
        elastic={"weight": 1.0, "num_control_points": 5, "max_displacement": 3.0},
    )
    augment = build_batch_augment(cfg, "brats2021")
    torch.manual_seed(3)
    a = augment(samples(8))
    torch.manual_seed(3)
    b = augment(samples(8))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert set(a["label"].unique().tolist()) <= {0, 1, 2, 3}
    assert not torch.equal(
        a["label"], build_batch_augment(cfg_of(enabled=False), "brats2021")(samples(8))["label"]
    )
    assert (
        a["image"].shape == (8, 4, 32, 32)
        and a["image"].dtype == torch.float32
        and a["label"].dtype == torch.int64
    )


def test_noise_and_bias_field_stay_within_their_ranges():
    base = cfg_of(enabled=False)
    clean = BatchAugment(base, "brats2021")(samples(8))["image"]
    noise = cfg_of(spatial_p=0, intensity_p=1.0, bias_field={"enabled": False}, noise={"std": 0.1})
    torch.manual_seed(0)
    noisy = build_batch_augment(noise, "brats2021")(samples(8))["image"]
    stds = (noisy - clean).flatten(1).std(dim=1)
    assert stds.max() <= 0.1 * 1.1 and stds.min() >= 0 and len(set(stds.round(decimals=3).tolist())) > 4
    field = cfg_of(spatial_p=0, intensity_p=1.0, noise={"enabled": False}, bias_field={"coefficients": 0.5})
    torch.manual_seed(0)
    biased = build_batch_augment(field, "brats2021")(samples(8))["image"]
    inside = clean.abs() > 0.05
    log_gain = (biased[inside] / clean[inside]).log()
    assert log_gain.abs().max() <= 10 * 0.5 + 1e-4 and log_gain.abs().max() > 0.01


def test_errors_name_the_setting():
    with pytest.raises(AugmentError, match=r"augment\.gamma"):
        build_batch_augment(cfg_of(gamma={"enabled": True}), "brats2021")
    with pytest.raises(AugmentError, match=r"augment\.flip\.axes"):
        build_batch_augment(cfg_of(flip={"axes": [2]}), "brats2021")
    with pytest.raises(AugmentError, match=r"augment\.intensity_p"):
        build_batch_augment(cfg_of(intensity_p=2.0), "brats2021")
    with pytest.raises(AugmentError, match=r"warp=torch"):
        build_batch_augment(cfg_of(warp="torchio"), "brats2021")
    with pytest.raises(AugmentError, match=r"patches.dim=3"):
        cfg = config_from_dict({"patches": {"dim": 3, "size": [16, 16, 16], "stride": [16, 16, 16]}})
        build_batch_augment(cfg, "brats2021")
    bad = samples(2)
    bad[1]["label"] = bad[1]["label"].copy()
    bad[1]["label"][0, 0] = 7
    with pytest.raises(LabelError, match=r"\[7\]"):
        BatchAugment(cfg_of(), "brats2021")(bad)
    with pytest.raises(AugmentError, match=r"patches.size \[32, 32\]"):
        BatchAugment(cfg_of(), "brats2021")(
            [{"image": np.zeros((4, 30, 32), np.float32), "label": np.zeros((30, 32))}]
        )


def test_training_with_the_batch_engine_resumes_as_uninterrupted(tmp_path):
    def config(out, epochs):
        cfg = tiny_config(out, epochs=epochs, steps_per_epoch=2)
        cfg.augment.engine, cfg.augment.warp = "batch", "torch"
        return cfg

    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    result = run_training(config(a, 3), progress=False)
    assert result["epochs_run"] == 3 and (a / "checkpoints" / "last.pt").is_file()
    run_training(config(b, 2), progress=False)
    run_training(config(b, 3), resume=True, progress=False)
    sa, sb = state_of(a / "checkpoints" / "last.pt"), state_of(b / "checkpoints" / "last.pt")
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-5, msg=key)
