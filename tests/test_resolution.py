"""The coarser in-plane grid (brats.resolution, ``preprocess.downsample``): block means and majorities by hand,
bilinear upsampling by hand and against the sliding-window prediction, the record, extraction and prediction
on the input's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cohort import affine_1mm, tiny_unet_checkpoint, write_nifti

from brats.config import ConfigError, config_from_dict
from brats.errors import BratsError
from brats.extract import read_store, run_extract
from brats.preprocess import Normalization, normalize
from brats.resolution import pool_image, pool_labels, pool_mask, upsample_probabilities


def test_pool_image_means_brain_voxels_only():
    img = np.zeros((2, 4, 3, 1), np.float32)
    img[0, 0:2, 0:2, 0] = [[2, 4], [6, 0]]  # block (0, 0): three brain voxels (channel 1 is 0 there)
    img[1, 2, 2, 0] = 5  # block (1, 1) of a Y padded 3 -> 4: one brain voxel, in channel 1 only
    out = pool_image(img, 2)
    assert out.shape == (2, 2, 2, 1) and out.dtype == np.float32
    assert out[0, 0, 0, 0] == pytest.approx(4.0)  # (2 + 4 + 6) / 3, not / 4
    assert out[1, 0, 0, 0] == 0.0
    assert out[0, 1, 1, 0] == 0.0 and out[1, 1, 1, 0] == pytest.approx(5.0)
    assert out[:, 0, 1, 0].tolist() == [0.0, 0.0] and out[:, 1, 0, 0].tolist() == [0.0, 0.0]  # no brain: 0
    np.testing.assert_array_equal(pool_image(img, 1), img)


def test_pool_labels_majority_and_ties():
    seg = np.zeros((4, 6, 2), np.uint8)
    seg[0:2, 0:2, 0] = [[2, 2], [2, 1]]  # majority 2
    seg[0:2, 2:4, 0] = [[4, 2], [2, 4]]  # tie 4 / 2, first voxel 4
    seg[0:2, 4:6, 0] = [[0, 1], [2, 2]]  # tie-free 2 (first voxel 0 has one vote)
    seg[2:4, 0:2, 0] = [[0, 1], [1, 0]]  # tie 0 / 1, first voxel 0
    seg[2:4, 2:4, 0] = [[1, 4], [4, 1]]  # tie 1 / 4, first voxel 1
    seg[2:4, 4:6, 0] = [[0, 4], [1, 2]]  # four-way tie: the first voxel's 0
    out = pool_labels(seg, 2)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 2)
    assert out[:, :, 0].tolist() == [[2, 4, 2], [0, 1, 0]]
    assert not out[:, :, 1].any()
    assert pool_labels(np.full((3, 3, 1), 2, np.uint8), 2)[:, :, 0].tolist() == [[2, 2], [2, 2]]


def test_pool_mask_any():
    m = np.zeros((5, 4, 1), bool)
    m[4, 3, 0] = True
    assert pool_mask(m, 2)[:, :, 0].tolist() == [[False, False], [False, False], [False, True]]
    assert pool_mask(np.ones((240, 240, 155), bool), 2).shape == (120, 120, 155)
    assert pool_mask(np.ones((5, 4, 3), bool), 3).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="positive integer"):
        pool_mask(m, 0)


def test_upsample_hand_computed_and_linear():
    p = np.zeros((2, 2, 1, 1), np.float32)
    p[1, :, 0, 0] = [0.0, 1.0]
    p[0] = 1 - p[1]
    up = upsample_probabilities(p, (3, 2), 2)  # X 4 cropped to 3, Y 2
    assert up.shape == (2, 3, 2, 1)
    # fine i sits at coarse (i + 0.5) / 2 - 0.5: -0.25 (clamped), 0.25, 0.75
    np.testing.assert_allclose(up[1, :, 0, 0], [0.0, 0.25, 0.75])
    np.testing.assert_allclose(up[1, :, 1, 0], up[1, :, 0, 0])
    np.testing.assert_allclose(up.sum(axis=0), 1.0, atol=1e-6)
    rng = np.random.default_rng(0)
    q = rng.random((4, 5, 6, 3)).astype(np.float32)
    q /= q.sum(axis=0, keepdims=True)
    out = upsample_probabilities(q, (9, 12), 2)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(q).permute(3, 0, 1, 2), size=(10, 12), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(out, ref.permute(1, 2, 3, 0).numpy()[:, :9], atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)


def test_record_round_trip_and_conflicts():
    cfg = config_from_dict({"preprocess": {"downsample": 2}})
    norm = Normalization.from_config(cfg.preprocess)
    assert norm.downsample == 2 and Normalization.from_dict(norm.to_dict()) == norm
    old = {k: v for k, v in norm.to_dict().items() if k != "downsample"}
    assert Normalization.from_dict(old).downsample == 1  # stores and checkpoints made before the key
    assert norm.conflicts(Normalization()) == ["downsample 2 vs 1"]
    with pytest.raises(BratsError, match="ckpt: downsample must be a positive integer, got 0"):
        Normalization.from_dict({**norm.to_dict(), "downsample": 0}, where="ckpt")
    for bad in (0, 5, 1.5):
        with pytest.raises(ConfigError, match="preprocess.downsample"):
            config_from_dict({"preprocess": {"downsample": bad}})


def test_extraction_stores_the_pooled_case(tmp_path):
    shape = (40, 36, 4)
    n = int(np.prod(shape))
    rng = np.random.default_rng(1)
    images = np.stack([rng.random(shape, dtype=np.float32) * 100 + 1 for _ in range(4)])
    images[:, :3] = 0  # a zero margin: the brain's edge blocks mix brain and background
    seg = np.array([0, 1, 2, 4], np.uint8)[rng.integers(0, 4, n)].reshape(shape)
    seg[:3] = 0
    folder = tmp_path / "cases" / "BraTS2021_00001"
    folder.mkdir(parents=True)
    for c, m in enumerate(("t1", "t1ce", "t2", "flair")):
        write_nifti(folder / f"BraTS2021_00001_{m}.nii.gz", images[c], affine_1mm())
    write_nifti(folder / "BraTS2021_00001_seg.nii.gz", seg, affine_1mm())
    cfg = config_from_dict(
        {
            "output_dir": str(tmp_path / "out"),
            "data": {"root": str(tmp_path / "cases"), "train_fraction": 1.0, "val_fraction": 0.0},
            "preprocess": {"downsample": 2},
            "patches": {"size": [8, 8], "stride": [6, 6], "min_foreground": 1, "background_fraction": 1e6},
        }
    )
    store = read_store(run_extract(cfg, progress=False)["train"])
    assert store["info"]["normalization"]["downsample"] == 2
    want_img = pool_image(normalize(images, "zscore"), 2).astype(np.float16).astype(np.float32)
    want_seg = pool_labels(seg, 2)
    seen = np.zeros(want_seg.shape, bool)
    for img, lab, (x, y, z) in zip(store["images"], store["labels"], store["position"]):
        np.testing.assert_array_equal(img, want_img[:, x : x + 8, y : y + 8, z])
        np.testing.assert_array_equal(lab, want_seg[x : x + 8, y : y + 8, z])
        seen[x : x + 8, y : y + 8, z] = True
    assert seen.all() and want_seg.shape == (20, 18, 4)


def test_prediction_is_on_the_input_grid(tmp_path):
    import nibabel as nib

    from brats.data import resolve_cases
    from brats.predict import load_predictor, run_predict
    from brats.predict.predictor import load_input
    from brats.predict.sliding import predict_volume

    shape = (41, 37, 5)  # odd X and Y: padded to 42 x 38 for pooling, cropped back after
    folder = tmp_path / "cases" / "BraTS2021_00003"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    brain = np.zeros(shape, bool)
    brain[4:-5, 3:-4, 1:-1] = True
    for m in ("t1", "t1ce", "t2", "flair"):
        write_nifti(
            folder / f"BraTS2021_00003_{m}.nii.gz", (rng.random(shape) * 90 + 10) * brain, affine_1mm()
        )
    ckpt = tiny_unet_checkpoint(tmp_path / "ds2.pt", {"downsample": 2})
    [seg] = run_predict(ckpt, folder, tmp_path / "out", probabilities=True, progress=False, postprocess=False)
    img = nib.load(str(seg))
    assert img.shape == shape
    np.testing.assert_array_equal(img.affine, affine_1mm())
    prob = np.moveaxis(
        np.asarray(nib.load(str(tmp_path / "out" / "BraTS2021_00003_prob.nii.gz")).dataobj), -1, 0
    )
    assert prob.shape == (4, *shape)
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=4e-3)
    assert (prob[0][~brain] == 1).all() and not np.asarray(img.dataobj)[~brain].any()
    # The same as predicting the pooled case by hand and upsampling it.
    model, settings = load_predictor(ckpt, device="cpu", postprocess=False)
    assert settings.normalization.downsample == 2
    image, _ = load_input(resolve_cases(folder)[0], settings)
    coarse = pool_image(image, 2).astype(np.float16).astype(np.float32)
    assert coarse.shape == (4, 21, 19, 5)
    s = settings
    by_hand = predict_volume(
        model, coarse, s.patch_size, overlap=s.overlap, blend=s.blend, batch_size=s.batch_size, tta=s.tta,
        window_fn=s.window_fn, multiple=s.multiple, windows=s.windows, amp_dtype=s.amp_dtype, output=s.output,
    )  # fmt: skip
    want = upsample_probabilities(by_hand, shape[:2], 2)
    np.testing.assert_allclose(prob[:, brain], want[:, brain], atol=2e-3)  # the file holds float16 values


def test_the_slice_gate_sees_the_pooled_case(tmp_path):
    from brats.data import resolve_cases
    from brats.predict import load_predictor
    from brats.predict.gate import predict_gated

    shape = (40, 36, 3)
    folder = tmp_path / "cases" / "BraTS2021_00004"
    folder.mkdir(parents=True)
    brain = np.zeros(shape, bool)
    brain[4:-4, 4:-4] = True
    rng = np.random.default_rng(4)
    for m in ("t1", "t1ce", "t2", "flair"):
        write_nifti(
            folder / f"BraTS2021_00004_{m}.nii.gz", (rng.random(shape) * 90 + 10) * brain, affine_1mm()
        )
    model, settings = load_predictor(
        tiny_unet_checkpoint(tmp_path / "ds2.pt", {"downsample": 2}), device="cpu", postprocess=False
    )
    seen = []

    class Gate(torch.nn.Module):  # the classifier the segmenter's (pooled) store would have trained
        def forward(self, x):
            seen.append(tuple(x.shape))
            return torch.full((x.shape[0],), -10.0)  # no tumour on any slice

    classes, tumour, slice_prob = predict_gated(model, Gate(), resolve_cases(folder)[0], settings)
    assert seen == [(3, 4, 20, 18)]
    assert classes.shape == tumour.shape == shape and not classes.any() and not tumour.any()
    assert slice_prob.shape == (3,)
