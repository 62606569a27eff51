"""Left-right asymmetry channels (brats.asymmetry, ``preprocess.asymmetry``): mirrors and midlines by hand and
against ``np.flip``, the left-right axis from affines, the record, extraction and prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cohort import affine_1mm, tiny_unet_checkpoint, write_nifti

from brats.asymmetry import add_asymmetry, input_channels, lr_axis, midline, mirror, rescaled_channels
from brats.config import ConfigError, config_from_dict
from brats.data.kaggle import kaggle_affine
from brats.errors import BratsError
from brats.extract import read_store, run_extract
from brats.preprocess import Normalization, normalize

MODALITIES = ("t1", "t1ce", "t2", "flair")


def test_mirror_by_hand():
    v = np.array([1, 2, 3, 4, 5])
    assert mirror(v, 0, 2.0).tolist() == [5, 4, 3, 2, 1]  # s = 4: the centre voxel stays
    assert mirror(v, 0, 1.5).tolist() == [4, 3, 2, 1, 0]  # s = 3: a plane between voxels 1 and 2
    assert mirror(v, 0, 3.0).tolist() == [0, 0, 5, 4, 3]  # s = 6: indices 0 and 1 mirror to 6 and 5, outside
    assert mirror(v, 0, 10.0).tolist() == [0, 0, 0, 0, 0]
    a = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(mirror(a, 2, 1.5), np.flip(a, axis=2))  # the array's centre: np.flip
    np.testing.assert_array_equal(mirror(a, 1, 1.0), np.flip(a, axis=1))


def test_midline_is_the_centre_of_mass():
    m = np.zeros((10, 2, 2), bool)
    m[2:5] = True  # 2, 3, 4
    m[4, 0, 0] = False  # fewer voxels at 4: the centre moves towards 2
    assert midline(m, 0) == pytest.approx((2 * 4 + 3 * 4 + 4 * 3) / 11)
    assert midline(np.zeros((9, 2, 2), bool), 0) == 4.0  # empty: the volume's centre
    assert midline(np.moveaxis(m, 0, 1), 1) == midline(m, 0)


def test_lr_axis_from_affines():
    assert lr_axis(np.eye(4)) == 0
    assert lr_axis(affine_1mm()) == 0  # LPS-like BraTS files: axis 0 runs right to left
    assert lr_axis(kaggle_affine(20)) == 1  # kaggle_3m: rows run anterior-posterior, columns left-right
    swapped = np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    assert lr_axis(swapped) == 2


def test_add_asymmetry_on_a_symmetric_brain_with_a_unilateral_lesion():
    shape = (12, 6, 3)
    brain = np.zeros(shape, bool)
    brain[2:10, 1:5] = True  # centred on 5.5 = the array's centre along X: the mirror is np.flip
    # varies along Y only: symmetric in X
    base = np.linspace(1, 2, 6, dtype=np.float32)[None, :, None] * brain
    image = np.stack([base, 2 * base])
    image[:, 3, 2, 1] += 0.5  # a lesion on one side, in both modalities
    out = add_asymmetry(image, affine_1mm())
    assert out.shape == (4, *shape) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:2], image)
    want = (image - np.flip(image, axis=1)) * brain
    np.testing.assert_allclose(out[2:], want, atol=1e-6)
    assert out[2, 3, 2, 1] == pytest.approx(0.5) and out[2, 8, 2, 1] == pytest.approx(-0.5)  # 8 = 11 - 3
    asym = out[2:].copy()
    asym[:, [3, 8], 2, 1] = 0
    assert not asym.any()  # symmetric tissue and everything outside the brain: 0


def test_add_asymmetry_is_zero_where_the_mirror_leaves_the_brain():
    image = np.zeros((1, 8, 1, 1), np.float32)
    image[0, 1:6, 0, 0] = [1, 2, 3, 4, 9]  # brain 1..5, centre 3: index 5 mirrors to 1, 1 to 5
    image[0, 6, 0, 0] = 0.0
    out = add_asymmetry(image, np.eye(4))[1, :, 0, 0]
    assert out.tolist() == [0.0, 1 - 9, 2 - 4, 0.0, 4 - 2, 9 - 1, 0.0, 0.0]
    image[0, 6, 0, 0] = 7  # brain 1..6, centre 3.5 (s = 7): 6 mirrors to 1
    out = add_asymmetry(image, np.eye(4))[1, :, 0, 0]
    assert out.tolist() == [0.0, 1 - 7, 2 - 9, 3 - 4, 4 - 3, 9 - 2, 7 - 1, 0.0]
    with pytest.raises(ValueError, match="expects"):
        add_asymmetry(image[0], np.eye(4))


def test_record_round_trip_and_conflicts():
    cfg = config_from_dict({"preprocess": {"asymmetry": True}})
    norm = Normalization.from_config(cfg.preprocess)
    assert norm.asymmetry is True and Normalization.from_dict(norm.to_dict()) == norm
    old = {k: v for k, v in norm.to_dict().items() if k != "asymmetry"}
    assert Normalization.from_dict(old).asymmetry is False  # stores and checkpoints made before the key
    assert norm.conflicts(Normalization()) == ["asymmetry True vs False"]
    with pytest.raises(BratsError, match="ckpt: asymmetry must be true or false, got 'yes'"):
        Normalization.from_dict({**norm.to_dict(), "asymmetry": "yes"}, where="ckpt")
    with pytest.raises(ConfigError, match="preprocess.asymmetry"):
        config_from_dict({"preprocess": {"asymmetry": "sometimes"}})


def _write_case(root, case_id, images, seg=None):
    folder = root / case_id
    folder.mkdir(parents=True)
    for c, m in enumerate(MODALITIES):
        write_nifti(folder / f"{case_id}_{m}.nii.gz", images[c], affine_1mm())
    if seg is not None:
        write_nifti(folder / f"{case_id}_seg.nii.gz", seg, affine_1mm())
    return folder


def test_channel_counts_by_hand():
    # 4 modalities; 2.5D with k = 1 stacks 3 slices of each: 4 x 3 = 12, then 12 asymmetry channels after them
    assert [input_channels(4, False), input_channels(4, True), input_channels(4, True, 1)] == [4, 8, 24]
    assert [input_channels(3, False, 2), input_channels(3, True, 2)] == [15, 30]
    assert rescaled_channels(4, False) is None
    assert [rescaled_channels(4, True), rescaled_channels(4, True, 1)] == [4, 12]  # the modalities only
    from brats.extract import context_channels

    assert context_channels(8, 1) == input_channels(4, True, 1)
    from brats.checkpoint import config_input_channels, new_checkpoint

    for sets, want in (
        ({}, 4),
        ({"preprocess": {"asymmetry": True}}, 8),
        ({"patches": {"context_slices": 2}}, 20),
    ):
        cfg = config_from_dict(sets)
        assert config_input_channels(cfg) == new_checkpoint({}, cfg, classes=4).in_channels == want


@pytest.mark.parametrize("downsample", [1, 2])
def test_extraction_stores_the_asymmetry_channels(tmp_path, downsample):
    from brats.checkpoint import new_checkpoint
    from brats.resolution import pool_image

    shape = (40, 36, 3)
    rng = np.random.default_rng(5)
    images = np.stack([rng.random(shape, dtype=np.float32) * 100 + 1 for _ in range(4)])
    images[:, :3] = 0  # an off-centre brain: its mirror runs off the volume on one side
    seg = np.array([0, 1, 2, 4], np.uint8)[rng.integers(0, 4, int(np.prod(shape)))].reshape(shape)
    seg[:3] = 0
    _write_case(tmp_path / "cases", "BraTS2021_00001", images, seg)
    cfg = config_from_dict(
        {
            "output_dir": str(tmp_path / "out"),
            "data": {"root": str(tmp_path / "cases"), "train_fraction": 1.0, "val_fraction": 0.0},
            "preprocess": {"asymmetry": True, "downsample": downsample},
            "patches": {"size": [8, 8], "stride": [6, 6], "min_foreground": 1, "background_fraction": 1e6},
        }
    )
    store = read_store(run_extract(cfg, progress=False)["train"])
    info = store["info"]
    assert info["normalization"]["asymmetry"] is True and info["image_shape"][0] == 8
    normalised = normalize(images, "zscore").astype(np.float16).astype(np.float32)
    want = add_asymmetry(normalised, affine_1mm())
    if downsample > 1:
        want = pool_image(want, downsample)
    want = want.astype(np.float16).astype(np.float32)
    assert want[4:].any() and len(store["images"])
    for img, (x, y, z) in zip(store["images"], store["position"]):
        np.testing.assert_array_equal(img, want[:, x : x + 8, y : y + 8, z])
    ckpt = new_checkpoint({}, cfg, classes=4, normalization=Normalization.from_dict(info["normalization"]))
    assert ckpt.in_channels == 8
    k2 = config_from_dict({"preprocess": {"asymmetry": True}, "patches": {"context_slices": 1}})
    # 2.5D: (modalities + asymmetries) x (2k + 1)
    assert new_checkpoint({}, k2, classes=4).in_channels == 4 * 2 * 3


def test_prediction_and_the_slice_gate_see_the_asymmetry_channels(tmp_path):
    import nibabel as nib

    from brats.data import resolve_cases
    from brats.predict import load_predictor, run_predict
    from brats.predict.gate import predict_gated
    from brats.predict.predictor import load_input
    from brats.predict.sliding import predict_volume

    shape = (33, 30, 4)
    brain = np.zeros(shape, bool)
    brain[4:-5, 3:-4, :] = True
    rng = np.random.default_rng(6)
    images = np.stack([(rng.random(shape) * 90 + 10) * brain for _ in MODALITIES])
    folder = _write_case(tmp_path / "cases", "BraTS2021_00002", images)
    ckpt = tiny_unet_checkpoint(tmp_path / "asym.pt", {"asymmetry": True})
    [seg] = run_predict(ckpt, folder, tmp_path / "out", probabilities=True, progress=False, postprocess=False)
    assert nib.load(str(seg)).shape == shape
    prob_file = tmp_path / "out" / "BraTS2021_00002_prob.nii.gz"
    prob = np.moveaxis(np.asarray(nib.load(str(prob_file)).dataobj), -1, 0)
    model, s = load_predictor(ckpt, device="cpu", postprocess=False)
    assert s.normalization.asymmetry is True
    x = torch.randn(2, 8, 16, 16)
    assert s.window_fn(x)[:, 4:].equal(x[:, 4:]) and not s.window_fn(x)[:, :4].equal(x[:, :4])
    case = resolve_cases(folder)[0]
    image, geometry = load_input(case, s)
    by_hand = predict_volume(
        model, add_asymmetry(image, geometry.affine).astype(np.float16).astype(np.float32), s.patch_size,
        overlap=s.overlap, blend=s.blend, batch_size=s.batch_size, tta=s.tta, window_fn=s.window_fn,
        multiple=s.multiple, windows=s.windows, amp_dtype=s.amp_dtype, output=s.output,
    )  # fmt: skip
    np.testing.assert_allclose(prob[:, brain], by_hand[:, brain], atol=2e-3)  # the file holds float16 values
    seen = []

    class Gate(torch.nn.Module):  # the classifier the segmenter's store (8 channels) would have trained
        def forward(self, x):
            seen.append(tuple(x.shape))
            return torch.full((x.shape[0],), -10.0)

    predict_gated(model, Gate(), case, s)
    assert seen == [(4, 8, 33, 30)]


def test_the_rescaling_leaves_the_asymmetry_channels_alone():
    from brats.preprocess import nonzero_mask, rescale_batch
    from brats.train import ChannelwiseRescaleIntensity, build_transform
    from brats.train.augment import rescaled_channels

    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(size=(3, 6, 10, 12)).astype(np.float32))
    x[:, :, :2] = 0
    out = rescale_batch(x, (-1, 1), (0.5, 99.5), channels=4)
    torch.testing.assert_close(out[:, :4], rescale_batch(x[:, :4], (-1, 1), (0.5, 99.5)))
    torch.testing.assert_close(out[:, 4:], x[:, 4:])
    assert rescale_batch(x, channels=9).equal(rescale_batch(x))
    tio_rescale = ChannelwiseRescaleIntensity((-1, 1), (0.5, 99.5), masking_method=nonzero_mask, channels=4)
    import torchio as tio

    subject = tio.Subject(image=tio.ScalarImage(tensor=x[0][..., None]))
    torch.testing.assert_close(tio_rescale(subject)["image"].data[..., 0], out[0], atol=1e-5, rtol=1e-5)
    cfg = config_from_dict({"preprocess": {"asymmetry": True}, "patches": {"size": [10, 12]}})
    assert rescaled_channels(cfg) == 4 and rescaled_channels(config_from_dict({})) is None
    k1 = config_from_dict({"preprocess": {"asymmetry": True}, "patches": {"context_slices": 1}})
    assert rescaled_channels(k1) == 12  # 2.5D: 4 modalities x 3 slices, then 12 asymmetry channels
    sample = {"image": x[1].numpy(), "label": np.zeros((10, 12), np.uint8), "index": 0}
    val = build_transform(cfg, "val", "brats2021")(sample)["image"]
    torch.testing.assert_close(val[4:], x[1, 4:])
    torch.testing.assert_close(val[:4], out[1, :4], atol=1e-5, rtol=1e-5)
